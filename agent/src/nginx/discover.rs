//! Finds running nginx masters and their workers in procfs and keeps only the masters that
//! can be believed (`trust`): a process's name and title prove nothing. Nothing is executed:
//! a master's configuration is read as files (`config`) at the paths `paths` works out from
//! its `-p`/`-c` arguments and the configure arguments inside its binary.

use std::{
    collections::BTreeSet,
    io,
    path::{Path, PathBuf},
    sync::{Mutex, PoisonError},
};

use serde::Serialize;
use tracing::{debug, warn};

use super::{
    in_root::{RootDir, RootError},
    paths::{scan_configure_args, CompiledPaths, MasterPaths, PathsError},
    procdir::ProcDir,
    trust::{self, Trusted},
};
use crate::host::proc_files::{cmdline_text, stat_parent_pid};

pub const DEFAULT_PROC_ROOT: &str = "/proc";
/// Process title nginx sets on its master (argv is rewritten, so cmdline shows it).
const MASTER_TITLE: &str = "nginx: master process";
/// Pids remembered so that an ignored master is logged once; forgotten all at once beyond.
const MAX_LOGGED_PIDS: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NginxInstance {
    pub master_pid: u32,
    /// Children of the master named nginx (workers, cache manager/loader).
    pub worker_pids: Vec<u32>,
    /// `-c` argument, as given.
    pub conf_arg: Option<PathBuf>,
    /// `-p` argument, as given.
    pub prefix_arg: Option<PathBuf>,
    pub trusted: Trusted,
}

/// A process titled as an nginx master that is not believed, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IgnoredMaster {
    pub pid: u32,
    pub reason: String,
}

/// A believed master, its `/proc/PID` held open so that later reads are about it.
#[derive(Debug)]
pub struct NginxMaster {
    pub instance: NginxInstance,
    proc: ProcDir,
}

#[derive(Debug, Default)]
pub struct Discovery {
    pub masters: Vec<NginxMaster>,
    pub ignored: Vec<IgnoredMaster>,
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

/// One process whose comm is "nginx".
struct NginxProcess {
    pid: u32,
    ppid: Option<u32>,
    cmdline: String,
    proc: ProcDir,
}

/// Lists nginx masters under `proc_root` (normally [`DEFAULT_PROC_ROOT`]).
pub fn find_nginx(proc_root: &Path) -> Result<Discovery, DiscoverError> {
    let entries = std::fs::read_dir(proc_root).map_err(|source| DiscoverError::ProcRoot {
        path: proc_root.to_path_buf(),
        source,
    })?;
    let mut processes: Vec<NginxProcess> = entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| read_nginx_process(proc_root, pid))
        .collect();
    processes.sort_by_key(|p| p.pid);

    let is_master = |p: &NginxProcess| p.cmdline.starts_with(MASTER_TITLE);
    // During a binary upgrade (USR2) the new master is a child of the old one:
    // it is a separate instance, not a worker.
    let workers: Vec<(u32, Option<u32>)> = processes
        .iter()
        .filter(|p| !is_master(p))
        .map(|p| (p.pid, p.ppid))
        .collect();
    let mut found = Discovery::default();
    for master in processes.into_iter().filter(is_master) {
        match trust::check(&master.proc) {
            Ok(trusted) => {
                let worker_pids = workers
                    .iter()
                    .filter(|(_, ppid)| *ppid == Some(master.pid))
                    .map(|(pid, _)| *pid)
                    .collect();
                found
                    .masters
                    .push(build_master(master, worker_pids, trusted));
            }
            Err(why) => {
                let reason = why.to_string();
                log_ignored_once(master.pid, &reason);
                found.ignored.push(IgnoredMaster {
                    pid: master.pid,
                    reason,
                });
            }
        }
    }
    debug!(
        count = found.masters.len(),
        ignored = found.ignored.len(),
        root = %proc_root.display(),
        "nginx masters found"
    );
    Ok(found)
}

/// `None` when the process is not nginx or vanished while we looked.
fn read_nginx_process(proc_root: &Path, pid: u32) -> Option<NginxProcess> {
    let proc = ProcDir::open(proc_root, pid).ok()?;
    if proc.read_text("comm").ok()?.trim_end() != "nginx" {
        return None;
    }
    let cmdline = cmdline_text(&proc.read("cmdline").ok()?);
    let ppid = stat_parent_pid(&proc.read_text("stat").ok()?);
    Some(NginxProcess {
        pid,
        ppid,
        cmdline,
        proc,
    })
}

fn build_master(master: NginxProcess, worker_pids: Vec<u32>, trusted: Trusted) -> NginxMaster {
    let args = MasterArgs::parse(&master.cmdline);
    NginxMaster {
        instance: NginxInstance {
            master_pid: master.pid,
            worker_pids,
            conf_arg: args.conf,
            prefix_arg: args.prefix,
            trusted,
        },
        proc: master.proc,
    }
}

fn log_ignored_once(pid: u32, reason: &str) {
    static LOGGED: Mutex<BTreeSet<u32>> = Mutex::new(BTreeSet::new());
    let mut logged = LOGGED.lock().unwrap_or_else(PoisonError::into_inner);
    if logged.len() >= MAX_LOGGED_PIDS {
        logged.clear();
    }
    if logged.insert(pid) {
        warn!(pid, %reason, "ignoring a process titled as an nginx master");
    }
}

impl NginxMaster {
    /// The master's root directory, which its configuration and logs are read inside.
    pub fn root(&self) -> Result<RootDir, RootError> {
        self.proc.root()
    }

    /// Its prefix and main configuration file, inside its root.
    pub fn paths(&self) -> Result<MasterPaths, PathsError> {
        MasterPaths::resolve(
            self.instance.prefix_arg.as_deref(),
            self.instance.conf_arg.as_deref(),
            || compiled_paths(&self.proc),
            || self.proc.cwd_in_root(),
        )
    }
}

/// The paths the master's binary was built with, read from `/proc/PID/exe` as bytes; nginx's
/// own defaults when they cannot be read.
fn compiled_paths(proc: &ProcDir) -> CompiledPaths {
    let scanned = proc
        .open_at("exe", libc::O_RDONLY)
        .map_err(PathsError::Read)
        .and_then(scan_configure_args);
    match scanned {
        Ok(Some(args)) => CompiledPaths::from_configure_args(&args),
        Ok(None) => {
            warn!(
                pid = proc.pid(),
                "no configure arguments in the nginx binary; assuming nginx's defaults"
            );
            CompiledPaths::default()
        }
        Err(e) => {
            warn!(pid = proc.pid(), error = %e, "cannot read the nginx binary's configure arguments; assuming nginx's defaults");
            CompiledPaths::default()
        }
    }
}

#[derive(Debug, Default, PartialEq)]
struct MasterArgs {
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
            .split_whitespace()
            .skip(1); // argv[0]
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

#[cfg(test)]
mod tests;
