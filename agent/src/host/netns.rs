//! Listeners and addresses of every network namespace on the node, not only the agent's own:
//! upstreams that run in pods listen in their pod's namespace, invisible to a sock_diag dump
//! from the node's. The namespaces are those of the processes in /proc (one representative
//! pid each, at most `MAX_NAMESPACES`), found again at every refresh; each is entered with
//! setns(CLONE_NEWNET) by a dedicated worker thread — never the async runtime's, whose
//! sockets must stay in the agent's namespace — which dumps it and goes back home.
use std::{
    collections::{BTreeSet, HashSet},
    io,
    net::IpAddr,
    os::fd::AsRawFd,
    path::{Path, PathBuf},
    sync::Arc,
};

use serde::Serialize;
use tracing::{debug, warn};
use worker::{Asked, Request, Worker};

use super::{
    listeners::{tcp_listeners_where, Listener, ListenerError},
    netlink::{interface_addresses, NetlinkError},
};

/// Namespaces read per refresh besides the agent's own (a node runs ~110 pods at most).
pub const MAX_NAMESPACES: usize = 256;

/// A network namespace: the inode of its nsfs file (`net:[4026532281]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct NetnsId(pub u64);

/// What one namespace holds that the agent needs.
#[derive(Debug, Clone)]
pub struct NamespaceView {
    pub id: NetnsId,
    /// True for the agent's own namespace (the node's, with hostNetwork).
    pub own: bool,
    /// The process it was entered through (None for the agent's own).
    pub via_pid: Option<u32>,
    pub addrs: Vec<IpAddr>,
    /// Listeners on the wanted ports.
    pub listeners: Vec<Listener>,
}

