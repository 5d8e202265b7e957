//! `cargo xtask bench agent`: what `vigil-agent run` holds in memory and puts on the wire
//! under load: 10,000 HTTP-like exchanges a second over 100 watched ports while nginx's
//! access log grows by 2,000 lines a second, delivered to a stand-in collector (sink.rs).
//! Reported per `--connection-records` mode: VmRSS steady (median of one sample a second)
//! and its largest sample, VmHWM (the peak since start, startup included) against the
//! 25 MiB target, where the resident memory is (smaps_rollup), and bytes on the wire per
//! 10,000 connects. `VIGIL_BENCH_AGENT=/path/to/vigil-agent` measures another build (an
//! older one: flags it does not know are left out).
use std::{
    io::{BufRead, BufReader},
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context};

use super::{
    agent::refuse_other_agents,
    sink::{Received, Sink},
    stats::{median, verdict},
    traffic::Load,
};
use crate::{
    cmd::{bin_dir, build, require_root},
    setup,
};

const PORTS: usize = 100;
const RATE: u64 = 10_000;
const LOG_LINES_PER_SEC: u64 = 2_000;
const WARMUP: Duration = Duration::from_secs(5);
const MEASURE_SECS: usize = 30;
const TARGET_MIB: f64 = 25.0;

pub(super) fn run() -> anyhow::Result<()> {
    require_root()?;
    refuse_other_agents()?;
    setup::run()?;
    build(true)?;
    let bin = std::env::var_os("VIGIL_BENCH_AGENT")
        .map(PathBuf::from)
        .unwrap_or_else(|| bin_dir(true).join("vigil-agent"));
    let help = Command::new(&bin).args(["run", "--help"]).output()?;
    let help = String::from_utf8_lossy(&help.stdout).into_owned();
    let modes: &[Option<&str>] = if help.contains("--connection-records") {
        &[Some("all"), Some("failures")]
    } else {
        &[None]
    };
    println!(
        "vigil-agent run ({}): {RATE} exchanges/s over {PORTS} watched ports, {LOG_LINES_PER_SEC} access lines/s, {MEASURE_SECS} s after {} s of warm-up",
        bin.display(),
        WARMUP.as_secs()
    );
    for &mode in modes {
        let m = phase(&bin, mode, &help)?;
        m.report(mode.unwrap_or("(flag unknown to this build: every connection alone)"));
    }
    Ok(())
}

struct Measured {
    exchanges_per_sec: f64,
    log_lines_per_sec: f64,
    rss_kib: Vec<f64>,
    hwm_kib: f64,
    smaps: Vec<(String, u64)>,
    window: Received,
    total: Received,
    exchanges: u64,
}

impl Measured {
    fn report(mut self, mode: &str) {
        let mib = |kib: f64| kib / 1024.0;
        let steady = mib(median(&mut self.rss_kib));
        let top = mib(self.rss_kib.iter().copied().fold(0.0, f64::max));
        let peak = mib(self.hwm_kib);
        let per_10k = |bytes: u64| bytes as f64 * 10_000.0 / self.window.connections.max(1) as f64;
        println!("--connection-records {mode}:");
        println!(
            "  load: {:.0} exchanges/s, {:.0} access lines/s",
            self.exchanges_per_sec, self.log_lines_per_sec
        );
        println!(
            "  VmRSS steady {steady:.1} MiB (median; largest sample {top:.1}), VmHWM peak {peak:.1} MiB: ≤ {TARGET_MIB} MiB: {}",
            verdict(top <= TARGET_MIB && peak <= TARGET_MIB)
        );
        let smaps: Vec<String> = self
            .smaps
            .iter()
            .map(|(k, v)| format!("{k} {:.1} MiB", *v as f64 / 1024.0))
            .collect();
        println!("  resident at the end: {}", smaps.join(", "));
        println!(
            "  wire: {:.0} bytes per 10,000 connects ({:.0} of them connection records and summaries, compressed per batch alone); {} batches, {} summaries in {MEASURE_SECS} s",
            per_10k(self.window.body_bytes),
            per_10k(self.window.connection_bytes),
            self.window.batches,
            self.window.summaries
        );
        println!(
            "  delivered {} connections of {} exchanges ({} probe events lost, {} undecodable batches)",
            self.total.connections, self.exchanges, self.total.events_lost, self.total.undecodable
        );
    }
}

