//! `cargo xtask bench fleet`: what one collector sustains. A fleet of synthetic agents
//! (1,000, then more until it degrades) sends real wire batches shaped like a busy node's,
//! one a second each over kept-alive connections, to the release collector on loopback,
//! configured as deployed (token, write-ahead log and dedup state under `state_dir`, a Loki
//! URL with its spool; Loki is a stand-in answering 204, in this process). After a warm-up,
//! over the window: the collector's CPU (utime + stime) per 1,000 agents, its RSS and
//! VmHWM, the request latency the agents see, what Prometheus scraping /metrics every 15 s
//! costs, and that nothing is lost: every batch sealed is answered 200, the collector
//! counted each once, and Loki acknowledged every line they carried. The generator shares
//! the 2 cores with the collector: its CPU and the machine's are reported alongside.
//!
//! Knobs: `VIGIL_FLEET_AGENTS=1000,2000` (the steps), `VIGIL_FLEET_SECONDS=60` (the
//! window), `VIGIL_FLEET_CONNECTIONS=all` (every connection alone, the agent's
//! `--connection-records all`, instead of healthy ones summarised),
//! `VIGIL_FLEET_ACCESS_LINES=20` (quieter nodes than the busy 200 access lines a second),
//! `VIGIL_FLEET_COLLECTOR_CONFIG='max_concurrent_ingests = 64'` (top-level settings added to
//! the collector's configuration).
//!
//! Layers: this file (steps) → report.rs (figures), limits.rs (when to stop), agents.rs (the fleet),
//! collector.rs (the process, /proc, /metrics), loki_sink.rs → http1.rs; batches.rs →
//! node.rs (what is sent).
mod agents;
mod batches;
mod collector;
mod http1;
mod limits;
mod loki_sink;
mod node;
mod report;

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Context;

use self::{
    agents::{spawn_agent, spawn_clock, AgentStats, Fleet},
    collector::{proc_cpu, scrape, series, value, Collector, Scrape},
    http1::Client,
    loki_sink::LokiSink,
    node::{ConnectionRecords, Shape},
    report::{Scraped, Step, Usage},
};
use crate::cmd::{bin_dir, cmd, workspace_root};

const DEFAULT_STEPS: [usize; 4] = [1000, 1500, 2000, 3000];
const WARMUP: Duration = Duration::from_secs(15);
/// Time after the window for batches still being retried to get their 200.
const DRAIN: Duration = Duration::from_secs(60);
/// Time for Loki to acknowledge the last lines after the last batch.
const LOKI_DRAIN: Duration = Duration::from_secs(60);
/// Prometheus's usual scrape interval.
const SCRAPE_EVERY: Duration = Duration::from_secs(15);

pub fn run() -> anyhow::Result<()> {
    let build = [
        "build",
        "--release",
        "-p",
        "vigil-collector",
        "--bin",
        "vigil-collector",
    ];
    cmd("cargo").args(build).run()?;
    let bin = bin_dir(true).join("vigil-collector");
    let shape = Shape {
        connections: connection_records()?,
        access_lines: match env_list("VIGIL_FLEET_ACCESS_LINES")? {
            Some(v) => *v.first().context("VIGIL_FLEET_ACCESS_LINES is empty")?,
            None => 200,
        },
    };
    let limits = vigil_wire::DecodeLimits {
        max_decoded_bytes: 32 << 20,
        max_records: 50_000,
    };
    batches::check_splice(&limits, shape)?;
    let steps = env_list("VIGIL_FLEET_AGENTS")?.unwrap_or(DEFAULT_STEPS.to_vec());
    let window = Duration::from_secs(match env_list("VIGIL_FLEET_SECONDS")? {
        Some(v) => *v.first().context("VIGIL_FLEET_SECONDS is empty")? as u64,
        None => 60,
    });
    let mut done: Vec<Step> = Vec::new();
    for agents in steps {
        let step = measure(&bin, agents, window, shape)?;
        step.print();
        let degraded = step.degraded(done.first());
        done.push(step);
        if let Some(why) = degraded {
            println!("stopping here: {why}\n");
            break;
        }
    }
    report::summary(&done);
    // The target is the first step (1,000 agents); later ones look for where it degrades.
    let first = done.first().context("no fleet size measured")?;
    anyhow::ensure!(
        first.nothing_lost(),
        "{} agents: batches or Loki lines lost (see above)",
        first.agents
    );
    Ok(())
}

