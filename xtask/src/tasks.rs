//! Build, run and test orchestration.
use std::{
    ffi::OsStr,
    path::PathBuf,
    process::{Command, Stdio},
};

use anyhow::{bail, Context};

pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask in workspace")
        .to_owned()
}

/// A command echoed before it runs, failing with its exit status.
pub struct Cmd(Command);

pub fn cmd(program: impl AsRef<OsStr>) -> Cmd {
    let mut c = Command::new(program);
    c.current_dir(workspace_root());
    Cmd(c)
}

impl Cmd {
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.0.args(args);
        self
    }
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.0.arg(arg);
        self
    }
    pub fn env(mut self, k: impl AsRef<OsStr>, v: impl AsRef<OsStr>) -> Self {
        self.0.env(k, v);
        self
    }
    /// Runs with stdout echoed live and test results counted.
    pub fn run_counting_tests(mut self) -> anyhow::Result<(u64, u64)> {
        use std::io::BufRead;
        let shown = format!("{:?}", self.0).replace('"', "");
        println!("+ {shown}");
        let mut child = self.0.stdin(Stdio::null()).stdout(Stdio::piped()).spawn()?;
        let (mut passed, mut failed) = (0, 0);
        for line in std::io::BufReader::new(child.stdout.take().expect("piped")).lines() {
            let line = line?;
            println!("{line}");
            count_results(&line, &mut passed, &mut failed);
        }
        let status = child.wait()?;
        if !status.success() && failed == 0 {
            bail!("`{shown}` failed: {status}");
        }
        Ok((passed, failed))
    }

    pub fn run(mut self) -> anyhow::Result<()> {
        let shown = format!("{:?}", self.0).replace('"', "");
        println!("+ {shown}");
        let status = self
            .0
            .stdin(Stdio::null())
            .status()
            .with_context(|| shown.clone())?;
        if !status.success() {
            bail!("`{shown}` failed: {status}");
        }
        Ok(())
    }
}

pub fn require_root() -> anyhow::Result<()> {
    // SAFETY: no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("this needs root: it installs packages, loads eBPF probes and adds nft rules; run it with sudo");
    }
    Ok(())
}

pub fn build(release: bool) -> anyhow::Result<()> {
    let mut c = cmd("cargo").args([
        "build",
        "--bins",
        "-p",
        "vigil-agent",
        "-p",
        "vigil-collector",
    ]);
    if release {
        c = c.arg("--release");
    }
    c.run()
}

pub fn bin_dir(release: bool) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    target.join(if release { "release" } else { "debug" })
}

pub fn test(filter: Option<&str>) -> anyhow::Result<()> {
    require_root()?;
    crate::setup::run()?;
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
        let (p, f) = c.args(["--", "--test-threads=1"]).run_counting_tests()?;
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
    crate::setup::run()?;
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