fn phase(bin: &Path, mode: Option<&str>, help: &str) -> anyhow::Result<Measured> {
    let dir = std::env::temp_dir().join(format!("vigil-bench-agent-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let (access_log, error_log) = (dir.join("access.log"), dir.join("error.log"));
    std::fs::write(&access_log, "")?;
    std::fs::write(&error_log, "")?;
    // Kept until the agent has stopped: a port closing under it is an upstream gone.
    let listeners = std::sync::Arc::new(
        (0..PORTS)
            .map(|_| TcpListener::bind("127.0.0.1:0"))
            .collect::<Result<Vec<_>, _>>()?,
    );
    let ports: Vec<String> = listeners
        .iter()
        .map(|l| Ok(l.local_addr()?.port().to_string()))
        .collect::<anyhow::Result<_>>()?;
    let sink = Sink::start()?;
    let mut args: Vec<String> = [
        "run",
        "--collector",
        &format!("http://127.0.0.1:{}", sink.port),
        "--node",
        "bench",
        "--interval",
        "5s",
        "--ports",
        &ports.join(","),
    ]
    .map(str::to_owned)
    .into();
    for (flag, value) in [
        ("--state-dir", dir.join("state").display().to_string()),
        ("--nginx-access-log", access_log.display().to_string()),
        ("--nginx-error-log", error_log.display().to_string()),
        // Served as by default, on a port of its own.
        ("--listen-health", format!("127.0.0.1:{}", free_port()?)),
        ("--connection-records", mode.unwrap_or_default().to_owned()),
    ] {
        if help.contains(flag) && !value.is_empty() {
            args.extend([flag.to_owned(), value]);
        }
    }
    let agent = RunningAgent::start(bin, &args)?;
    let mut load = Load::new();
    load.exchanges(listeners.clone(), RATE);
    load.access_log(access_log, LOG_LINES_PER_SEC);
    std::thread::sleep(WARMUP);
    let (before, start) = (sink.received(), Instant::now());
    let made_before = load.exchanges.load(std::sync::atomic::Ordering::Relaxed);
    let lines_before = load.log_lines.load(std::sync::atomic::Ordering::Relaxed);
    let mut rss_kib = Vec::with_capacity(MEASURE_SECS);
    for second in 1..=MEASURE_SECS {
        let due = start + Duration::from_secs(second as u64);
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
        rss_kib.push(status_kib(agent.pid(), "VmRSS")? as f64);
    }
    let elapsed = start.elapsed().as_secs_f64();
    let after = sink.received();
    let made = load.exchanges.load(std::sync::atomic::Ordering::Relaxed);
    let lines = load.log_lines.load(std::sync::atomic::Ordering::Relaxed);
    let hwm_kib = status_kib(agent.pid(), "VmHWM")? as f64;
    let smaps = resident_by_kind(agent.pid())?;
    load.stop()?;
    // The last batches: sealed within a second, delivered at once.
    std::thread::sleep(Duration::from_secs(3));
    drop(agent);
    drop(listeners);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(Measured {
        exchanges_per_sec: (made - made_before) as f64 / elapsed,
        log_lines_per_sec: (lines - lines_before) as f64 / elapsed,
        rss_kib,
        hwm_kib,
        smaps,
        window: Received {
            batches: after.batches - before.batches,
            body_bytes: after.body_bytes - before.body_bytes,
            connections: after.connections - before.connections,
            summaries: after.summaries - before.summaries,
            connection_bytes: after.connection_bytes - before.connection_bytes,
            undecodable: after.undecodable - before.undecodable,
            events_lost: after.events_lost - before.events_lost,
        },
        total: sink.received(),
        exchanges: made,
    })
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A `/proc/PID/status` field in kB.
fn status_kib(pid: u32, field: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches(" kB").parse().ok())
        .with_context(|| format!("no {field} in /proc/{pid}/status"))
}

/// Where the resident memory is, from /proc/PID/smaps: the heap, stacks and other private
/// memory; the binary and its libraries (file pages); the probes' maps (ring buffers are
/// mapped twice over, so their pages count twice).
fn resident_by_kind(pid: u32) -> anyhow::Result<Vec<(String, u64)>> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps"))?;
    let kinds = ["heap, stacks, private", "binary and libraries", "BPF maps"];
    let mut kib = [0u64; 3];
    let mut kind = 0;
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        let first = fields.next().unwrap_or_default();
        if first.contains('-') && !first.ends_with(':') {
            let name = fields.nth(4).unwrap_or_default();
            kind = if name.starts_with("anon_inode:bpf") {
                2
            } else if name.starts_with('/') {
                1
            } else {
                0
            };
        } else if first == "Rss:" {
            kib[kind] += fields.next().and_then(|v| v.parse().ok()).unwrap_or(0);
        }
    }
    Ok(kinds.iter().map(|k| k.to_string()).zip(kib).collect())
}

/// The agent under measurement; SIGTERM when dropped.
struct RunningAgent(Child);

impl RunningAgent {
    fn start(bin: &Path, args: &[String]) -> anyhow::Result<Self> {
        let mut child = Command::new(bin)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let mut lines = BufReader::new(child.stderr.take().expect("piped")).lines();
        for line in lines.by_ref() {
            let line = line?;
            if line.contains("vigil-agent run: ready") {
                // Keep draining (a full pipe would block the agent), showing warnings.
                std::thread::spawn(move || {
                    lines
                        .map_while(Result::ok)
                        .filter(|l| l.contains("WARN") || l.contains("ERROR"))
                        .for_each(|l| eprintln!("agent: {l}"))
                });
                return Ok(RunningAgent(child));
            }
            eprintln!("agent: {line}");
        }
        let _ = child.wait();
        bail!("vigil-agent run exited before it was ready")
    }

    fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for RunningAgent {
    fn drop(&mut self) {
        // SAFETY: a signal to our own child.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let _ = self.0.wait();
    }
}
