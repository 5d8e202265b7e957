//! `run` and `test`: set up, build, then run vigil or every test suite.
use std::{
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{bail, Context};

use crate::{
    alert_view::{self, Feed},
    cmd::{bin_dir, build, cmd, require_root, workspace_root},
    http, interrupt,
    procs::{Proc, ProcError, Stream},
    setup,
    term::Term,
};

pub fn test(filter: Option<&str>) -> anyhow::Result<()> {
    require_root()?;
    setup::run()?;
    build(false)?;
    // The probes' crate builds its binary for bpf only: on the host, just the shared types.
    let suites = [
        &["test", "-p", "vigil-agent-ebpf", "--lib"][..],
        &["test", "--workspace", "--exclude", "vigil-agent-ebpf"][..],
    ];
    let (mut passed, mut failed) = (0, 0);
    for args in suites {
        let mut c = cmd("cargo").args(args).env("VIGIL_BIN_DIR", bin_dir(false));
        if let Some(filter) = filter {
            c = c.arg(filter);
        }
        // End-to-end tests share nginx, nft and the probes' ports: one at a time.
        let c = c.args(["--", "--test-threads=1"]);
        let shown = c.shown();
        let (mut p, mut f) = (0, 0);
        let status = c.run_watching(|line| count_results(line, &mut p, &mut f))?;
        // A failing run that reported no failed test failed to build or to start.
        if !status.success() && f == 0 {
            bail!("`{shown}` failed: {status}");
        }
        (passed, failed) = (passed + p, failed + f);
    }
    println!("{passed} passed, {failed} failed");
    if failed > 0 {
        bail!("{failed} tests failed");
    }
    Ok(())
}

/// Sums cargo's `test result: ok. N passed; M failed; ...` lines.
fn count_results(line: &str, passed: &mut u64, failed: &mut u64) {
    let Some(rest) = line.strip_prefix("test result: ") else {
        return;
    };
    for part in rest.split(';') {
        let mut words = part.split_whitespace().rev();
        let (Some(label), Some(n)) = (words.next(), words.next()) else {
            continue;
        };
        let n: u64 = n
            .trim_start_matches("ok.")
            .trim_start_matches("FAILED.")
            .trim()
            .parse()
            .unwrap_or(0);
        match label {
            "passed" => *passed += n,
            "failed" => *failed += n,
            _ => {}
        }
    }
}

/// An ending that is a message for a person, not a failure to debug: `main` prints it as
/// one line (no backtrace, whatever RUST_BACKTRACE says) and exits with `code`.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Exit {
    pub code: i32,
    pub message: String,
}

/// Where the collector listens for `run` (its default).
const RUN_COLLECTOR_PORT: u16 = 9470;

/// The main job on a real host: the collector on 127.0.0.1:9470 and the agent streaming to
/// it (ports default to the local nginx's upstreams; extra args go to `vigil-agent run`),
/// and every alert printed as it fires and resolves, as the demo prints them. Their logs go
/// to target/vigil-run/logs; Ctrl-C stops both.
pub fn run(args: &[String]) -> anyhow::Result<()> {
    require_root()?;
    setup::run()?;
    build(true)?;
    interrupt::install()?;
    match serve(args) {
        // Ctrl-C is how `run` ends; everything it started is stopped by now.
        Err(_) if interrupt::requested() => Ok(()),
        other => other,
    }
}

