//! Processes the long-running xtasks start (`demo`, `run`, `bench alerts`): each in a
//! process group of its own (so what it forks goes with it, and Ctrl-C on our terminal
//! reaches only us), its output appended to a log file, told to stop if we die
//! (PR_SET_PDEATHSIG), and stopped on drop: SIGTERM to the group, SIGKILL after a grace.
use std::{
    collections::VecDeque,
    fs::{File, OpenOptions},
    io::{BufRead, BufReader, Write},
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{mpsc, Arc, Mutex},
    time::{Duration, Instant},
};

use crate::interrupt;

/// Lines of a process's output kept to explain why it did not start.
const KEPT_LINES: usize = 12;

#[derive(Debug, thiserror::Error)]
pub enum ProcError {
    #[error("cannot start {name}: {source}")]
    Spawn {
        name: String,
        source: std::io::Error,
    },
    #[error("{name}: log file {}: {source}", log.display())]
    Log {
        name: String,
        log: PathBuf,
        source: std::io::Error,
    },
    #[error("{name} exited at start ({status}):\n{lines}")]
    ExitedAtStart {
        name: String,
        status: String,
        lines: String,
    },
    #[error("{name} not ready after {limit:?} (log: {}):\n{lines}", log.display())]
    NotReady {
        name: String,
        limit: Duration,
        log: PathBuf,
        lines: String,
    },
    #[error(transparent)]
    Interrupted(#[from] interrupt::Interrupted),
}

pub struct Proc {
    pub name: String,
    child: Child,
    /// SIGTERM → SIGKILL.
    grace: Duration,
    reaped: bool,
}

fn open_log(name: &str, log: &Path) -> Result<File, ProcError> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|source| ProcError::Log {
            name: name.to_owned(),
            log: log.to_owned(),
            source,
        })
}

fn spawn_child(name: &str, cmd: &mut Command) -> Result<Child, ProcError> {
    cmd.stdin(Stdio::null()).process_group(0);
    // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            Ok(())
        });
    }
    cmd.spawn().map_err(|source| ProcError::Spawn {
        name: name.to_owned(),
        source,
    })
}

impl Proc {
    /// Starts `cmd`, stdout and stderr appended to `log`.
    pub fn spawn(name: &str, mut cmd: Command, log: &Path) -> Result<Proc, ProcError> {
        let out = open_log(name, log)?;
        let err = out.try_clone().map_err(|source| ProcError::Log {
            name: name.to_owned(),
            log: log.to_owned(),
            source,
        })?;
        cmd.stdout(out).stderr(err);
        Ok(Proc::adopt(name, spawn_child(name, &mut cmd)?))
    }

    fn adopt(name: &str, child: Child) -> Proc {
        Proc {
            name: name.to_owned(),
            child,
            grace: Duration::from_secs(6),
            reaped: false,
        }
    }