/// How the agents send healthy connections: `VIGIL_FLEET_CONNECTIONS=failures` (the
/// agent's default: summaries) or `all` (one by one).
fn connection_records() -> anyhow::Result<ConnectionRecords> {
    match std::env::var("VIGIL_FLEET_CONNECTIONS").as_deref() {
        Err(_) | Ok("failures") => Ok(ConnectionRecords::Failures),
        Ok("all") => Ok(ConnectionRecords::All),
        Ok(other) => anyhow::bail!("VIGIL_FLEET_CONNECTIONS={other:?}: expected failures or all"),
    }
}

/// A comma-separated list of numbers from the environment.
fn env_list(name: &str) -> anyhow::Result<Option<Vec<usize>>> {
    let Ok(text) = std::env::var(name) else {
        return Ok(None);
    };
    text.split(',')
        .map(|n| n.trim().parse::<usize>().ok().filter(|n| *n > 0))
        .collect::<Option<Vec<_>>>()
        .map(Some)
        .with_context(|| format!("{name}={text:?}: expected positive numbers, e.g. 1000,2000"))
}

/// One fleet size against a fresh collector.
fn measure(
    bin: &std::path::Path,
    agents: usize,
    window: Duration,
    shape: Shape,
) -> anyhow::Result<Step> {
    println!("fleet of {agents} agents ({shape:?}): warm-up {WARMUP:?}, then {window:?} measured");
    let dir = workspace_root().join(format!("target/bench-fleet/{agents}"));
    let sink = LokiSink::start().context("Loki stand-in")?;
    let extra = std::env::var("VIGIL_FLEET_COLLECTOR_CONFIG").unwrap_or_default();
    if !extra.is_empty() {
        println!("  collector configuration adds: {extra}");
    }
    let collector = Collector::start(bin, &dir, sink.addr, &extra)?;
    let fleet = Fleet::new(
        agents,
        shape,
        collector.addr,
        &collector.token,
        WARMUP,
        window,
        DRAIN,
    );
    let clock = spawn_clock(fleet.clone())?;
    let threads = (0..agents)
        .map(|i| spawn_agent(fleet.clone(), i))
        .collect::<std::io::Result<Vec<_>>>()
        .context("starting the agent threads")?;
    let scraper = spawn_scraper(fleet.clone(), collector.addr)?;
    let watched = watch_window(&fleet, &collector, &sink);
    if watched.is_err() {
        fleet.stop();
    }
    let (before, after, rss) = watched?;
    let stats: Vec<AgentStats> = threads
        .into_iter()
        .map(|t| t.join().expect("agent thread"))
        .collect();
    let _ = clock.join();
    let (scrapes, scrapes_failed) = scraper.join().expect("scraper thread");
    let sent_lines: u64 = stats.iter().map(|s| s.loki_lines).sum();
    let last = wait_for_loki(&collector, sent_lines)?;
    let step = Step {
        agents,
        window,
        stats,
        before,
        after,
        rss,
        hwm: collector.memory("VmHWM")?,
        scrapes,
        scrapes_failed,
        metrics: last.text,
        loki_pushes: sink
            .counts
            .pushes
            .load(std::sync::atomic::Ordering::Relaxed),
        loki_bytes: sink.counts.bytes.load(std::sync::atomic::Ordering::Relaxed),
        log: collector.log.clone(),
        exit: None,
    };
    let exit = collector.stop();
    Ok(Step { exit, ..step })
}

