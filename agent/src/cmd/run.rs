//! `vigil-agent run`: watch the node and stream batches to the collector.
use std::{path::PathBuf, sync::atomic::Ordering::Relaxed, time::Duration};

use anyhow::Context;
use tracing::{info, warn};

use vigil_wire::{spool::Spool, token::read_token_file};

use super::{
    health::{self, HealthState, SelfMetrics},
    parse_duration,
    poll::{PollLoop, Tick},
    WatchArgs,
};
use crate::{
    clock::unix_now_ns,
    host::cgroupns,
    nginx::view::NginxView,
    probes::Probes,
    ship::{
        outbox::{self, ConnectionRecords, Outbox},
        sender::BatchSender,
    },
    watch::NodeWatcher,
};

#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// Collector base URL, e.g. http://127.0.0.1:9470 or https://vigil-collector:9470.
    #[arg(long, env = "VIGIL_COLLECTOR")]
    pub collector: String,
    /// PEM file of a CA to trust for an https:// collector, besides the system's roots.
    #[arg(long, env = "VIGIL_CA_FILE")]
    pub ca_file: Option<PathBuf>,
    /// File holding the collector's bearer token.
    #[arg(long, env = "VIGIL_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// Node name in every record (default: the hostname).
    #[arg(long, env = "VIGIL_NODE")]
    pub node: Option<String>,
    #[command(flatten)]
    pub watch: WatchArgs,
    /// Where the spool lives while the collector is away.
    #[arg(long, env = "VIGIL_STATE_DIR", default_value = "/var/lib/vigil-agent")]
    pub state_dir: PathBuf,
    /// How often upstreams and processes are sampled.
    #[arg(long, env = "VIGIL_INTERVAL", default_value = "5s", value_parser = parse_duration)]
    pub interval: Duration,
    /// Spool bound in memory, in MiB, before spilling to disk. 0 (the default): every sealed
    /// batch is on disk (one fsynced file a second) until the collector has it, so a SIGKILL
    /// or a power loss loses none; more trades that for fewer writes.
    #[arg(long, env = "VIGIL_SPOOL_MEMORY_MIB", default_value_t = 0)]
    pub spool_memory_mib: usize,
    /// Spool bound on disk, in MiB; past it the oldest batches are dropped (and counted).
    #[arg(long, env = "VIGIL_SPOOL_DISK_MIB", default_value_t = 256)]
    pub spool_disk_mib: u64,
    /// Where to serve GET /healthz (503 once the agent is stuck for 30 s) and GET /metrics
    /// (the agent's own counters), or `off`.
    #[arg(long, env = "VIGIL_LISTEN_HEALTH", default_value = "127.0.0.1:9471", value_parser = health::parse_listen)]
    pub listen_health: health::ListenHealth,
    /// Which connections are sent one by one: `failures` sends failed, reset, silently
    /// closed and slow (over 1 s) connections and those after SYN retransmits alone, and
    /// counts the healthy rest per client and upstream in each batch (same metrics, a
    /// fraction of the bytes); `all` sends every connection alone.
    #[arg(
        long,
        env = "VIGIL_CONNECTION_RECORDS",
        value_enum,
        default_value = "failures"
    )]
    pub connection_records: ConnectionRecords,
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "unknown".into())
}

pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    // Before any other thread exists: it would get an arena of its own.
    tune_allocator();
    // First, before threads start: they inherit the cgroup namespace.
    cgroupns::join_node_once();
    vigil_wire::http::check_url(&args.collector)
        .context("--collector must be a URL like http://127.0.0.1:9470")?;
    let http = vigil_wire::http::client(Duration::from_secs(15), args.ca_file.as_deref())?;
    let token = args
        .token_file
        .as_deref()
        .map(read_token_file)
        .transpose()?;
    let node = args.node.clone().unwrap_or_else(hostname);
    let health = HealthState::new(node.clone());
    if let Some(addr) = args.listen_health.0 {
        health::serve(addr, health.clone())?;
    }
    let nginx = NginxView::discover(
        args.watch.nginx_error_log.clone(),
        args.watch.nginx_access_log.clone(),
    );
    // Loading the probes parses the kernel's BTF (~20 MiB for a moment, freed after): the
    // agent's peak. Whatever is free before it goes back first, and after it again.
    return_free_memory();
    let mut watcher = NodeWatcher::start(args.watch.ports.clone(), nginx, true)?;
    return_free_memory();
    let spool_dir = args.state_dir.join("spool");
    let spool = Spool::open(
        Some(spool_dir.clone()),
        args.spool_memory_mib << 20,
        args.spool_disk_mib << 20,
    )
    .with_context(|| {
        format!(
            "state directory {} must be writable (--state-dir)",
            args.state_dir.display()
        )
    })?;
    if !spool.is_empty() {
        info!(
            batches = spool.len(),
            "resending batches spooled by an earlier run"
        );
    }
    // Unreadable batches are set aside when the spool opens, never later.
    let spool_corrupt = spool.corrupt.batches;
    let shipper = BatchSender::start(http, &args.collector, token, spool);
    let started_ms = (unix_now_ns() / 1_000_000) as i64;
    let agent_id = format!("{node}/{started_ms}-{}", std::process::id());
    let mut outbox = Outbox::new(agent_id.clone(), node.clone(), args.connection_records);
    info!(%agent_id, collector = %args.collector, ports = watcher.ports.len(), "streaming to the collector");
    eprintln!("vigil-agent run: ready");
    let mut ticks = PollLoop::new(Some(args.interval))?;
    let mut dropped_reported = 0;
    let mut connections_reported = 0u64;
    loop {
        let tick = ticks.next().await;
        health.turned();
        let stopping = matches!(tick, Tick::Stop);
        let now_ns = unix_now_ns() as i64;
        let events = watcher.poll(|r| {
            connections_reported += 1;
            outbox.add_connection(r);
        });
        for event in events {
            outbox::log_event(outbox.batch(), event, now_ns);
        }
        if matches!(tick, Tick::Sample) {
            return_free_memory();
            let agent = sample(&mut watcher, &mut outbox, &shipper)?;
            let (_, dropped) = shipper.spool_state();
            if dropped > dropped_reported {
                warn!(
                    dropped = dropped - dropped_reported,
                    "spool bound reached: oldest batches dropped"
                );
                dropped_reported = dropped;
            }
            health.publish(self_metrics(
                &watcher,
                &shipper,
                &agent,
                connections_reported,
                spool_corrupt,
            ));
        }
        if let Some(sealed) = outbox.seal_if_due(stopping) {
            shipper.enqueue(sealed.records, sealed.body);
        }
        if stopping {
            break;
        }
    }
    info!("stopping: delivering what is queued (up to 5 s), spooling the rest");
    shipper.shutdown(Duration::from_secs(5));
    Ok(())
}

