//! `vigil-agent inspect`: what the agent knows about nginx and its upstreams, as JSON.
//! Once after `--interval` (default), or as a stream of snapshots and changes with `--watch`.
use std::{
    collections::BTreeMap,
    io::Write,
    time::{Duration, Instant},
};

use serde::Serialize;

use super::{
    parse_duration,
    poll::{PollLoop, Tick},
    WatchArgs,
};
use crate::{
    clock::{rfc3339, unix_now_ns},
    host::{
        sampler::ProcessSample,
        upstreams::{UpstreamChange, UpstreamState},
    },
    nginx::view::{NginxSnapshot, NginxView},
    probes::{connection::ConnectionRecord, Capabilities, ProbeStats, Probes},
    watch::{NodeWatcher, RoledSample},
};

#[derive(Debug, Clone, clap::Args)]
pub struct InspectArgs {
    #[command(flatten)]
    pub watch_args: WatchArgs,
    /// Time between samples (CPU ratios are measured over it).
    #[arg(long, env = "VIGIL_INTERVAL", default_value = "2s", value_parser = parse_duration)]
    pub interval: Duration,
    /// Keep printing snapshots, and upstream changes as they happen.
    #[arg(long)]
    pub watch: bool,
    /// With --watch, stop after this long.
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
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
        *self.connects.entry(r.result.label()).or_default() += 1;
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
    let w = &args.watch_args;
    let nginx = NginxView::discover(w.nginx_error_log.clone(), w.nginx_access_log.clone());
    let mut node = NodeWatcher::start(w.ports.clone(), nginx, false)?;
    let mut tallies: BTreeMap<u16, ConnectionTally> = BTreeMap::new();
    let started = Instant::now();
    let mut ticks = PollLoop::new(Some(args.interval))?;
    let mut first = true;
    eprintln!("vigil-agent inspect: ready");
    loop {
        let tick = ticks.next().await;
        if matches!(tick, Tick::Stop) {
            break;
        }
        node.poll(|r| tallies.entry(r.dst.port()).or_default().add(&r));
        if matches!(tick, Tick::Poll) {
            continue;
        }
        let now_ns = unix_now_ns();
        let now = rfc3339(now_ns);
        for change in node.refresh(now_ns) {
            if args.watch {
                emit(&Output::Change {
                    ts: now.clone(),
                    change,
                })?;
            }
        }
        let samples = node.sample();
        let done = args.duration.is_some_and(|d| started.elapsed() >= d) || (!args.watch && !first);
        if args.watch && !first || done {
            emit(&snapshot(&now, &node, &samples, &tallies))?;
        }
        if done {
            return Ok(());
        }
        first = false;
    }
    Ok(())
}

fn snapshot<'a>(
    now: &str,
    node: &'a NodeWatcher,
    samples: &[RoledSample],
    tallies: &BTreeMap<u16, ConnectionTally>,
) -> Output<'a> {
    let upstreams = node
        .tracker
        .states()
        .map(|state| UpstreamReport {
            state,
            workers: samples
                .iter()
                .filter(|s| s.port == Some(state.port))
                .map(|s| s.sample.clone())
                .collect(),
            tally: tallies.get(&state.port).cloned().unwrap_or_default(),
        })
        .collect();
    let plain: Vec<ProcessSample> = samples.iter().map(|s| s.sample.clone()).collect();
    Output::Snapshot {
        ts: now.to_owned(),
        capabilities: node.probes.as_ref().map(|p| &p.capabilities),
        probe_stats: node.probes.as_ref().map(Probes::stats),
        nginx: node.nginx.as_ref().map(|n| n.snapshot(&plain)),
        upstreams,
    }
}
