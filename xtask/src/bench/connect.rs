//! connect() latency on loopback with and without the probes attached, interleaved in one
//! run, plus the agent's CPU at a paced 10k connects/s.
//! Closed loop on purpose: each connection is accepted by the same thread before the next
//! connect. An acceptor thread that falls behind overflows the accept queue, and the 1 s SYN
//! retransmits that follow (and its wakeups on the other core) swamp the measurement.
use std::{
    net::{TcpListener, TcpStream},
    os::fd::AsRawFd,
    path::Path,
    time::{Duration, Instant},
};

use super::{
    agent::{Agent, Consumer},
    bpf_stats::{during, report},
    stats::{latency_paired_report, latency_report, percentile, verdict},
};

const ROUNDS: usize = 20;
const CONNECTS_PER_BLOCK: usize = 3000;
const WARMUP: usize = 300;
const PACED_RATE: u64 = 10_000;
const PACED_SECS: u64 = 5;

const SIDES: [&str; 3] = ["off", "unwatched", "watched"];

pub(super) fn latency_and_agent_cpu(agent_bin: &Path) -> anyhow::Result<()> {
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
                1 => Some(Agent::start(agent_bin, unwatched)?),
                _ => Some(Agent::start(agent_bin, addr.port())?),
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
    latency_report(off, untracked, tracked);
    latency_paired_report(&round_p50);
    probes_time_per_connect(agent_bin, &listener)?;
    let millicores = agent_cpu_at_rate(agent_bin, &listener)?;
    println!(
        "agent CPU at {PACED_RATE} connects/s (`trace`, a JSON line each): {millicores:.1} millicores (target ≤ 20) {}",
        verdict(millicores <= 20.0)
    );
    Ok(())
}

/// The probes' own time per tracked connect (bpf_stats), connect to close.
fn probes_time_per_connect(agent_bin: &Path, listener: &TcpListener) -> anyhow::Result<()> {
    let agent = Agent::start(agent_bin, listener.local_addr()?.port())?;
    let (_, costs) = during(agent.pid(), || connect_block(listener, CONNECTS_PER_BLOCK))?;
    let connects = (WARMUP + CONNECTS_PER_BLOCK) as f64;
    report(&costs, connects, "connect");
    Ok(())
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
/// between sides. Children spawned afterwards inherit the mask (sched_setaffinity(2)): the
/// agents, and nginx and wrk in the nginx benchmark, share that CPU.
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

fn agent_cpu_at_rate(agent_bin: &Path, listener: &TcpListener) -> anyhow::Result<f64> {
    let port = listener.local_addr()?.port();
    let agent = Agent::start_as(agent_bin, port, Consumer::Trace)?;
    let before = agent.cpu_seconds()?;
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
    let used = agent.cpu_seconds()? - before;
    println!(
        "paced phase: {total} connects in {elapsed:.2} s ({:.0}/s)",
        total as f64 / elapsed
    );
    Ok(used / elapsed * 1000.0)
}