/// glibc's malloc, set for a small resident set: one arena (the shipper thread allocates
/// little, and shares the main heap rather than growing an arena of its own), and blocks of
/// 128 KiB or more from mmap, returned to the system when freed. Left alone, glibc raises
/// that threshold to the largest block freed (the BTF blob read at start), after which such
/// blocks stay in the heap and keep it large.
fn tune_allocator() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only sets allocator parameters; no other thread allocates yet.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 << 10);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 128 << 10);
    }
}

/// Free pages inside the heap go back to the system (glibc returns only its top by itself):
/// after start, and after each sample (a burst of lines or connections leaves holes).
fn return_free_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim is thread-safe and only releases free memory.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// The slow path: upstream states, process samples and the agent's health, which it returns.
fn sample(
    watcher: &mut NodeWatcher,
    outbox: &mut Outbox,
    shipper: &BatchSender,
) -> anyhow::Result<vigil_wire::AgentHealth> {
    for change in watcher.refresh(unix_now_ns()) {
        info!(?change, "upstream changed");
    }
    let samples = watcher.sample();
    let batch = outbox.batch();
    batch
        .upstreams
        .extend(watcher.tracker.states().map(outbox::upstream));
    batch.processes.extend(samples.iter().map(outbox::process));
    // The whole set each time: the collector ties alerts to sites and locations with it.
    if let Some(nginx) = &watcher.nginx {
        batch.routes = outbox::routes(nginx.configs());
    }
    let probe_stats = watcher
        .probes
        .as_ref()
        .map(Probes::stats)
        .unwrap_or_default();
    let missing = watcher
        .probes
        .as_ref()
        .map(|p| {
            p.capabilities
                .missing
                .iter()
                .map(|m| m.capability.to_owned())
                .collect()
        })
        .unwrap_or_default();
    let (spool_bytes, spool_dropped) = shipper.spool_state();
    let health = vigil_wire::AgentHealth {
        probe_events_lost: probe_stats.events_lost,
        probe_track_failed: probe_stats.track_failed,
        capabilities_missing: missing,
        batches_sent: shipper.stats.sent.load(Relaxed),
        batches_retried: shipper.stats.retried.load(Relaxed),
        spool_bytes,
        spool_dropped_batches: spool_dropped,
    };
    batch.health = Some(health.clone());
    Ok(health)
}

/// What /metrics shows: the health sent to the collector, and what only the node sees.
fn self_metrics(
    watcher: &NodeWatcher,
    shipper: &BatchSender,
    sent: &vigil_wire::AgentHealth,
    connections_reported: u64,
    spool_corrupt_batches: u64,
) -> SelfMetrics {
    let probe_stats = watcher.probes.as_ref().map(Probes::stats);
    let probes = probe_stats.unwrap_or_default();
    SelfMetrics {
        probes_loaded: probe_stats.is_some(),
        probe_events_lost: sent.probe_events_lost,
        probe_track_failed: sent.probe_track_failed,
        probe_connects_seen: probes.connects_seen,
        probe_exits_lost: probes.exits_lost,
        probe_runs_skipped: probes.runs_skipped,
        connections_reported,
        capabilities_missing: sent.capabilities_missing.clone(),
        spool_bytes: sent.spool_bytes,
        spool_dropped_batches: sent.spool_dropped_batches,
        spool_corrupt_batches,
        batches_sent: sent.batches_sent,
        batches_retried: sent.batches_retried,
        batches_rejected: shipper.stats.rejected.load(Relaxed),
        watched_ports: watcher.ports.len(),
        net_namespaces: watcher.tracker.netns_stats().namespaces,
        net_namespaces_skipped: watcher.tracker.netns_stats().skipped_total,
    }
}
