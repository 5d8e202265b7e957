//! What a rule sees of one upstream at the node's data time: the live failure episode of
//! a family of signals, the listener state, the workers' CPU load against the cores they can
//! get, and the nginx routes (sites, locations, timeouts) that lead there.
use std::collections::BTreeMap;

use vigil_wire::{NginxRoute, ProcessSample, UpstreamStatus};

use super::evidence::{NodeEvidence, Run, Signal, UpstreamEvidence};

/// Listener states and worker samples older than this are not evidence (agents sample
/// every 5 s by default).
pub const STATE_MAX_AGE_MS: i64 = 60_000;
/// Workers using this share of the CPU they can get are CPU-bound...
pub const CPU_BOUND: f64 = 0.8;
/// ...and stay so, once an alert says they are, down to this share (no flapping).
pub const CPU_BOUND_HELD: f64 = 0.6;

/// The failures one cause is made of, by source. The probes and nginx's error.log see the
/// same failing request: counts take the larger of the two, never their sum.
#[derive(Debug, Clone, Copy)]
pub struct Family {
    pub probe: &'static [Signal],
    pub log: &'static [Signal],
}

/// A family's live run of failures.
#[derive(Debug, Clone, PartialEq)]
pub struct Episode {
    pub first_ms: i64,
    pub last_ms: i64,
    /// Failed requests by the status nginx answered.
    pub by_status: BTreeMap<u16, u64>,
    pub probe_count: u64,
    pub log_count: u64,
}

/// The owner and workers serving an upstream port, from the latest sample.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerLoad {
    pub pids: Vec<u32>,
    /// Cores used, summed over the processes.
    pub cpu: f64,
    /// Cores they can get (the tightest the agent reported), when known.
    pub cores: Option<f64>,
    pub threads: i64,
    pub running: usize,
    /// Processes with a CPU figure (a process's first sample has none).
    pub count: usize,
    pub unmeasured: usize,
    pub states: String,
}

/// What the CPU of an upstream's workers says.
#[derive(Debug, Clone, PartialEq)]
pub enum Cpu {
    Bound(WorkerLoad),
    NotBound(WorkerLoad),
    /// No process of it runs on this node (a remote upstream, or nothing listens).
    NoLocalWorkers,
    /// It listens here but its processes are not measured yet: no verdict either way.
    Unknown,
}

impl WorkerLoad {
    fn of(samples: &[ProcessSample]) -> WorkerLoad {
        let measured: Vec<&ProcessSample> =
            samples.iter().filter(|p| p.cpu_ratio.is_some()).collect();
        let cores = measured
            .iter()
            .filter_map(|p| p.cpu_cores_available)
            .filter(|c| *c > 0.0)
            .reduce(f64::min);
        WorkerLoad {
            pids: measured.iter().map(|p| p.pid).collect(),
            cpu: measured.iter().filter_map(|p| p.cpu_ratio).sum(),
            cores,
            // A pre-fork owner (gunicorn's arbiter) serves no request: when the port has
            // workers, only their threads are CPU the requests can use.
            threads: {
                let workers = measured
                    .iter()
                    .filter(|p| p.role() == vigil_wire::ProcessRole::UpstreamWorker);
                match workers.clone().count() {
                    0 => measured.iter().map(|p| p.threads.max(1)).sum(),
                    _ => workers.map(|p| p.threads.max(1)).sum(),
                }
            },
            running: measured.iter().filter(|p| p.state == "R").count(),
            count: measured.len(),
            unmeasured: samples.len() - measured.len(),
            states: measured.iter().map(|p| p.state.as_str()).collect(),
        }
    }

    /// Most cores these processes could use: their threads, within the cores available.
    pub fn capacity(&self) -> Option<f64> {
        let threads = self.threads.max(1) as f64;
        self.cores.map(|c| c.min(threads))
    }

