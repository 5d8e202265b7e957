//! `UpstreamTracker`: for each watched upstream port, who listens now (owner, workers, unit,
//! accept queue), and when a listener disappears, since when and how its owner exited, so
//! "nothing listens on :8084 since 10:13:58, python3 app.py (pid 4242, unit
//! drupal-client4.service) exited with status 1" can be said later.
use std::{
    collections::{BTreeMap, BTreeSet, HashMap, HashSet},
    net::SocketAddr,
    path::Path,
};

use serde::Serialize;
use tracing::{info, warn};

use super::{
    listeners::{tcp_listeners, Listener},
    owners::{identity, ProcessIdentity, ProcessTable},
};
use crate::probes::exit::ProcessExitInfo;

#[derive(Debug, Clone, Serialize)]
pub struct ListenerState {
    pub addr: SocketAddr,
    pub accept_queue: u32,
    pub backlog: u32,
    pub accept_queue_ratio: f64,
    pub owner: Option<ProcessIdentity>,
    /// Processes serving this port: holders of the socket and the owner's children.
    pub worker_pids: Vec<u32>,
    #[serde(serialize_with = "crate::clock::serialize_rfc3339")]
    pub since: i128,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct UpstreamState {
    pub port: u16,
    /// The destination nginx connects to (`host:port`): the `upstream` label.
    pub upstream: String,
    pub listener: Option<ListenerState>,
    /// When the listener disappeared (null while one listens or none was ever seen).
    #[serde(serialize_with = "crate::clock::serialize_rfc3339_opt")]
    pub gone_since: Option<i128>,
    pub last_owner: Option<ProcessIdentity>,
    pub last_exit: Option<ProcessExitInfo>,
    /// The address the last listener had, so the upstream keeps its name while it is down.
    pub last_addr: Option<SocketAddr>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum UpstreamChange {
    ListenerUp {
        port: u16,
        owner: Option<ProcessIdentity>,
    },
    ListenerGone {
        port: u16,
        last_owner: Option<ProcessIdentity>,
        exit: Option<ProcessExitInfo>,
    },
}

pub struct UpstreamTracker {
    ports: BTreeSet<u16>,
    states: BTreeMap<u16, UpstreamState>,
    /// Exits of watched pids not yet matched to a listener loss.
    exits: HashMap<u32, ProcessExitInfo>,
    /// Destinations from nginx's configuration, by port.
    configured: BTreeMap<u16, String>,
}

impl UpstreamTracker {
    pub fn new(ports: BTreeSet<u16>) -> Self {
        let states = ports
            .iter()
            .map(|&port| {
                (
                    port,
                    UpstreamState {
                        port,
                        upstream: destination(port, None, None),
                        ..Default::default()
                    },
                )
            })
            .collect();
        UpstreamTracker {
            ports,
            states,
            exits: HashMap::new(),
            configured: BTreeMap::new(),
        }
    }

    /// The addresses nginx's configuration names for the watched ports.
    pub fn set_destinations(&mut self, configured: BTreeMap<u16, String>) {
        self.configured = configured;
        for state in self.states.values_mut() {
            state.upstream = destination(
                state.port,
                self.configured.get(&state.port),
                state.listener.as_ref().map(|l| l.addr).or(state.last_addr),
            );
        }
    }

    pub fn states(&self) -> impl Iterator<Item = &UpstreamState> {
        self.states.values()
    }

    pub fn record_exit(&mut self, exit: ProcessExitInfo) {
        info!(pid = exit.pid, comm = %exit.comm, status = ?exit.status, signal = ?exit.signal, "upstream owner exited");
        for state in self.states.values_mut() {
            if state.gone_since.is_some()
                && state.last_owner.as_ref().is_some_and(|o| o.pid == exit.pid)
                && state.last_exit.is_none()
            {
                state.last_exit = Some(exit.clone());
            }
        }
        self.exits.insert(exit.pid, exit);
    }

    /// Re-read listeners and owners; returns what changed. `now` is Unix ns.
    pub fn refresh(&mut self, now: i128) -> Vec<UpstreamChange> {
        let listeners = match tcp_listeners() {
            Ok(l) => l,
            Err(e) => {
                warn!("cannot list listeners: {e}");
                return Vec::new();
            }
        };
        let mine: Vec<Listener> = listeners
            .into_iter()
            .filter(|l| self.ports.contains(&l.addr.port()))
            .collect();
        let proc_root = Path::new("/proc");
        let inodes: HashSet<u64> = mine.iter().map(|l| l.inode).collect();
        // One pass over /proc for every listener: holders, owners and their workers.
        let table = ProcessTable::scan(proc_root, &inodes);
        let mut changes = Vec::new();
        for (&port, state) in self.states.iter_mut() {
            let current = mine.iter().find(|l| l.addr.port() == port);
            match (current, state.listener.take()) {
                (Some(l), previous) => {
                    let next = listener_state(proc_root, &table, l, previous.as_ref(), now);
                    if previous.is_none() {
                        changes.push(UpstreamChange::ListenerUp {
                            port,
                            owner: next.owner.clone(),
                        });
                        state.gone_since = None;
                        state.last_exit = None;
                    }
                    state.upstream = destination(port, self.configured.get(&port), Some(next.addr));
                    state.listener = Some(next);
                }
                (None, Some(gone)) => {
                    state.gone_since = Some(now);
                    state.last_owner = gone.owner.clone();
                    state.last_addr = Some(gone.addr);
                    state.last_exit = gone
                        .owner
                        .as_ref()
                        .and_then(|o| self.exits.get(&o.pid).cloned());
                    warn!(port, owner = ?gone.owner.as_ref().map(|o| &o.cmdline), "listener gone");
                    changes.push(UpstreamChange::ListenerGone {
                        port,
                        last_owner: state.last_owner.clone(),
                        exit: state.last_exit.clone(),
                    });
                }
                (None, None) => {}
            }
        }
        changes
    }

    /// Owners and workers whose exit the probes should report.
    pub fn pids_to_watch(&self) -> BTreeSet<u32> {
        self.states
            .values()
            .filter_map(|s| s.listener.as_ref())
            .flat_map(|l| {
                l.owner
                    .iter()
                    .map(|o| o.pid)
                    .chain(l.worker_pids.iter().copied())
            })
            .collect()
    }
}

/// What `upstream` label a port gets: nginx's configured address, else the listener's with
/// a wildcard read as loopback (nginx on this node reaches it there), else loopback.
fn destination(port: u16, configured: Option<&String>, listener: Option<SocketAddr>) -> String {
    if let Some(addr) = configured {
        return addr.clone();
    }
    match listener {
        Some(SocketAddr::V4(a)) if a.ip().is_unspecified() => format!("127.0.0.1:{port}"),
        Some(SocketAddr::V6(a)) if a.ip().is_unspecified() => format!("[::1]:{port}"),
        Some(addr) => addr.to_string(),
        None => format!("127.0.0.1:{port}"),
    }
}

fn listener_state(
    proc_root: &Path,
    table: &ProcessTable,
    l: &Listener,
    previous: Option<&ListenerState>,
    now: i128,
) -> ListenerState {
    let holders = table.holders.get(&l.inode).map_or(&[][..], Vec::as_slice);
    // Owners rarely change while listening: reuse what we know unless the holders moved.
    let owner_pid = table.top_holder(holders);
    let owner = match previous {
        Some(p) if p.owner.as_ref().map(|o| o.pid) == owner_pid => p.owner.clone(),
        _ => owner_pid.map(|pid| identity(proc_root, pid)),
    };
    let mut workers: Vec<u32> = holders.to_vec();
    if let Some(pid) = owner_pid {
        workers.extend(table.children_of(pid));
    }
    workers.sort_unstable();
    workers.dedup();
    ListenerState {
        addr: l.addr,
        accept_queue: l.accept_queue,
        backlog: l.backlog,
        accept_queue_ratio: if l.backlog > 0 {
            f64::from(l.accept_queue) / f64::from(l.backlog)
        } else {
            0.0
        },
        owner,
        worker_pids: workers,
        since: previous.map_or(now, |p| p.since),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sees_a_listener_come_and_go() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut tracker = UpstreamTracker::new(BTreeSet::from([port]));
        let changes = tracker.refresh(1);
        assert!(
            matches!(&changes[..], [UpstreamChange::ListenerUp { owner: Some(o), .. }] if o.pid == std::process::id())
        );
        assert!(tracker.pids_to_watch().contains(&std::process::id()));
        drop(listener);
        let changes = tracker.refresh(2);
        assert!(matches!(
            &changes[..],
            [UpstreamChange::ListenerGone { .. }]
        ));
        let state = tracker.states().next().unwrap();
        assert_eq!(state.gone_since, Some(2));
        assert_eq!(state.last_owner.as_ref().unwrap().pid, std::process::id());
        assert_eq!(state.last_addr.map(|a| a.port()), Some(port));
        assert_eq!(state.upstream, format!("127.0.0.1:{port}"));
        tracker.set_destinations(BTreeMap::from([(port, format!("app.local:{port}"))]));
        let state = tracker.states().next().unwrap();
        assert_eq!(
            state.upstream,
            format!("app.local:{port}"),
            "nginx's name wins"
        );
    }
}
