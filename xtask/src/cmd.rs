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
        use std::{sync::mpsc, time::Duration};
        println!("+ {}", self.shown());
        let mut child = self.0.stdin(Stdio::null()).stdout(Stdio::piped()).spawn()?;
        let stdout = child.stdout.take().expect("piped");
        // Read on a thread of its own: a process the command left behind (an orphaned nginx
        // worker, say) can keep the pipe open after the command exited, and end of file would
        // then never come. The command's exit, not the pipe's, ends the wait.
        let (tx, rx) = mpsc::channel::<String>();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut show = |line: String| {
            println!("{line}");
            on_line(&line);
        };
        let status = loop {
            match rx.recv_timeout(Duration::from_millis(200)) {
                Ok(line) => show(line),
                Err(mpsc::RecvTimeoutError::Disconnected) => break child.wait()?,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if let Some(status) = child.try_wait()? {
                        break status;
                    }
                }
            }
        };
        // What the command wrote just before it exited, until the pipe goes quiet.
        while let Ok(line) = rx.recv_timeout(Duration::from_millis(500)) {
            show(line);
        }
        Ok(status)
    }

    /// Starts it and returns at once; stopping it is the caller's.
    pub fn spawn(mut self) -> anyhow::Result<Child> {
        Ok(self.0.stdin(Stdio::null()).spawn()?)
    }
}

#[cfg(test)]
mod watching_tests {
    use super::cmd;

    /// A command that leaves a process holding its stdout (as an orphaned nginx worker did to
    /// `cargo test`) is done when it exits, not when the pipe closes.
    #[test]
    fn a_left_behind_process_holding_stdout_does_not_hang_the_wait() {
        let marker = format!("sleep 299.{}", std::process::id());
        let mut lines = Vec::new();
        let status = cmd("sh")
            .args(["-c", &format!("({marker} &) ; echo done")])
            .run_watching(|l| lines.push(l.to_owned()))
            .unwrap();
        assert!(status.success());
        assert_eq!(lines, ["done"]);
        // The orphan still runs: the wait did not depend on it closing the pipe.
        let still = std::process::Command::new("pkill")
            .args(["-f", &marker])
            .status()
            .unwrap();
        assert!(still.success(), "the left-behind process was gone already");
    }
}
