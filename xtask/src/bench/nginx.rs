//! The figure an nginx operator asks for: proxied requests/s with and without the agent.
//! One nginx (Debian package, its own prefix) proxies to a second server block of itself,
//! without upstream keepalive, so every request opens a new upstream connection: the case
//! the probes track. wrk drives it closed-loop; sides alternate in rounds and are compared
//! within each round, as in the connect() benchmark.
//!
//! The e2e harness starts nginx too (tests/support/nginx.rs), for other ends: routes to
//! test upstreams, timeouts, its error log read back, panics on failure. This one has a
//! fixed shape (one worker, front and upstream in one config) and reports errors.
use std::{
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command},
    time::{Duration, Instant},
};

use anyhow::{bail, Context};

use super::{
    agent::{Agent, Consumer},
    bpf_stats::{during, report},
    stats::{median, paired, paired_median, spread, verdict},
};
use crate::cmd::cmd;

const ROUNDS: usize = 10;
const WRK_SECONDS: u32 = 3;

/// The agent as `inspect` (the probes, records only tallied) and as `trace` (a JSON line per
/// connection, its costliest consumer), against no agent.
const SIDES: [(&str, Option<Consumer>); 3] = [
    ("no agent", None),
    ("`inspect`", Some(Consumer::Tally)),
    ("`trace`", Some(Consumer::Trace)),
];

pub(super) fn proxied_requests(agent_bin: &Path) -> anyhow::Result<()> {
    let nginx = Nginx::start()?;
    // Warm up nginx and the page cache before the first measured round.
    wrk(nginx.front)?;
    let mut rates: [Vec<f64>; 3] = Default::default();
    for round in 0..ROUNDS {
        // Rotate the order so drift within a round favours no side.
        for step in 0..SIDES.len() {
            let side = (round + step) % SIDES.len();
            let _agent = match SIDES[side].1 {
                Some(consumer) => Some(Agent::start_as(agent_bin, nginx.upstream, consumer)?),
                None => None,
            };
            let rate = wrk(nginx.front)?.rate;
            eprintln!(
                "round {}/{ROUNDS} {:>10}: {rate:.0} req/s",
                round + 1,
                SIDES[side].0
            );
            rates[side].push(rate);
        }
    }
    println!(
        "nginx proxying each request over a new upstream connection (wrk -t1 -c16, {WRK_SECONDS} s × {ROUNDS} rounds per side):"
    );
    println!(
        "  no agent: {:.0} req/s (median)",
        median(&mut rates[0].clone())
    );
    for side in 1..SIDES.len() {
        println!(
            "  agent as {:<9} {:.0} req/s, paired ratio {}",
            SIDES[side].0,
            median(&mut rates[side].clone()),
            spread(&paired(&rates[side], &rates[0], |a, o| a / o), 3),
        );
    }
    let share = cost_per_request(agent_bin, &nginx)?;
    // A ratio at or above 1 with the agent costing the core several percent is the VM's
    // drift, not a free agent: the target needs both.
    let ratio = paired_median(&rates[2], &rates[0], |a, o| a / o);
    println!(
        "  target ≥ 0.99 of no agent with the agent as `trace`: paired ratio {ratio:.3}, share of the core {:.1}% (≤ 1% needed): {}",
        share * 100.0,
        verdict(ratio >= 0.99 && share <= 0.01)
    );
    Ok(())
}