fn serve(args: &[String]) -> anyhow::Result<()> {
    let bins = bin_dir(true);
    let logs = workspace_root().join("target/vigil-run/logs");
    std::fs::create_dir_all(&logs).with_context(|| format!("mkdir {}", logs.display()))?;
    let mut term = Term::stdout();
    let collector_log = logs.join("collector.log");
    let collector = Proc::spawn(
        "vigil-collector",
        Command::new(bins.join("vigil-collector")),
        &collector_log,
    )?;
    wait_collector(&collector, &collector_log)?;
    let mut agent_cmd = Command::new(bins.join("vigil-agent"));
    agent_cmd
        .args([
            "run",
            "--collector",
            &format!("http://127.0.0.1:{RUN_COLLECTOR_PORT}"),
        ])
        .arg("--state-dir")
        .arg(workspace_root().join("target/vigil-state"))
        .args(args);
    let agent_log = logs.join("agent.log");
    // The log is appended to: what this start wrote begins here.
    let log_start = std::fs::metadata(&agent_log).map_or(0, |m| m.len());
    let ready = Duration::from_secs(60);
    let agent = match Proc::spawn_until(
        "vigil-agent",
        agent_cmd,
        &agent_log,
        Stream::Stderr,
        "vigil-agent run: ready",
        ready,
    ) {
        Ok((agent, _)) => agent,
        Err(ProcError::ExitedAtStart { lines, .. }) => {
            let written = std::fs::read(&agent_log).unwrap_or_default();
            let written = String::from_utf8_lossy(written.get(log_start as usize..).unwrap_or(&[]));
            let message = agent_refused(&written, &lines);
            return Err(Exit { code: 1, message }.into());
        }
        Err(e) => return Err(e.into()),
    };
    term.line(&format!(
        "vigil runs: collector http://127.0.0.1:{RUN_COLLECTOR_PORT} (/metrics, /api/v1/alerts), \
         agent pid {}; logs in {}; Ctrl-C stops both",
        agent.pid(),
        crate::demo::shown(&logs)
    ));
    let result = watch_alerts(&mut term, &agent, &collector);
    term.clear_progress();
    term.line("stopping the agent and the collector…");
    drop(agent);
    drop(collector);
    result
}

/// One line for an agent that exited at start: its own error (`Error: …` in what it wrote,
/// before any backtrace; else its last line), and the demo when there is no nginx to watch.
fn agent_refused(written: &str, last_lines: &str) -> String {
    let said = written
        .lines()
        .find_map(|l| l.trim().strip_prefix("Error: "))
        .or_else(|| {
            last_lines
                .lines()
                .rev()
                .map(str::trim)
                .find(|l| !l.is_empty())
        })
        .unwrap_or("no message");
    if said.contains("nginx") {
        format!("vigil-agent: {said} — to see vigil at work without an nginx of your own, run `cargo xtask demo`")
    } else {
        format!("vigil-agent exited at start: {said}")
    }
}

fn wait_collector(collector: &Proc, log: &std::path::Path) -> anyhow::Result<()> {
    let start = Instant::now();
    loop {
        interrupt::check()?;
        let healthz = http::get(
            RUN_COLLECTOR_PORT,
            "/healthz",
            "127.0.0.1",
            Duration::from_secs(1),
        );
        if healthz.is_ok_and(|r| r.status == 200) {
            return Ok(());
        }
        if let Some(status) = collector.exit_status() {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            let last = text
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("");
            bail!("vigil-collector exited at start ({status}): {last} (is 127.0.0.1:{RUN_COLLECTOR_PORT} in use?)");
        }
        if start.elapsed() > Duration::from_secs(20) {
            bail!("vigil-collector does not answer on 127.0.0.1:{RUN_COLLECTOR_PORT} after 20 s (log {})", log.display());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Polls the collector's alerts and prints each transition, until Ctrl-C or either
/// process stops.
fn watch_alerts(term: &mut Term, agent: &Proc, collector: &Proc) -> anyhow::Result<()> {
    let mut feed = Feed::default();
    let start = Instant::now();
    loop {
        interrupt::check()?;
        for p in [agent, collector] {
            if let Some(status) = p.exit_status() {
                bail!(
                    "{} stopped ({status}); its log is in target/vigil-run/logs",
                    p.name
                );
            }
        }
        let detail = match alert_view::fetch(RUN_COLLECTOR_PORT) {
            Ok(alerts) => {
                for a in feed.changes(alerts) {
                    let text = alert_view::render(&a, &term.style);
                    term.line(&format!("\n{text}\n"));
                }
                let pending = feed.pending().len();
                if pending > 0 {
                    format!("  ({pending} pending)")
                } else {
                    String::new()
                }
            }
            Err(e) => format!("  ({e})"),
        };
        term.progress(
            "watching nginx's upstreams",
            start.elapsed().as_secs_f64(),
            &detail,
        );
        interrupt::sleep(Duration::from_millis(500))?;
    }
}
