//! The command helpers every task uses: where the workspace is, building the binaries and
//! where they land, the root check, and `Cmd`, a command run from the workspace root.
use std::{
    ffi::OsStr,
    io::BufRead,
    path::PathBuf,
    process::{Child, Command, ExitStatus, Stdio},
};

use anyhow::{bail, Context};

pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask in workspace")
        .to_owned()
}

/// Builds the binaries (the agent's build script builds the eBPF object it embeds).
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

/// Where `build` puts the binaries (CARGO_TARGET_DIR, else target/).
pub fn bin_dir(release: bool) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    target.join(if release { "release" } else { "debug" })
}

pub fn require_root() -> anyhow::Result<()> {
    // SAFETY: no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("this needs root: it installs packages, loads eBPF probes and adds nft rules; run it with sudo");
    }
    Ok(())
}

/// A command run from the workspace root with stdin closed. `run` and `run_watching` echo
/// it before it runs; `spawn` starts it in the background, silently.
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

    /// The command line as echoed.
    pub fn shown(&self) -> String {
        format!("{:?}", self.0).replace('"', "")
    }

    /// Runs to the end, failing with its exit status.
    pub fn run(mut self) -> anyhow::Result<()> {
        let shown = self.shown();
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

    /// Runs to the end with stdout echoed live, each line also handed to `on_line`; the
    /// exit status is the caller's to judge.
    pub fn run_watching(mut self, mut on_line: impl FnMut(&str)) -> anyhow::Result<ExitStatus> {
        println!("+ {}", self.shown());
        let mut child = self.0.stdin(Stdio::null()).stdout(Stdio::piped()).spawn()?;
        for line in std::io::BufReader::new(child.stdout.take().expect("piped")).lines() {
            let line = line?;
            println!("{line}");
            on_line(&line);
        }
        Ok(child.wait()?)
    }

    /// Starts it and returns at once; stopping it is the caller's.
    pub fn spawn(mut self) -> anyhow::Result<Child> {
        Ok(self.0.stdin(Stdio::null()).spawn()?)
    }
}
