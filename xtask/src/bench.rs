//! `cargo xtask bench probes`: connect() latency on loopback with and without the probes
//! attached, interleaved in one run, plus the agent's CPU at a paced 10k connects/s.
//! Closed loop on purpose: each connection is accepted by the same thread before the next
//! connect. An acceptor thread that falls behind overflows the accept queue, and the 1 s SYN
//! retransmits that follow (and its wakeups on the other core) swamp the measurement.
use std::{
    io::{BufRead, BufReader},
    net::{TcpListener, TcpStream},
    os::fd::AsRawFd,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context};

use crate::tasks::{bin_dir, build, require_root};

const ROUNDS: usize = 20;
const CONNECTS_PER_BLOCK: usize = 3000;
const WARMUP: usize = 300;
const PACED_RATE: u64 = 10_000;
const PACED_SECS: u64 = 5;

pub fn collector() -> anyhow::Result<()> {
    crate::tasks::cmd("cargo")
        .args(["bench", "-p", "vigil-collector", "--bench", "collector"])
        .run()
}

pub fn probes() -> anyhow::Result<()> {
    require_root()?;
    refuse_other_agents()?;
    crate::setup::run()?;
    build(true)?;
    let agent_bin = bin_dir(true).join("vigil-agent");
    pin_to_last_cpu();
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    // Three sides: no probes; probes attached but this port not watched (the cost every
    // other connection on the node pays); probes tracking this port.
    let mut sides: [Vec<f64>; 3] = Default::default();
    // Each round's p50 per side: the machine drifts between states, so sides are also
    // compared within a round (paired) rather than only pooled.
    let mut round_p50: [Vec<f64>; 3] = Default::default();
    let unwatched = if addr.port() == u16::MAX {
        addr.port() - 1
    } else {
        addr.port() + 1
    };
    for round in 0..ROUNDS {
        // Rotate the order so drift over the run does not favour one side.
        for step in 0..3 {
            let side = (round + step) % 3;
            let agent = match side {
                0 => None,
                1 => Some(Agent::start(&agent_bin, unwatched)?),
                _ => Some(Agent::start(&agent_bin, addr.port())?),
            };
            let mut block = connect_block(&listener, CONNECTS_PER_BLOCK)?;
            let p50 = percentile(&mut block, 0.5);
            eprintln!(
                "round {}/{ROUNDS} {:>9}: p50 {p50:.2} µs",
                round + 1,
                SIDES[side]
            );
            round_p50[side].push(p50);
            sides[side].extend(block);
            drop(agent);
        }
    }
    let [off, untracked, tracked] = &mut sides;
    report(off, untracked, tracked);
    report_paired(&round_p50);
    let millicores = agent_cpu_at_rate(&agent_bin, &listener)?;
    println!(
        "agent CPU at {PACED_RATE} connects/s (`trace`, a JSON line each): {millicores:.1} millicores (target ≤ 20) {}",
        verdict(millicores <= 20.0)
    );
    crate::bench_nginx::proxied_requests(&agent_bin)
}

/// Another agent's probes would be attached on every side, "off" included, and hide what
/// the probes cost.
fn refuse_other_agents() -> anyhow::Result<()> {
    let mut running = Vec::new();
    for entry in std::fs::read_dir("/proc")?.flatten() {
        let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
        if comm.trim_end() == "vigil-agent" {
            running.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    if !running.is_empty() {
        bail!(
            "vigil-agent is already running (pid {}): its probes would be attached on every side of the benchmark; stop it and run again",
            running.join(", ")
        );
    }
    Ok(())
}

const SIDES: [&str; 3] = ["off", "unwatched", "watched"];

fn report(off: &mut [f64], untracked: &mut [f64], tracked: &mut [f64]) {
    let (p50_off, p99_off) = (percentile(off, 0.5), percentile(off, 0.99));
    println!(
        "connect() on loopback, {} connects per side, interleaved:",
        off.len()
    );
    println!("  probes off:                 p50 {p50_off:.2} µs  p99 {p99_off:.2} µs");
    for (name, side) in [
        ("attached, port unwatched", untracked),
        ("attached, port watched", tracked),
    ] {
        let (p50, p99) = (percentile(side, 0.5), percentile(side, 0.99));
        println!(
            "  {name:<26} p50 {p50:.2} µs  p99 {p99:.2} µs  p50 +{:.2} µs (ratio {:.3}), p99 ratio {:.3}",
            p50 - p50_off,
            p50 / p50_off,
            p99 / p99_off
        );
    }
}

/// Median over rounds of (side p50 − no-probes p50) within the same round; the verdict.
fn report_paired(round_p50: &[Vec<f64>; 3]) {
    let paired = |side: usize| {
        let mut added: Vec<f64> = round_p50[side]
            .iter()
            .zip(&round_p50[0])
            .map(|(s, o)| s - o)
            .collect();
        let mut ratio: Vec<f64> = round_p50[side]
            .iter()
            .zip(&round_p50[0])
            .map(|(s, o)| s / o)
            .collect();
        (percentile(&mut added, 0.5), percentile(&mut ratio, 0.5))
    };
    let (u_added, u_ratio) = paired(1);
    let (added, ratio) = paired(2);
    println!("  paired by round (median of per-round p50 differences):");
    println!("    port unwatched +{u_added:.2} µs (ratio {u_ratio:.3}); port watched +{added:.2} µs (ratio {ratio:.3})");
    println!(
        "  watched port: target ≤ +1 µs or ≤ 5% at p50 (paired): {}",
        verdict(added <= 1.0 || ratio <= 1.05)
    );
}

pub(crate) fn verdict(ok: bool) -> &'static str {
    if ok {
        "MET"
    } else {
        "NOT MET"
    }
}

pub(crate) fn median(samples: &mut [f64]) -> f64 {
    percentile(samples, 0.5)
}

fn percentile(samples: &mut [f64], q: f64) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[((samples.len() - 1) as f64 * q).round() as usize]
}

