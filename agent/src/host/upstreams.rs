//! `UpstreamTracker`: for each watched upstream port, who listens now (owner, workers, unit,
//! accept queue), and when a listener disappears, since when and how its owner exited and the
//! last lines it wrote to stderr, so "nothing listens on :8084 since 10:13:58, python3 app.py
//! (pid 4242, unit drupal-client4.service) exited with status 1: ModuleNotFoundError: No module
//! named 'flask'" can be said later.
use std::{
    collections::{BTreeMap, BTreeSet, HashMap, HashSet},
    net::SocketAddr,
    path::Path,
};

use serde::Serialize;
use tracing::{info, warn};

use super::{
    listeners::Listener,
    netns::{NamespaceReader, NetnsId, NetnsStats},
    owners::{identity, ProcessIdentity, ProcessTable},
    placement::{choose_per_port, Choice, Chosen, Targets},
    pods::PodDirectory,
    stderr::{CrashReader, LogPaths, StderrPlan, StderrTail},
};
use crate::probes::exit::ProcessExitInfo;

#[derive(Debug, Clone, Serialize)]
pub struct ListenerState {
    pub addr: SocketAddr,
    pub accept_queue: u32,
    pub backlog: u32,
    pub accept_queue_ratio: f64,
    /// The network namespace it listens in, when not the agent's own (a pod's).
    pub netns: Option<NetnsId>,
    /// Where nginx reaches it when that is not this node's loopback: a pod's IP and port.
    pub reached_at: Option<SocketAddr>,
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
    /// Where each owner's stderr goes (None: nowhere readable), settled while it lives.
    stderr_plans: HashMap<u32, Option<StderrPlan>>,
    log_paths: LogPaths,
    pub crash_reader: CrashReader,
    /// Ports whose `ListenerGone` waits for the owner's stderr tail being read.
    gone_pending: BTreeSet<u16>,
    /// Listeners of every network namespace, pods' included.
    namespaces: NamespaceReader,
    /// Where nginx connects to each port (decides among namespaces listening on it).
    pub targets: Targets,
    pods: PodDirectory,
    /// Ports listened on in several namespaces, none of them nginx's target (warned once).
    ambiguous: BTreeSet<u16>,
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
        let log_paths = LogPaths::from_env();
        UpstreamTracker {
            ports,
            states,
            exits: HashMap::new(),
            configured: BTreeMap::new(),
            stderr_plans: HashMap::new(),
            pods: PodDirectory::new(&log_paths.pods),
            log_paths,
            crash_reader: CrashReader::default(),
            gone_pending: BTreeSet::new(),
            namespaces: NamespaceReader::new(Path::new("/proc")),
            targets: Targets::default(),
            ambiguous: BTreeSet::new(),
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

    pub fn netns_stats(&self) -> NetnsStats {
        self.namespaces.stats
    }

    /// Called on the fast path: the stderr read, if the pid was an owner, goes to a worker.
    pub fn record_exit(&mut self, exit: ProcessExitInfo) {
        info!(pid = exit.pid, comm = %exit.comm, status = ?exit.status, signal = ?exit.signal, "upstream owner exited");
        // Removed, so a pid's stderr is read once per exit.
        if let Some(Some(plan)) = self.stderr_plans.remove(&exit.pid) {
            self.crash_reader.start(exit.pid, plan);
        }
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
        self.attach_stderr_tails();
        let proc_root = Path::new("/proc");
        let chosen = match self.choose_listeners(proc_root) {
            Ok(chosen) => chosen,
            Err(e) => {
                warn!("cannot list listeners: {e}");
                return Vec::new();
            }
        };
        let inodes: HashSet<u64> = chosen.values().map(|c| c.listener.inode).collect();
        // One pass over /proc for every listener: holders, owners and their workers.
        let table = ProcessTable::scan(proc_root, &inodes);
        let mut changes = Vec::new();
        for (&port, state) in self.states.iter_mut() {
            match (chosen.get(&port), state.listener.take()) {
                (Some(c), previous) => {
                    let seen = (&table, &mut self.pods);
                    let next = listener_state(proc_root, seen, c, previous.as_ref(), now);
                    if previous.is_none() {
                        // A loss still waiting for its stderr goes out first: changes stay in order.
                        if self.gone_pending.remove(&port) {
                            changes.push(gone_change(state));
                        }
                        changes.push(UpstreamChange::ListenerUp {
                            port,
                            owner: next.owner.clone(),
                        });
                        state.gone_since = None;
                        state.last_exit = None;
                    }
                    let reached = next.reached_at.unwrap_or(next.addr);
                    state.upstream = destination(port, self.configured.get(&port), Some(reached));
                    state.listener = Some(next);
                }
                (None, Some(gone)) => {
                    state.gone_since = Some(now);
                    state.last_owner = gone.owner.clone();
                    state.last_addr = Some(gone.reached_at.unwrap_or(gone.addr));
                    state.last_exit = gone
                        .owner
                        .as_ref()
                        .and_then(|o| self.exits.get(&o.pid).cloned());
                    warn!(port, owner = ?gone.owner.as_ref().map(|o| &o.cmdline), "listener gone");
                    // The owner's exit is known and its stderr being read: the change waits
                    // for it (bounded by the reader's deadline), so it carries the reason.
                    let owner_pid = gone.owner.as_ref().map(|o| o.pid);
                    if owner_pid.is_some_and(|pid| self.crash_reader.pending(pid)) {
                        self.gone_pending.insert(port);
                    } else {
                        changes.push(gone_change(state));
                    }
                }
                (None, None) => {}
            }
        }
        self.attach_stderr_tails();
        changes.extend(self.ready_gone_changes());
        self.settle_stderr_plans(proc_root);
        changes
    }

    /// Per port, the listener nginx reaches, among those of every network namespace.
    fn choose_listeners(
        &mut self,
        proc_root: &Path,
    ) -> Result<BTreeMap<u16, Chosen>, super::listeners::ListenerError> {
        let views = self.namespaces.read(&self.ports)?;
        let (targets, configured) = (&self.targets, &self.configured);
        let chosen = choose_per_port(&views, &self.ports, |port| {
            targets.resolve(proc_root, port, configured.get(&port))
        });
        for (&port, c) in &chosen {
            match c.choice {
                Choice::Ambiguous(n) if self.ambiguous.insert(port) => warn!(
                    port,
                    namespaces = n,
                    netns = ?c.netns,
                    "several network namespaces listen on this port and nginx was not seen \
                     connecting to one of them yet: following the first"
                ),
                Choice::Ambiguous(_) => {}
                _ => {
                    self.ambiguous.remove(&port);
                }
            }
        }
        Ok(chosen)
    }

    /// Tails read since the last refresh, onto the exits they explain.
    fn attach_stderr_tails(&mut self) {
        for (pid, tail) in self.crash_reader.finished() {
            if let Some(exit) = self.exits.get_mut(&pid) {
                attach(exit, &tail);
            }
            for state in self.states.values_mut() {
                if let Some(exit) = state.last_exit.as_mut().filter(|e| e.pid == pid) {
                    attach(exit, &tail);
                }
            }
        }
    }

    /// Deferred losses whose owner's stderr is read (or given up on).
    fn ready_gone_changes(&mut self) -> Vec<UpstreamChange> {
        let reader = &self.crash_reader;
        let states = &self.states;
        let ready: Vec<u16> = self
            .gone_pending
            .iter()
            .copied()
            .filter(|port| {
                let pid = states[port].last_owner.as_ref().map(|o| o.pid);
                !pid.is_some_and(|pid| reader.pending(pid))
            })
            .collect();
        ready
            .into_iter()
            .map(|port| {
                self.gone_pending.remove(&port);
                gone_change(&self.states[&port])
            })
            .collect()
    }

    /// Where each new owner's stderr goes, settled once while it lives; plans and exits of
    /// pids that are no longer (last) owners are dropped, which bounds both maps by the ports.
    fn settle_stderr_plans(&mut self, proc_root: &Path) {
        let mut keep = HashSet::new();
        for state in self.states.values() {
            if let Some(owner) = state.listener.as_ref().and_then(|l| l.owner.as_ref()) {
                keep.insert(owner.pid);
                if !self.stderr_plans.contains_key(&owner.pid) {
                    let plan = StderrPlan::capture(proc_root, owner, &self.log_paths);
                    let source = plan.as_ref().map(StderrPlan::label);
                    info!(
                        pid = owner.pid,
                        ?source,
                        "where the upstream owner's stderr goes"
                    );
                    self.stderr_plans.insert(owner.pid, plan);
                }
            }
            // A lost listener's owner keeps its plan until its exit is seen.
            if state.gone_since.is_some() {
                keep.extend(state.last_owner.as_ref().map(|o| o.pid));
            }
        }
        self.stderr_plans.retain(|pid, _| keep.contains(pid));
        self.exits.retain(|pid, _| keep.contains(pid));
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

fn gone_change(state: &UpstreamState) -> UpstreamChange {
    UpstreamChange::ListenerGone {
        port: state.port,
        last_owner: state.last_owner.clone(),
        exit: state.last_exit.clone(),
    }
}

fn attach(exit: &mut ProcessExitInfo, tail: &StderrTail) {
    exit.stderr_tail = tail.lines.clone();
    exit.stderr_source = tail.source.clone();
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
    (table, pods): (&ProcessTable, &mut PodDirectory),
    chosen: &Chosen,
    previous: Option<&ListenerState>,
    now: i128,
) -> ListenerState {
    let l: &Listener = &chosen.listener;
    let holders = table.holders.get(&l.inode).map_or(&[][..], Vec::as_slice);
    // Owners rarely change while listening: reuse what we know unless the holders moved.
    let owner_pid = table.top_holder(holders);
    let mut owner = match previous {
        Some(p) if p.owner.as_ref().map(|o| o.pid) == owner_pid => p.owner.clone(),
        _ => owner_pid.map(|pid| identity(proc_root, pid)),
    };
    // kubelet may make the pod's log directory after its container listens: ask until named.
    if let Some(o) = owner.as_mut().filter(|o| o.pod_name.is_none()) {
        o.name_pod(pods);
    }
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
        netns: chosen.netns,
        reached_at: chosen.reached_at,
        owner,
        worker_pids: workers,
        since: previous.map_or(now, |p| p.since),
    }
}

#[cfg(test)]
#[path = "upstreams_tests.rs"]
mod tests;
