//! The crash reason: the last lines an upstream owner wrote to stderr, read once after it
//! exits from wherever they went: the regular file its fd 2 pointed to, its pod's container log
//! under /var/log/pods, or its systemd unit's journal. Where to look is settled while the process
//! lives (`StderrPlan::capture`: after the exit /proc/PID is gone); the read runs on a worker
//! thread (`CrashReader`) and everything it reads or keeps is bounded (`Limits`).
pub mod fd_file;
pub mod journal;
pub mod pod_log;
mod reader;
mod tail;

use std::{
    fs::File,
    io,
    os::unix::fs::FileExt,
    path::{Path, PathBuf},
};

pub use reader::{CrashReader, CrashStats};
pub use tail::{Limits, StderrTail, TailLines};

use super::{owners::ProcessIdentity, proc_files::ProcStat};

#[derive(Debug, thiserror::Error)]
pub enum StderrError {
    #[error("reading {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Journal(#[from] journal::JournalError),
    #[error("no container log for pod {pod_uid} under {root}")]
    NoPodLog { pod_uid: String, root: PathBuf },
}

/// Where the logs live: settings with the usual paths as defaults, overridable from the
/// environment (the DaemonSet mounts the host's; tests point at their own trees).
#[derive(Debug, Clone)]
pub struct LogPaths {
    /// Journal directories; each holds one directory per machine id.
    pub journal_dirs: Vec<PathBuf>,
    /// kubelet's `/var/log/pods/<namespace>_<pod>_<uid>/<container>/<restart>.log`.
    pub pods: PathBuf,
    /// kubelet's `/var/log/containers/<pod>_<namespace>_<container>-<id>.log` symlinks.
    pub containers: PathBuf,
}

impl Default for LogPaths {
    fn default() -> Self {
        LogPaths {
            journal_dirs: vec!["/var/log/journal".into(), "/run/log/journal".into()],
            pods: "/var/log/pods".into(),
            containers: "/var/log/containers".into(),
        }
    }
}

impl LogPaths {
    /// `VIGIL_JOURNAL_DIRS` (colon-separated), `VIGIL_POD_LOGS_DIR`, `VIGIL_CONTAINER_LOGS_DIR`.
    pub fn from_env() -> Self {
        let mut paths = LogPaths::default();
        if let Some(dirs) = std::env::var_os("VIGIL_JOURNAL_DIRS") {
            paths.journal_dirs = std::env::split_paths(&dirs).collect();
        }
        if let Some(dir) = std::env::var_os("VIGIL_POD_LOGS_DIR") {
            paths.pods = dir.into();
        }
        if let Some(dir) = std::env::var_os("VIGIL_CONTAINER_LOGS_DIR") {
            paths.containers = dir.into();
        }
        paths
    }
}

/// Where one process's stderr goes, decided while it lives.
#[derive(Debug)]
pub enum StderrSource {
    /// A regular file: kept open, so it is read even if renamed or deleted meanwhile.
    File(fd_file::Fd2File),
    Pod(pod_log::PodLog),
    Journal {
        unit: String,
        dirs: Vec<PathBuf>,
    },
}

#[derive(Debug)]
pub struct StderrPlan {
    pub source: StderrSource,
    /// When the process started (Unix µs): journal lines older than that are an earlier run's.
    pub started_unix_us: Option<u64>,
}

impl StderrPlan {
    /// A file on fd 2 wins (an explicit redirect); else a pod's container log (stderr is
    /// containerd's pipe); else the unit's journal (stderr is journald's stream socket).
    pub fn capture(proc_root: &Path, owner: &ProcessIdentity, paths: &LogPaths) -> Option<Self> {
        let source = if let Some(file) = fd_file::Fd2File::capture(proc_root, owner.pid) {
            StderrSource::File(file)
        } else if let Some(uid) = &owner.pod_uid {
            StderrSource::Pod(pod_log::PodLog::locate(
                &paths.pods,
                &paths.containers,
                uid,
                owner.container_id.as_deref(),
            )?)
        } else {
            StderrSource::Journal {
                unit: owner.unit.clone()?,
                dirs: paths.journal_dirs.clone(),
            }
        };
        Some(StderrPlan {
            source,
            started_unix_us: started_unix_us(proc_root, owner.pid),
        })
    }