type Watched = (Usage, Usage, Vec<u64>);

/// Waits out the warm-up, then samples the collector's RSS every second over the window;
/// CPU figures at both ends.
fn watch_window(fleet: &Fleet, c: &Collector, sink: &LokiSink) -> anyhow::Result<Watched> {
    std::thread::sleep(fleet.window.0.saturating_duration_since(Instant::now()));
    let before = usage(c, sink)?;
    let mut rss = Vec::new();
    while Instant::now() < fleet.window.1 {
        std::thread::sleep(Duration::from_secs(1).min(fleet.window.1 - Instant::now()));
        rss.push(c.memory("VmRSS")?);
    }
    Ok((before, usage(c, sink)?, rss))
}

fn usage(c: &Collector, sink: &LokiSink) -> anyhow::Result<Usage> {
    let stat = std::fs::read_to_string("/proc/stat").context("/proc/stat")?;
    let cpu: Vec<u64> = stat
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("cpu "))
        .context("no cpu line in /proc/stat")?
        .split_whitespace()
        .filter_map(|v| v.parse().ok())
        .collect();
    anyhow::ensure!(cpu.len() >= 5, "short cpu line in /proc/stat");
    // SAFETY: no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    let idle = cpu[3] + cpu[4];
    // user nice system idle iowait irq softirq steal (guest time is inside user).
    let busy = cpu.iter().take(8).sum::<u64>() - idle;
    Ok(Usage {
        at: Instant::now(),
        collector: c.cpu()?,
        threads: c.threads()?,
        bench: proc_cpu(&std::fs::read_to_string("/proc/self/stat")?)?,
        sink: Duration::from_micros(
            sink.counts
                .cpu_us
                .load(std::sync::atomic::Ordering::Relaxed),
        ),
        machine_busy: Duration::from_millis(busy * 1000 / hz),
    })
}

/// Scrapes /metrics every 15 s during the window, as Prometheus would; what failed is
/// returned with what worked.
fn spawn_scraper(
    fleet: Arc<Fleet>,
    addr: std::net::SocketAddr,
) -> std::io::Result<std::thread::JoinHandle<(Vec<Scraped>, Vec<String>)>> {
    std::thread::Builder::new()
        .name("scraper".into())
        .spawn(move || {
            let (mut taken, mut failed) = (Vec::new(), Vec::new());
            let mut next = fleet.window.0;
            let mut client = None;
            while next < fleet.window.1 {
                std::thread::sleep(next.saturating_duration_since(Instant::now()));
                next += SCRAPE_EVERY;
                let conn = match &mut client {
                    Some(c) => c,
                    None => match Client::connect(addr, Duration::from_secs(60)) {
                        Ok(c) => client.insert(c),
                        Err(e) => {
                            failed.push(format!("connect: {e}"));
                            continue;
                        }
                    },
                };
                match scrape(conn) {
                    Ok(s) => taken.push(Scraped {
                        ended: Instant::now(),
                        took: s.took,
                        bytes: s.text.len(),
                        series: series(&s.text),
                    }),
                    Err(e) => {
                        failed.push(e.to_string());
                        client = None;
                    }
                }
            }
            (taken, failed)
        })
}

/// Polls /metrics until Loki acknowledged `lines` (or LOKI_DRAIN passed); the last scrape.
fn wait_for_loki(c: &Collector, lines: u64) -> anyhow::Result<Scrape> {
    let mut client = Client::connect(c.addr, Duration::from_secs(60))?;
    let end = Instant::now() + LOKI_DRAIN;
    loop {
        let last = scrape(&mut client)?;
        let sent = value(&last.text, "vigil_loki_lines_sent_total", "")?;
        if sent as u64 >= lines || Instant::now() >= end {
            return Ok(last);
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}
