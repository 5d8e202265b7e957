//! `NodeWatcher`: everything the agent watches on a node, polled by `inspect` and `run`:
//! the probes (connection records, owner exits), nginx (config, logs) and the upstreams'
//! listeners, owners and processes.
use std::collections::BTreeSet;

use anyhow::bail;
use tracing::warn;

use vigil_wire::ProcessRole;

use crate::{
    clock::MonotonicClock,
    host::{
        cgroupns,
        sampler::{ProcSampler, ProcessSample},
        upstreams::{UpstreamChange, UpstreamTracker},
    },
    nginx::view::{LogEvent, NginxView},
    probes::{connection::ConnectionRecord, exit::ProcessExitInfo, Probes},
};

#[derive(Debug, Clone)]
pub struct RoledSample {
    pub sample: ProcessSample,
    pub role: ProcessRole,
    /// The upstream port served (None for nginx's own processes).
    pub port: Option<u16>,
}

pub struct NodeWatcher {
    pub nginx: Option<NginxView>,
    pub probes: Option<Probes>,
    pub tracker: UpstreamTracker,
    pub sampler: ProcSampler,
    pub clock: MonotonicClock,
    pub ports: BTreeSet<u16>,
}

impl NodeWatcher {
    /// Ports default to nginx's upstreams. Without probes (not root), `inspect` still works
    /// from /proc; `require_probes` makes that an error instead.
    pub fn start(
        ports: Option<BTreeSet<u16>>,
        nginx: Option<NginxView>,
        require_probes: bool,
    ) -> anyhow::Result<Self> {
        // Before any thread reads a cgroup path: threads inherit the namespace.
        cgroupns::join_node_once();
        let ports = match (ports, nginx.as_ref().map(NginxView::upstream_ports)) {
            (Some(p), _) => p,
            (None, Some(p)) if !p.is_empty() => p,
            _ => bail!("no --ports given and no running nginx with upstreams found; pass --ports 8080-8099"),
        };
        let mut probes = match Probes::load() {
            Ok(p) => Some(p),
            Err(e) if require_probes => return Err(e.into()),
            Err(e) => {
                warn!("{e}; continuing from /proc only: no connect outcomes or exit statuses");
                None
            }
        };
        if let Some(p) = probes.as_mut() {
            p.set_watched_ports(&ports)?;
        }
        let mut tracker = UpstreamTracker::new(ports.clone());
        if let Some(view) = &nginx {
            tracker.set_destinations(view.upstream_destinations());
            tracker.targets.set_nginx_pids(view.master_pids());
        }
        Ok(NodeWatcher {
            nginx,
            probes,
            tracker,
            sampler: ProcSampler::default(),
            clock: MonotonicClock::now(),
            ports,
        })
    }

    /// The fast path (every poll): finished connections and new nginx log lines.
    pub fn poll(&mut self, mut on_connection: impl FnMut(ConnectionRecord)) -> Vec<LogEvent> {
        if let Some(p) = self.probes.as_mut() {
            let (clock, tracker) = (&self.clock, &mut self.tracker);
            p.drain_connections(|ev| {
                let record = ConnectionRecord::from_event(&ev, clock);
                // Where nginx connects decides which namespace's listener is the upstream.
                tracker.targets.note_connect(record.pid, record.dst);
                on_connection(record)
            });
            p.drain_exits(|ev| tracker.record_exit(ProcessExitInfo::from_event(&ev, clock)));
        }
        self.nginx
            .as_mut()
            .map(NginxView::poll_logs)
            .unwrap_or_default()
    }

    /// The slow path (every interval): listeners and owners; owners' exits get watched.
    pub fn refresh(&mut self, now: i128) -> Vec<UpstreamChange> {
        let changes = self.tracker.refresh(now);
        if let Some(p) = self.probes.as_mut() {
            // A sampling error costs what it could not see, never the agent (and its spool).
            match p.set_watched_pids(&self.tracker.pids_to_watch()) {
                Ok(0) => {}
                Ok(n) => warn!(
                    pids = n,
                    "watched-pid map full: these exits will not be reported"
                ),
                Err(e) => warn!("cannot update the watched pids: {e}"),
            }
        }
        changes
    }

    /// CPU/RSS of upstream owners and workers and of nginx, with their roles.
    pub fn sample(&mut self) -> Vec<RoledSample> {
        let mut wanted: Vec<(u32, ProcessRole, Option<u16>)> = Vec::new();
        for state in self.tracker.states() {
            let Some(l) = &state.listener else { continue };
            let owner = l.owner.as_ref().map(|o| o.pid);
            if let Some(pid) = owner {
                wanted.push((pid, ProcessRole::UpstreamOwner, Some(state.port)));
            }
            for &pid in l.worker_pids.iter().filter(|&&p| Some(p) != owner) {
                wanted.push((pid, ProcessRole::UpstreamWorker, Some(state.port)));
            }
        }
        if let Some(n) = &self.nginx {
            let pids = n.pids();
            let masters = n.master_pids();
            wanted.extend(pids.into_iter().map(|pid| {
                let role = if masters.contains(&pid) {
                    ProcessRole::NginxMaster
                } else {
                    ProcessRole::NginxWorker
                };
                (pid, role, None)
            }));
        }
        let pids: Vec<u32> = wanted.iter().map(|w| w.0).collect();
        let samples = self.sampler.sample(&pids);
        wanted
            .into_iter()
            .filter_map(|(pid, role, port)| {
                let sample = samples.iter().find(|s| s.pid == pid)?.clone();
                Some(RoledSample { sample, role, port })
            })
            .collect()
    }
}
