//! The agent under measurement, run as a child process of the benchmark; and the check that
//! no other agent is running.
use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Child, Command, Stdio},
};

use anyhow::{bail, Context};

/// Another agent's probes would be attached on every side, "off" included, and hide what
/// the probes cost.
pub(super) fn refuse_other_agents() -> anyhow::Result<()> {
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

/// The agent watching the benchmark port, output discarded, stopped when dropped.
pub(super) struct Agent {
    child: Child,
}

/// What the agent does with its records. Latency blocks run it as `inspect` (it only tallies
/// records, so the probes' own cost is what is measured); the CPU phase runs `trace`, the
/// costliest consumer (a JSON line per connection).
#[derive(Clone, Copy)]
pub(super) enum Consumer {
    Tally,
    Trace,
}

impl Agent {
    pub(super) fn start(bin: &Path, port: u16) -> anyhow::Result<Self> {
        Self::start_as(bin, port, Consumer::Tally)
    }

    /// Returns once the agent says it is ready (its probes attached).
    pub(super) fn start_as(bin: &Path, port: u16, consumer: Consumer) -> anyhow::Result<Self> {
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

    pub(super) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// CPU time the agent has used so far (user + system), in seconds.
    pub(super) fn cpu_seconds(&self) -> anyhow::Result<f64> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id()))?;
        let after_comm = stat.rsplit_once(')').context("bad /proc stat")?.1;
        let fields: Vec<&str> = after_comm.split_whitespace().collect();
        // utime and stime are fields 14 and 15; after ") " field 3 is at index 0.
        let ticks = fields[11].parse::<u64>()? + fields[12].parse::<u64>()?;
        // SAFETY: no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        Ok(ticks as f64 / hz)
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        // SAFETY: signal to our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}