#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error("cannot open {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} is now namespace {found}, not {expected}: the process went away")]
    Moved {
        path: PathBuf,
        expected: u64,
        found: u64,
    },
    #[error("setns into network namespace {id} (needs CAP_SYS_ADMIN)")]
    Enter {
        id: u64,
        #[source]
        source: io::Error,
    },
    #[error("cannot return to the agent's own network namespace")]
    Return(#[source] io::Error),
    #[error(transparent)]
    Listeners(#[from] ListenerError),
    #[error("interface addresses: {0}")]
    Addresses(#[from] NetlinkError),
}

/// `/proc/PID/ns/net` → its namespace; None when the process is gone or hidden from us.
pub fn netns_of(proc_root: &Path, pid: u32) -> Option<NetnsId> {
    let link = std::fs::read_link(proc_root.join(pid.to_string()).join("ns/net")).ok()?;
    parse_ns_link(&link.to_string_lossy()).map(NetnsId)
}

/// `net:[4026531840]` → 4026531840.
fn parse_ns_link(link: &str) -> Option<u64> {
    link.strip_prefix("net:[")?.strip_suffix(']')?.parse().ok()
}

/// The namespaces of the processes in /proc other than `own`, one pid each, in pid order.
pub struct Scan {
    pub others: Vec<(NetnsId, u32)>,
    /// Namespaces past `limit`, not read.
    pub skipped: usize,
}

pub fn scan(proc_root: &Path, own: Option<NetnsId>, limit: usize) -> Scan {
    let mut seen: HashSet<NetnsId> = own.into_iter().collect();
    let mut out = Scan {
        others: Vec::new(),
        skipped: 0,
    };
    let Ok(entries) = std::fs::read_dir(proc_root) else {
        return out;
    };
    let mut pids: Vec<u32> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect();
    pids.sort_unstable();
    for pid in pids {
        let Some(id) = netns_of(proc_root, pid) else {
            continue;
        };
        if !seen.insert(id) {
            continue;
        }
        if out.others.len() < limit {
            out.others.push((id, pid));
        } else {
            out.skipped += 1;
        }
    }
    out
}

/// Counters for /metrics and logs.
#[derive(Debug, Default, Clone, Copy)]
pub struct NetnsStats {
    /// Namespaces read at the last refresh, the agent's own included.
    pub namespaces: usize,
    /// Namespaces not read, summed over refreshes: over the bound, failed, or timed out.
    pub skipped_total: u64,
}

/// Reads every namespace's listeners at each refresh.
pub struct NamespaceReader {
    proc_root: PathBuf,
    own: Option<NetnsId>,
    worker: Option<Worker>,
    seq: u64,
    pub stats: NetnsStats,
    /// Namespaces whose failure was logged (a namespace failing each refresh logs once).
    failing: HashSet<NetnsId>,
    last_skipped: usize,
}

impl NamespaceReader {
    pub fn new(proc_root: &Path) -> Self {
        let own = std::fs::read_link("/proc/thread-self/ns/net")
            .ok()
            .and_then(|l| parse_ns_link(&l.to_string_lossy()))
            .map(NetnsId);
        NamespaceReader {
            proc_root: proc_root.to_path_buf(),
            own,
            worker: None,
            seq: 0,
            stats: NetnsStats::default(),
            failing: HashSet::new(),
            last_skipped: 0,
        }
    }

    pub fn own(&self) -> Option<NetnsId> {
        self.own
    }

    /// The agent's own namespace (an error there is the caller's), then every other one.
    pub fn read(&mut self, ports: &BTreeSet<u16>) -> Result<Vec<NamespaceView>, ListenerError> {
        let mut views = vec![NamespaceView {
            id: self.own.unwrap_or(NetnsId(0)),
            own: true,
            via_pid: None,
            addrs: interface_addresses().unwrap_or_else(|e| {
                warn!("cannot list the agent's own interface addresses: {e}");
                Vec::new()
            }),
            listeners: tcp_listeners_where(|p| ports.contains(&p))?,
        }];
        let scan = scan(&self.proc_root, self.own, MAX_NAMESPACES);
        if scan.skipped != self.last_skipped {
            if scan.skipped > 0 {
                warn!(
                    skipped = scan.skipped,
                    limit = MAX_NAMESPACES,
                    "more network namespaces than the bound: the last ones are not read"
                );
            }
            self.last_skipped = scan.skipped;
        }
        self.stats.skipped_total += scan.skipped as u64;
        if !scan.others.is_empty() {
            let wanted = scan.others.len();
            let others = self.read_others(scan.others, ports);
            self.stats.skipped_total += (wanted - others.len()) as u64;
            views.extend(others);
        }
        self.stats.namespaces = views.len();
        Ok(views)
    }

    fn read_others(
        &mut self,
        namespaces: Vec<(NetnsId, u32)>,
        ports: &BTreeSet<u16>,
    ) -> Vec<NamespaceView> {
        self.seq += 1;
        let seq = self.seq;
        let request = Request {
            seq,
            namespaces,
            ports: Arc::new(ports.clone()),
        };
        match self.worker().map(|w| w.ask(request)) {
            Some(Asked::Answered(views)) => self.keep_views(views),
            Some(Asked::Gone) => {
                self.worker = None;
                Vec::new()
            }
            Some(Asked::Busy | Asked::TimedOut) | None => Vec::new(),
        }
    }

    /// The views that were read; failures logged once per namespace.
    fn keep_views(
        &mut self,
        views: Vec<Result<NamespaceView, (NetnsId, NetnsError)>>,
    ) -> Vec<NamespaceView> {
        let mut ok = Vec::new();
        for view in views {
            match view {
                Ok(v) => {
                    self.failing.remove(&v.id);
                    ok.push(v);
                }
                // A process that exited between the scan and the visit: nothing to say.
                Err((id, e @ (NetnsError::Open { .. } | NetnsError::Moved { .. }))) => {
                    debug!(netns = id.0, "{e}");
                }
                Err((id, e)) => {
                    if self.failing.insert(id) {
                        warn!(
                            netns = id.0,
                            "cannot read a network namespace: {}",
                            super::error_chain(&e)
                        );
                    }
                }
            }
        }
        // Bounded by the namespaces alive now.
        if self.failing.len() > MAX_NAMESPACES {
            self.failing.clear();
        }
        ok
    }

    /// The worker, started (again) when needed: it ends if it ever cannot go home.
    fn worker(&mut self) -> Option<&mut Worker> {
        if self.worker.is_none() {
            self.worker = Worker::spawn(&self.proc_root);
        }
        self.worker.as_mut()
    }
}

/// setns(2) of the calling thread, the namespace type given explicitly (the kernel then
/// refuses an fd of another type instead of joining whatever it is).
pub fn enter(ns: &impl AsRawFd, kind: libc::c_int) -> io::Result<()> {
    // SAFETY: a valid fd for the call's duration; setns affects only this thread.
    if unsafe { libc::setns(ns.as_raw_fd(), kind) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

mod worker;

#[cfg(test)]
#[path = "netns_tests.rs"]
mod tests;