    /// `file:PATH`, `pod:NS/POD/CONTAINER` or `journal:UNIT`.
    pub fn label(&self) -> String {
        match &self.source {
            StderrSource::File(f) => format!("file:{}", f.path),
            StderrSource::Pod(p) => format!("pod:{}", p.label),
            StderrSource::Journal { unit, .. } => format!("journal:{unit}"),
        }
    }

    /// Journald and containerd copy what the process wrote asynchronously: give them a moment
    /// after the exit. A file holds every byte once write() returned.
    pub fn needs_settling(&self) -> bool {
        !matches!(self.source, StderrSource::File(_))
    }

    pub fn read(&self, limits: &Limits) -> Result<StderrTail, StderrError> {
        let mut tail = TailLines::new(limits);
        let mut skipped = 0;
        match &self.source {
            StderrSource::File(f) => f.read_tail(limits, &mut tail)?,
            StderrSource::Pod(p) => p.read_tail(limits, &mut tail)?,
            StderrSource::Journal { unit, dirs } => {
                let since = self
                    .started_unix_us
                    .map_or(0, |s| s.saturating_sub(1_000_000));
                let read = journal::unit_messages(dirs, unit, since, limits);
                skipped = read.skipped;
                for line in read.lines {
                    tail.push_text(&line.message);
                }
            }
        }
        let mut out = tail.finish(self.label());
        out.objects_skipped = skipped;
        Ok(out)
    }
}

/// The last `max` bytes of a file, from the first full line on (unless it is the whole file).
pub(crate) fn file_tail(file: &File, path: &Path, max: u64) -> Result<Vec<u8>, StderrError> {
    let io_err = |source| StderrError::Io {
        path: path.to_owned(),
        source,
    };
    let size = file.metadata().map_err(io_err)?.len();
    let start = size.saturating_sub(max);
    let mut buf = vec![0; (size - start) as usize];
    let mut filled = 0;
    // A file may shrink under us (truncation): keep what was there.
    while filled < buf.len() {
        match file.read_at(&mut buf[filled..], start + filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io_err(e)),
        }
    }
    buf.truncate(filled);
    if start > 0 {
        let first_line = buf
            .iter()
            .position(|&b| b == b'\n')
            .map_or(buf.len(), |p| p + 1);
        buf.drain(..first_line);
    }
    Ok(buf)
}

/// Start of a process in Unix µs: its start in boot-time ticks set against the clocks now
/// (precise to a tick, unlike `btime`, and unmoved by clock steps since boot).
fn started_unix_us(proc_root: &Path, pid: u32) -> Option<u64> {
    let stat = ProcStat::read(&proc_root.join(pid.to_string()))?;
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let ticks = u64::try_from(ticks).ok().filter(|&t| t > 0)?;
    let started_since_boot_us = stat.starttime.checked_mul(1_000_000)? / ticks;
    let now_us = |id| {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: valid pointer to a timespec.
        unsafe { libc::clock_gettime(id, &mut ts) };
        u64::try_from(ts.tv_sec)
            .ok()?
            .checked_mul(1_000_000)?
            .checked_add(ts.tv_nsec as u64 / 1000)
    };
    let realtime = now_us(libc::CLOCK_REALTIME)?;
    let boottime = now_us(libc::CLOCK_BOOTTIME)?;
    realtime.checked_sub(boottime.checked_sub(started_since_boot_us)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_own_start_is_in_the_recent_past() {
        let started = started_unix_us(Path::new("/proc"), std::process::id()).unwrap();
        let now = crate::clock::unix_now_ns() / 1000;
        let age = now - i128::from(started);
        assert!((0..600_000_000).contains(&age), "started {age} µs ago");
    }
}