    /// The workers' sum against the CPU they can get, never each worker against one core:
    /// they use `share` of it, or as many of them are runnable (R) as there are cores
    /// and using some (wanting the CPU even when other work on the node leaves them little
    /// of it; a worker blocked on I/O or a lock sleeps, S or D). Without the cores available
    /// (an older agent), only when every one of them runs.
    pub fn cpu_bound(&self, share: f64) -> bool {
        if self.count == 0 {
            return false;
        }
        match self.capacity() {
            Some(capacity) => {
                self.cpu >= share * capacity
                    || (self.running as f64 >= capacity.ceil().max(1.0)
                        && self.cpu >= 0.02 * capacity)
            }
            None => self.running == self.count && self.cpu >= 0.5,
        }
    }
}

pub struct UpstreamView<'a> {
    pub node: &'a str,
    pub upstream: &'a str,
    /// The node's data time.
    pub now_ms: i64,
    /// `resolve_after`: a run is live while its last occurrence is closer than this.
    pub gap_ms: i64,
    pub evidence: &'a UpstreamEvidence,
    pub node_evidence: &'a NodeEvidence,
    /// An UpstreamSaturated alert is already pending or firing here (CPU hysteresis).
    pub saturated_active: bool,
}

impl UpstreamView<'_> {
    /// The signal's run, if still live.
    pub fn live(&self, signal: Signal) -> Option<&Run> {
        let run = self.evidence.run(signal);
        run.alive(self.now_ms, self.gap_ms).then_some(run)
    }

    pub fn count(&self, signal: Signal) -> u64 {
        self.live(signal).map_or(0, |r| r.count)
    }

    /// The family's live failures, or None.
    pub fn episode(&self, family: &Family) -> Option<Episode> {
        let mut e = Episode {
            first_ms: i64::MAX,
            last_ms: i64::MIN,
            by_status: BTreeMap::new(),
            probe_count: 0,
            log_count: 0,
        };
        let mut per_source = [BTreeMap::<u16, u64>::new(), BTreeMap::new()];
        for (source, signals) in [family.probe, family.log].into_iter().enumerate() {
            for &signal in signals {
                let Some(run) = self.live(signal) else {
                    continue;
                };
                e.first_ms = e.first_ms.min(run.first_ms);
                e.last_ms = e.last_ms.max(run.last_ms);
                *per_source[source].entry(signal.status()).or_default() += run.count;
            }
        }
        if e.last_ms == i64::MIN {
            return None;
        }
        e.probe_count = per_source[0].values().sum();
        e.log_count = per_source[1].values().sum();
        for (status, n) in per_source.iter().flatten() {
            let slot = e.by_status.entry(*status).or_default();
            *slot = (*slot).max(*n);
        }
        Some(e)
    }

    /// The latest listener state, if recent enough to be evidence.
    pub fn status(&self) -> Option<&UpstreamStatus> {
        let (status, at) = self.evidence.status.as_ref()?;
        (self.now_ms - at <= STATE_MAX_AGE_MS).then_some(status)
    }

    /// When the latest listener state was sampled (data time).
    pub fn status_at(&self) -> Option<i64> {
        self.evidence.status.as_ref().map(|(_, at)| *at)
    }

    /// The accept queue was seen full during the episode (or just before it).
    pub fn queue_was_full(&self, episode: &Episode) -> bool {
        self.evidence
            .queue_full_ms
            .is_some_and(|at| at >= episode.first_ms - self.gap_ms)
    }

    /// The upstream's own processes, from a recent sample (other upstreams' and nginx's
    /// processes are never counted).
    pub fn workers(&self) -> Option<WorkerLoad> {
        let port = self.status()?.port;
        let (samples, at) = self.node_evidence.workers.get(&port)?;
        (self.now_ms - at <= STATE_MAX_AGE_MS && !samples.is_empty())
            .then(|| WorkerLoad::of(samples))
    }

    pub fn cpu(&self) -> Cpu {
        let share = if self.saturated_active {
            CPU_BOUND_HELD
        } else {
            CPU_BOUND
        };
        let listener = self.status().filter(|s| s.listening);
        match (self.workers(), listener) {
            (Some(w), _) if w.cpu_bound(share) => Cpu::Bound(w),
            (Some(w), _) if w.unmeasured == 0 => Cpu::NotBound(w),
            (Some(_), _) => Cpu::Unknown,
            // The agent could not tell who owns the listener: nothing to measure.
            (None, Some(s)) if s.owner.is_none() => Cpu::NoLocalWorkers,
            (None, Some(_)) => Cpu::Unknown,
            (None, None) => Cpu::NoLocalWorkers,
        }
    }

    /// The routes that send requests here: by destination, or by `upstream` block name.
    pub fn routes(&self) -> Vec<&NginxRoute> {
        self.node_evidence
            .routes
            .iter()
            .filter(|r| r.upstream == self.upstream || r.group == self.upstream)
            .collect()
    }

    /// Site names: the routes' `server_name`s, else those nginx's error lines named.
    pub fn server_names(&self) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        for route in self.routes() {
            for name in &route.server_names {
                if !names.contains(name) {
                    names.push(name.clone());
                }
            }
        }
        if names.iter().all(|n| !is_site(n)) {
            for name in &self.evidence.servers {
                if !names.contains(name) {
                    names.push(name.clone());
                }
            }
        }
        names
    }

    pub fn locations(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for route in self.routes() {
            if !out.contains(&route.location) {
                out.push(route.location.clone());
            }
        }
        out
    }

    /// Where requests failed, for a summary: "client-portal.example.com" or "nginx on NODE".
    pub fn site(&self) -> String {
        self.server_names()
            .into_iter()
            .find(|n| is_site(n))
            .unwrap_or_else(|| format!("nginx on {}", self.node))
    }

    /// The longest `proxy_read_timeout` of the routes here, in ms.
    pub fn read_timeout_ms(&self) -> Option<u64> {
        self.routes().iter().map(|r| r.read_timeout_ms).max()
    }

    pub fn connect_timeout_ms(&self) -> Option<u64> {
        self.routes().iter().map(|r| r.connect_timeout_ms).max()
    }

    /// The other servers of the `upstream` blocks this one belongs to.
    pub fn group_peers(&self) -> Vec<(&str, &str)> {
        let groups: Vec<&str> = self
            .routes()
            .iter()
            .filter(|r| r.upstream == self.upstream && !r.group.is_empty())
            .map(|r| r.group.as_str())
            .collect();
        let mut peers: Vec<(&str, &str)> = Vec::new();
        for r in &self.node_evidence.routes {
            let pair = (r.group.as_str(), r.upstream.as_str());
            if groups.contains(&pair.0) && pair.1 != self.upstream && !peers.contains(&pair) {
                peers.push(pair);
            }
        }
        peers
    }

    /// The servers of the `upstream` block named like this upstream (NoLiveUpstreams).
    pub fn group_servers(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for r in &self.node_evidence.routes {
            if r.group == self.upstream && !out.contains(&r.upstream.as_str()) {
                out.push(&r.upstream);
            }
        }
        out
    }

    /// Another upstream's evidence on the same node.
    pub fn other(&self, upstream: &str) -> Option<&UpstreamEvidence> {
        self.node_evidence.upstreams.get(upstream)
    }
}

/// A `server_name` that names a site (not the catch-all `_` or empty).
fn is_site(name: &str) -> bool {
    !name.is_empty() && name != "_" && name != "\"\""
}

#[cfg(test)]
mod capacity_tests {
    use super::WorkerLoad;
    use crate::alerts::testing::worker;
    use vigil_wire::ProcessRole;

    #[test]
    fn an_idle_arbiter_does_not_hide_its_one_spinning_worker() {
        let mut arbiter = worker(100, 8082, 0.0, "S", 2.0);
        arbiter.role = ProcessRole::UpstreamOwner as i32;
        let load = WorkerLoad::of(&[arbiter.clone(), worker(101, 8082, 0.99, "R", 2.0)]);
        assert_eq!(
            load.capacity(),
            Some(1.0),
            "one worker thread can use one core"
        );
        assert!(load.cpu_bound(0.8));
        // A lone owner serving requests itself is its own worker.
        arbiter.cpu_ratio = Some(0.3);
        assert!(!WorkerLoad::of(&[arbiter]).cpu_bound(0.8));
    }
}