    /// Starts `cmd` and returns once it prints a line containing `marker` on `stream`
    /// (every line of `stream` is copied to `log`, the other stream goes there directly).
    /// Fails with its last lines when it exits first or after `limit`.
    pub fn spawn_until(
        name: &str,
        mut cmd: Command,
        log: &Path,
        stream: Stream,
        marker: &str,
        limit: Duration,
    ) -> Result<(Proc, String), ProcError> {
        let out = open_log(name, log)?;
        let other = out.try_clone().map_err(|source| ProcError::Log {
            name: name.to_owned(),
            log: log.to_owned(),
            source,
        })?;
        match stream {
            Stream::Stdout => cmd.stdout(Stdio::piped()).stderr(other),
            Stream::Stderr => cmd.stderr(Stdio::piped()).stdout(other),
        };
        let mut child = spawn_child(name, &mut cmd)?;
        let pipe: Box<dyn std::io::Read + Send> = match stream {
            Stream::Stdout => Box::new(child.stdout.take().expect("piped")),
            Stream::Stderr => Box::new(child.stderr.take().expect("piped")),
        };
        let mut proc = Proc::adopt(name, child);
        let last = Arc::new(Mutex::new(VecDeque::new()));
        let (found, seen) = mpsc::channel();
        copy_lines(pipe, out, marker.to_owned(), last.clone(), found);
        let shown = || {
            last.lock()
                .map(|l| Vec::from(l.clone()).join("\n"))
                .unwrap_or_default()
        };
        let start = Instant::now();
        loop {
            interrupt::check()?;
            match seen.recv_timeout(Duration::from_millis(50)) {
                Ok(Some(line)) => return Ok((proc, line)),
                Ok(None) | Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = proc.wait_exit(Duration::from_secs(2));
                    return Err(ProcError::ExitedAtStart {
                        name: name.to_owned(),
                        status: status.unwrap_or_else(|| "output closed".into()),
                        lines: shown(),
                    });
                }
                Err(mpsc::RecvTimeoutError::Timeout) if start.elapsed() > limit => {
                    return Err(ProcError::NotReady {
                        name: name.to_owned(),
                        limit,
                        log: log.to_owned(),
                        lines: shown(),
                    });
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
            }
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A signal to the process itself (not its group).
    pub fn signal(&self, signal: libc::c_int) {
        if !self.reaped {
            // SAFETY: our own child, not reaped yet, so the pid is still ours.
            unsafe { libc::kill(self.child.id() as i32, signal) };
        }
    }

    /// How it exited (`exit status 1`, `signal 9`), if it did; the zombie is kept so its
    /// process group stays ours until `stop`.
    pub fn exit_status(&self) -> Option<String> {
        if self.reaped {
            return Some("reaped".into());
        }
        // SAFETY: waitid on our own child with WNOWAIT (inspects, does not reap).
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        let flags = libc::WEXITED | libc::WNOHANG | libc::WNOWAIT;
        let r = unsafe { libc::waitid(libc::P_PID, self.child.id(), &mut info, flags) };
        // SAFETY: filled by waitid for an exited child (si_pid 0 when none).
        let (pid, status, code) = unsafe { (info.si_pid(), info.si_status(), info.si_code) };
        if r != 0 || pid == 0 {
            return None;
        }
        Some(if code == libc::CLD_EXITED {
            format!("exit status {status}")
        } else {
            format!("signal {status}")
        })
    }

    /// Waits up to `limit` for it to exit; how it exited.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<String> {
        let end = Instant::now() + limit;
        loop {
            if let Some(status) = self.exit_status() {
                return Some(status);
            }
            if Instant::now() >= end {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM to its group, SIGKILL to whatever of the group is left after the grace (or at
    /// once once the leader is gone), then reap it.
    pub fn stop(&mut self) {
        if self.reaped {
            return;
        }
        let group = -(self.child.id() as i32);
        // SAFETY: the leader is our unreaped child, so the group id is still ours.
        unsafe { libc::kill(group, libc::SIGTERM) };
        let _ = self.wait_exit(self.grace);
        unsafe { libc::kill(group, libc::SIGKILL) };
        let _ = self.child.wait();
        self.reaped = true;
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

#[derive(Debug, Clone, Copy)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// A thread copying `pipe`'s lines to `log`, keeping the last ones, and sending the first
/// line that contains `marker` (None at EOF before it).
fn copy_lines(
    pipe: Box<dyn std::io::Read + Send>,
    mut log: File,
    marker: String,
    last: Arc<Mutex<VecDeque<String>>>,
    found: mpsc::Sender<Option<String>>,
) {
    std::thread::spawn(move || {
        let mut told = false;
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            let _ = writeln!(log, "{line}");
            if !told && line.contains(&marker) {
                told = found.send(Some(line)).is_ok();
                continue;
            }
            if !told {
                let mut kept = last.lock().unwrap_or_else(|e| e.into_inner());
                if kept.len() == KEPT_LINES {
                    kept.pop_front();
                }
                kept.push_back(line);
            }
        }
        if !told {
            let _ = found.send(None);
        }
    });
}
