//! `vigil-agent inspect`: what the agent knows about nginx and its upstreams, as JSON.
//! Once after `--interval` (default), or as a stream of snapshots and changes with `--watch`.
use std::{
    collections::{BTreeMap, BTreeSet},
    io::Write,
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::bail;
use serde::Serialize;
use tracing::warn;

use crate::{
    clock::{rfc3339, unix_now_ns, MonotonicClock},
    nginx_view::{NginxSnapshot, NginxView},
    probes::{Capabilities, ProbeStats, Probes},
    procs::{ProcSampler, ProcessSample},
    trace::{shutdown_signal, POLL_INTERVAL},
    tracker::ConnectionRecord,
    upstreams::{ProcessExitInfo, UpstreamChange, UpstreamState, UpstreamTracker},
};

pub struct InspectArgs {
    pub ports: Option<BTreeSet<u16>>,
    pub interval: Duration,
    pub watch: bool,
    pub duration: Option<Duration>,
    pub error_log: Option<PathBuf>,
    pub access_log: Option<PathBuf>,
}

/// Connection outcomes to one upstream port since the agent started.
#[derive(Debug, Default, Clone, Serialize)]
pub struct ConnectionTally {
    pub connects: BTreeMap<&'static str, u64>,
    pub silent_closes: u64,
    pub resets: u64,
    pub syn_retransmits: u64,
    pub last_first_byte_ms: Option<f64>,
}

impl ConnectionTally {
    fn add(&mut self, r: &ConnectionRecord) {
        *self.connects.entry(r.result.as_str()).or_default() += 1;
        self.silent_closes += u64::from(r.silent_close);
        self.resets += u64::from(r.reset);
        self.syn_retransmits += u64::from(r.syn_retransmits);
        if r.first_byte_ms.is_some() {
            self.last_first_byte_ms = r.first_byte_ms;
        }
    }
}

#[derive(Serialize)]
struct UpstreamReport<'a> {
    #[serde(flatten)]
    state: &'a UpstreamState,
    workers: Vec<ProcessSample>,
    #[serde(flatten)]
    tally: ConnectionTally,
}

#[derive(Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Output<'a> {
    Snapshot {
        ts: String,
        capabilities: Option<&'a Capabilities>,
        probe_stats: Option<ProbeStats>,
        nginx: Option<NginxSnapshot>,
        upstreams: Vec<UpstreamReport<'a>>,
    },
    Change {
        ts: String,
        #[serde(flatten)]
        change: UpstreamChange,
    },
}

fn emit(out: &Output) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{}", serde_json::to_string(out)?)?;
    Ok(stdout.flush()?)
}

pub async fn run(args: InspectArgs) -> anyhow::Result<()> {
    let mut nginx = NginxView::discover(args.error_log.clone(), args.access_log.clone());
    let ports = match (&args.ports, nginx.as_ref().map(NginxView::upstream_ports)) {
        (Some(p), _) => p.clone(),
        (None, Some(p)) if !p.is_empty() => p,
        _ => bail!("no --ports given and no running nginx with upstreams found; pass --ports 8080-8099"),
    };
    let mut probes = match Probes::load() {
        Ok(p) => Some(p),
        Err(e) => {
            warn!("{e}; continuing from /proc only: no connect outcomes or exit statuses");
            None
        }
    };
    if let Some(p) = probes.as_mut() {
        p.set_watched_ports(&ports)?;
    }
    let clock = MonotonicClock::now();
    let mut tracker = UpstreamTracker::new(ports.clone());
    let mut sampler = ProcSampler::default();
    let mut tallies: BTreeMap<u16, ConnectionTally> = BTreeMap::new();
    let started = Instant::now();
    let mut next_snapshot = started;
    let mut ticker = tokio::time::interval(POLL_INTERVAL);
    eprintln!("vigil-agent inspect: ready");
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown_signal() => break,
        }
        if let Some(p) = probes.as_mut() {
            p.drain_connections(|ev| {
                let r = ConnectionRecord::from_event(&ev, &clock);
                tallies.entry(r.dst.port()).or_default().add(&r);
            });
            p.drain_exits(|ev| {
                let comm = crate::tracker::comm_str(&ev.comm);
                let at = clock.rfc3339(ev.ts_ns);
                tracker.record_exit(ProcessExitInfo::from_exit_code(ev.tgid, comm, at, ev.exit_code));
            });
        }
        if let Some(n) = nginx.as_mut() {
            n.poll_logs();
        }
        if Instant::now() < next_snapshot {
            continue;
        }
        let first = next_snapshot == started;
        next_snapshot += args.interval;
        let now = rfc3339(unix_now_ns());
        for change in tracker.refresh(&now) {
            if args.watch {
                emit(&Output::Change { ts: now.clone(), change })?;
            }
        }
        if let Some(p) = probes.as_mut() {
            for pid in tracker.pids_to_watch() {
                p.watch_pid(pid)?;
            }
        }
        let snapshot = snapshot(&now, &tracker, &mut sampler, &tallies, probes.as_ref(), nginx.as_mut());
        let done = args.duration.is_some_and(|d| started.elapsed() >= d)
            || (!args.watch && !first);
        if args.watch && !first || done {
            emit(&snapshot)?;
        }
        if done {
            return Ok(());
        }
    }
    Ok(())
}

fn snapshot<'a>(
    now: &str,
    tracker: &'a UpstreamTracker,
    sampler: &mut ProcSampler,
    tallies: &BTreeMap<u16, ConnectionTally>,
    probes: Option<&'a Probes>,
    nginx: Option<&mut NginxView>,
) -> Output<'a> {
    let mut pids: Vec<u32> = tracker.pids_to_watch();
    let nginx_pids = nginx.as_ref().map(|n| n.pids()).unwrap_or_default();
    pids.extend(&nginx_pids);
    let samples = sampler.sample(&pids);
    let upstreams = tracker
        .states()
        .map(|state| {
            let serving: Vec<u32> = state.listener.iter().flat_map(|l| {
                l.owner.iter().map(|o| o.pid).chain(l.worker_pids.iter().copied())
            }).collect();
            UpstreamReport {
                state,
                workers: samples.iter().filter(|s| serving.contains(&s.pid)).cloned().collect(),
                tally: tallies.get(&state.port).cloned().unwrap_or_default(),
            }
        })
        .collect();
    Output::Snapshot {
        ts: now.to_owned(),
        capabilities: probes.map(|p| &p.capabilities),
        probe_stats: probes.map(Probes::stats),
        nginx: nginx.map(|n| n.snapshot(&samples)),
        upstreams,
    }
}
