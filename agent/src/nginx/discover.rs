//! Finds running nginx masters and their workers in procfs, and dumps a
//! master's effective configuration with `nginx -T`.

use serde::Serialize;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};
use tracing::{debug, warn};

use crate::host::proc_files;

pub const DEFAULT_PROC_ROOT: &str = "/proc";
/// How long `nginx -T` may run; resolving upstream hostnames can be slow.
pub const DEFAULT_DUMP_TIMEOUT: Duration = Duration::from_secs(30);
/// Process title nginx sets on its master (argv is rewritten, so cmdline shows it).
const MASTER_TITLE: &str = "nginx: master process";
const ROOT_HINT: &str =
    "run vigil as root: nginx -T must read every config file, including TLS keys";

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NginxInstance {
    pub master_pid: u32,
    /// Children of the master named nginx (workers, cache manager/loader).
    pub worker_pids: Vec<u32>,
    /// The master's binary (from `/proc/PID/exe`, else argv[0]).
    pub exe: PathBuf,
    /// `-c` argument, as given (nginx resolves a relative one against the prefix).
    pub conf_path: Option<PathBuf>,
    /// `-p` argument; a relative one made absolute against the master's working directory.
    pub prefix: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum DiscoverError {
    #[error("cannot list processes in {path}")]
    ProcRoot {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum DumpError {
    #[error("cannot run {exe}")]
    Spawn {
        exe: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("error while waiting for `{exe} -T`")]
    Wait {
        exe: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("`{exe} -T` did not finish within {timeout:?}")]
    Timeout { exe: PathBuf, timeout: Duration },
    #[error("`{exe} -T` failed ({status}): {stderr}{}", hint_suffix(*.hint))]
    Failed {
        exe: PathBuf,
        status: ExitStatus,
        /// nginx's stderr, trimmed.
        stderr: String,
        hint: Option<&'static str>,
    },
}

fn hint_suffix(hint: Option<&str>) -> String {
    hint.map(|h| format!(" (hint: {h})")).unwrap_or_default()
}

/// One process as seen in procfs (only for processes whose comm is "nginx").
struct NginxProcess {
    pid: u32,
    ppid: Option<u32>,
    cmdline: String,
}

/// Lists nginx masters under `proc_root` (normally [`DEFAULT_PROC_ROOT`]).
pub fn find_nginx(proc_root: &Path) -> Result<Vec<NginxInstance>, DiscoverError> {
    let entries = std::fs::read_dir(proc_root).map_err(|source| DiscoverError::ProcRoot {
        path: proc_root.to_path_buf(),
        source,
    })?;
    let mut processes: Vec<NginxProcess> = entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| read_nginx_process(proc_root, pid))
        .collect();
    processes.sort_by_key(|p| p.pid);

    let instances: Vec<NginxInstance> = processes
        .iter()
        .filter(|p| p.cmdline.starts_with(MASTER_TITLE))
        .map(|master| build_instance(proc_root, master, &processes))
        .collect();
    debug!(count = instances.len(), root = %proc_root.display(), "nginx masters found");
    Ok(instances)
}

/// `None` when the process is not nginx or vanished while we looked.
fn read_nginx_process(proc_root: &Path, pid: u32) -> Option<NginxProcess> {
    let dir = proc_root.join(pid.to_string());
    if proc_files::comm(&dir)? != "nginx" {
        return None;
    }
    let cmdline = proc_files::cmdline(&dir)?;
    let ppid = proc_files::parent_pid(&dir);
    Some(NginxProcess { pid, ppid, cmdline })
}

fn build_instance(proc_root: &Path, master: &NginxProcess, all: &[NginxProcess]) -> NginxInstance {
    let args = MasterArgs::parse(&master.cmdline);
    // During a binary upgrade (USR2) the new master is a child of the old one:
    // it is a separate instance, not a worker.
    let worker_pids = all
        .iter()
        .filter(|p| p.ppid == Some(master.pid) && !p.cmdline.starts_with(MASTER_TITLE))
        .map(|p| p.pid)
        .collect();
    let exe_link = proc_root.join(master.pid.to_string()).join("exe");
    let exe = match std::fs::read_link(&exe_link) {
        // After a package upgrade the link reads "/usr/sbin/nginx (deleted)";
        // the path itself then holds the new binary, which is what -T should use.
        Ok(path) => strip_deleted_suffix(path),
        Err(err) => {
            warn!(pid = master.pid, error = %err, "cannot read nginx exe link; using argv[0]");
            PathBuf::from(args.argv0.clone().unwrap_or_else(|| "nginx".into()))
        }
    };
    // `-p site` names a directory relative to where the master was started; `nginx -T` runs
    // from the agent's directory, and log paths are resolved against the prefix.
    let cwd = proc_root.join(master.pid.to_string()).join("cwd");
    NginxInstance {
        master_pid: master.pid,
        worker_pids,
        exe,
        conf_path: args.conf,
        prefix: args.prefix.map(|prefix| absolute_from(&cwd, prefix)),
    }
}

fn absolute_from(cwd_link: &Path, path: PathBuf) -> PathBuf {
    if path.is_absolute() {
        return path;
    }
    match std::fs::read_link(cwd_link) {
        Ok(cwd) => cwd.join(path),
        Err(err) => {
            warn!(path = %path.display(), error = %err, "cannot read nginx's working directory; using the relative prefix as given");
            path
        }
    }
}

fn strip_deleted_suffix(path: PathBuf) -> PathBuf {
    match path.to_str().and_then(|s| s.strip_suffix(" (deleted)")) {
        Some(stripped) => PathBuf::from(stripped),
        None => path,
    }
}

#[derive(Debug, Default, PartialEq)]
struct MasterArgs {
    argv0: Option<String>,
    conf: Option<PathBuf>,
    prefix: Option<PathBuf>,
}

impl MasterArgs {
    /// Parses `nginx: master process /usr/sbin/nginx -p /x -c /x/nginx.conf`.
    /// nginx joins argv with spaces in the title, so paths with spaces are ambiguous.
    fn parse(cmdline: &str) -> Self {
        let mut out = MasterArgs::default();
        let mut words = cmdline
            .strip_prefix(MASTER_TITLE)
            .unwrap_or(cmdline)
            .split_whitespace();
        out.argv0 = words.next().map(str::to_string);
        while let Some(word) = words.next() {
            // nginx accepts both `-c FILE` and `-cFILE`.
            let (Some(flag), Some(attached)) = (word.get(..2), word.get(2..)) else {
                continue;
            };
            let mut value = || {
                if attached.is_empty() {
                    words.next()
                } else {
                    Some(attached)
                }
            };
            match flag {
                "-c" => out.conf = value().map(PathBuf::from),
                "-p" => out.prefix = value().map(PathBuf::from),
                "-g" | "-e" | "-s" => {
                    value();
                }
                _ => {}
            }
        }
        out
    }
}

/// Runs `nginx -T` for a discovered instance with [`DEFAULT_DUMP_TIMEOUT`].
pub fn dump_config(instance: &NginxInstance) -> Result<String, DumpError> {
    run_config_dump(
        &instance.exe,
        instance.prefix.as_deref(),
        instance.conf_path.as_deref(),
        DEFAULT_DUMP_TIMEOUT,
    )
}

/// Runs `<exe> -T [-p prefix] [-c conf]` and returns its stdout (lossy UTF-8).
pub fn run_config_dump(
    exe: &Path,
    prefix: Option<&Path>,
    conf: Option<&Path>,
    timeout: Duration,
) -> Result<String, DumpError> {
    let mut command = Command::new(exe);
    command.arg("-T");
    if let Some(prefix) = prefix {
        command.arg("-p").arg(prefix);
    }
    if let Some(conf) = conf {
        command.arg("-c").arg(conf);
    }
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().map_err(|source| DumpError::Spawn {
        exe: exe.to_path_buf(),
        source,
    })?;
    // Drain both pipes concurrently: a large dump would otherwise fill the pipe
    // and nginx would block forever while we wait for it to exit.
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let status = wait_with_timeout(&mut child, exe, timeout)?;
    let stdout = stdout.join().unwrap_or_default();
    let stderr = String::from_utf8_lossy(&stderr.join().unwrap_or_default())
        .trim()
        .to_string();
    if status.success() {
        return Ok(String::from_utf8_lossy(&stdout).into_owned());
    }
    let hint =
        (stderr.contains("Permission denied") || stderr.contains("(13:")).then_some(ROOT_HINT);
    Err(DumpError::Failed {
        exe: exe.to_path_buf(),
        status,
        stderr,
        hint,
    })
}

fn drain(pipe: Option<impl Read + Send + 'static>) -> JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut pipe) = pipe {
            if let Err(err) = pipe.read_to_end(&mut buf) {
                debug!(error = %err, "reading nginx -T output");
            }
        }
        buf
    })
}

fn wait_with_timeout(
    child: &mut Child,
    exe: &Path,
    timeout: Duration,
) -> Result<ExitStatus, DumpError> {
    let started = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Ok(status),
            Ok(None) if started.elapsed() >= timeout => {
                // Best effort: the process may exit between the check and the kill.
                let _ = child.kill();
                let _ = child.wait();
                return Err(DumpError::Timeout {
                    exe: exe.to_path_buf(),
                    timeout,
                });
            }
            Ok(None) => thread::sleep(Duration::from_millis(20)),
            Err(source) => {
                return Err(DumpError::Wait {
                    exe: exe.to_path_buf(),
                    source,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests;
