//! `run` and `test`: set up, build, then run vigil or every test suite.
use std::process::{Command, Stdio};

use anyhow::{bail, Context};

use crate::{
    cmd::{bin_dir, build, cmd, require_root, workspace_root},
    setup,
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

/// The main job on this machine: the collector on 127.0.0.1:9470 and the agent streaming
/// to it (ports default to the local nginx's upstreams; extra args go to `vigil-agent run`).
pub fn run(args: &[String]) -> anyhow::Result<()> {
    require_root()?;
    setup::run()?;
    build(true)?;
    let bins = bin_dir(true);
    let state = workspace_root().join("target/vigil-state");
    println!(
        "+ starting vigil-collector on 127.0.0.1:9470 (metrics: http://127.0.0.1:9470/metrics)"
    );
    let mut collector = Command::new(bins.join("vigil-collector"))
        .stdin(Stdio::null())
        .spawn()
        .context("starting vigil-collector")?;
    std::thread::sleep(std::time::Duration::from_millis(300));
    if let Some(status) = collector.try_wait()? {
        bail!("vigil-collector exited at start ({status}); is 127.0.0.1:9470 already in use?");
    }
    let agent = cmd(bins.join("vigil-agent"))
        .args(["run", "--collector", "http://127.0.0.1:9470", "--state-dir"])
        .arg(&state)
        .args(args)
        .run();
    // SAFETY: signal to our own child.
    unsafe { libc::kill(collector.id() as i32, libc::SIGTERM) };
    let _ = collector.wait();
    agent
}