/// Where the time goes, per proxied request: the probes' own time by program (bpf_stats)
/// and the agent's CPU, with the agent as `trace`. Returns their share of the core's time.
fn cost_per_request(agent_bin: &Path, nginx: &Nginx) -> anyhow::Result<f64> {
    let agent = Agent::start_as(agent_bin, nginx.upstream, Consumer::Trace)?;
    let cpu = agent.cpu_seconds()?;
    let (run, costs) = during(agent.pid(), || wrk(nginx.front))?;
    let used = agent.cpu_seconds()? - cpu;
    println!(
        "where the time goes with the agent as `trace` ({} requests at {:.0} req/s):",
        run.requests, run.rate
    );
    let probes_ns = report(&costs, run.requests as f64, "request");
    let agent_ns = used * 1e9 / run.requests as f64;
    println!(
        "  the agent's own CPU: {:.2} µs per request",
        agent_ns / 1e3
    );
    // nginx, wrk and the agent share one core: each request had 1/rate of it. Both sides
    // of these shares come from the same run, so the VM's drift cancels out.
    let request_ns = 1e9 / run.rate;
    println!(
        "  share of the core's time per request ({:.1} µs): probes {:.1}%, agent {:.1}% (tracepoint dispatch not included)",
        request_ns / 1e3,
        probes_ns / request_ns * 100.0,
        agent_ns / request_ns * 100.0
    );
    Ok((probes_ns + agent_ns) / request_ns)
}

/// One wrk run: requests/s and how many requests completed.
struct WrkRun {
    rate: f64,
    requests: u64,
}

fn wrk(port: u16) -> anyhow::Result<WrkRun> {
    let out = Command::new("wrk")
        .args(["-t1", "-c16", &format!("-d{WRK_SECONDS}s")])
        .arg(format!("http://127.0.0.1:{port}/"))
        .output()
        .context("running wrk (installed by `cargo xtask setup`)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    if text.contains("Non-2xx") || text.contains("Socket errors") {
        bail!("wrk saw errors through nginx; the figures would not be comparable:\n{text}");
    }
    let rate = text
        .lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .with_context(|| format!("no Requests/sec in wrk's output:\n{text}"))?;
    // "  73512 requests in 3.00s, 11.43MB read"
    let requests = text
        .lines()
        .find_map(|l| l.trim().split_once(" requests in ")?.0.parse().ok())
        .with_context(|| format!("no request count in wrk's output:\n{text}"))?;
    Ok(WrkRun { rate, requests })
}

/// nginx in the foreground with its own prefix in a temporary directory, stopped (and the
/// directory removed) when dropped.
struct Nginx {
    child: Child,
    front: u16,
    upstream: u16,
    dir: PathBuf,
}

/// One worker; `front` proxies every request to `upstream`, a server block of the same
/// nginx that answers 200 itself. Temp paths in the prefix: Debian's are /var/lib/nginx.
fn config(dir: &Path, front: u16, upstream: u16) -> String {
    let d = dir.display();
    format!(
        "worker_processes 1;\nerror_log {d}/error.log;\npid {d}/nginx.pid;\n\
         events {{ worker_connections 1024; }}\n\
         http {{\n  access_log {d}/access.log;\n\
         client_body_temp_path {d}/body; proxy_temp_path {d}/proxy;\n\
         fastcgi_temp_path {d}/fcgi; uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;\n\
         server {{ listen 127.0.0.1:{front}; location / {{ proxy_pass http://127.0.0.1:{upstream}; }} }}\n\
         server {{ listen 127.0.0.1:{upstream} backlog=4096; access_log off; location / {{ return 200 \"ok\\n\"; }} }}\n}}\n"
    )
}

impl Nginx {
    /// Returns once the front port accepts connections.
    fn start() -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!("vigil-bench-nginx-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let (front, upstream) = (free_port()?, free_port()?);
        let conf = dir.join("nginx.conf");
        std::fs::write(&conf, config(&dir, front, upstream))?;
        let child = cmd("nginx")
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(&conf)
            .args(["-g", "daemon off;"])
            .spawn()
            .context("starting nginx (installed by `cargo xtask setup`)")?;
        let nginx = Nginx {
            child,
            front,
            upstream,
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", front)).is_err() {
            if Instant::now() > deadline {
                bail!(
                    "nginx did not listen on {front}; see {}/error.log",
                    nginx.dir.display()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(nginx)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SAFETY: signal to our own child; its workers follow the master.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGQUIT) };
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}