/// Connect, time it, accept it, close with RST (SO_LINGER 0) so no TIME_WAIT exhausts
/// ephemeral ports.
fn timed_connect(listener: &TcpListener) -> anyhow::Result<f64> {
    let addr = listener.local_addr()?;
    let start = Instant::now();
    let stream = TcpStream::connect(addr)?;
    let micros = start.elapsed().as_secs_f64() * 1e6;
    let (accepted, _) = listener.accept()?;
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: valid fd and option struct.
    unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    drop(stream);
    drop(accepted);
    Ok(micros)
}

fn connect_block(listener: &TcpListener, n: usize) -> anyhow::Result<Vec<f64>> {
    for _ in 0..WARMUP {
        timed_connect(listener)?;
    }
    (0..n).map(|_| timed_connect(listener)).collect()
}

/// One CPU for the whole run: a migration between blocks would show up as a difference
/// between sides. The agent's threads stay free to run anywhere.
fn pin_to_last_cpu() {
    // SAFETY: plain syscalls on this thread with a zeroed, then filled, cpu_set_t.
    unsafe {
        let cpus = libc::sysconf(libc::_SC_NPROCESSORS_ONLN).max(1) as usize;
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpus - 1, &mut set);
        if libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set) != 0 {
            eprintln!(
                "bench: could not pin to CPU {}; results may be noisier",
                cpus - 1
            );
        }
    }
}

fn agent_cpu_at_rate(agent_bin: &std::path::Path, listener: &TcpListener) -> anyhow::Result<f64> {
    let port = listener.local_addr()?.port();
    let agent = Agent::start_as(agent_bin, port, Consumer::Trace)?;
    let before = cpu_ticks(agent.child.id())?;
    let start = Instant::now();
    let interval = Duration::from_nanos(1_000_000_000 / PACED_RATE);
    let total = PACED_RATE * PACED_SECS;
    for i in 0..total {
        let due = start + interval * i as u32;
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        timed_connect(listener)?;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let used = cpu_ticks(agent.child.id())? - before;
    // SAFETY: no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    println!(
        "paced phase: {total} connects in {elapsed:.2} s ({:.0}/s)",
        total as f64 / elapsed
    );
    Ok(used as f64 / hz / elapsed * 1000.0)
}

fn cpu_ticks(pid: u32) -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after_comm = stat.rsplit_once(')').context("bad /proc stat")?.1;
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    // utime and stime are fields 14 and 15; after ") " field 3 is at index 0.
    Ok(fields[11].parse::<u64>()? + fields[12].parse::<u64>()?)
}

/// The agent watching the benchmark port, output discarded. Latency blocks run it as
/// `inspect` (it only tallies records, so the probes' own cost is what is measured); the
/// CPU phase runs `trace`, the costliest consumer (a JSON line per connection).
pub(crate) struct Agent {
    child: Child,
}

#[derive(Clone, Copy)]
pub(crate) enum Consumer {
    Tally,
    Trace,
}

impl Agent {
    fn start(bin: &std::path::Path, port: u16) -> anyhow::Result<Self> {
        Self::start_as(bin, port, Consumer::Tally)
    }

    pub(crate) fn start_as(
        bin: &std::path::Path,
        port: u16,
        consumer: Consumer,
    ) -> anyhow::Result<Self> {
        let port = port.to_string();
        let args: Vec<&str> = match consumer {
            Consumer::Tally => vec![
                "inspect",
                "--watch",
                "--interval",
                "3600s",
                "--ports",
                &port,
            ],
            Consumer::Trace => vec!["trace", "--ports", &port],
        };
        let mut child = Command::new(bin)
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let ready = format!("vigil-agent {}: ready", args[0]);
        let mut stderr = BufReader::new(child.stderr.take().expect("piped")).lines();
        for line in stderr.by_ref() {
            if line? == ready {
                // Keep draining: a full pipe would block the agent on its next log line.
                std::thread::spawn(move || stderr.for_each(drop));
                return Ok(Agent { child });
            }
        }
        bail!("vigil-agent {} exited before it was ready", args[0])
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        // SAFETY: signal to our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}
