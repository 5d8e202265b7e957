//! Which listener on a port nginx reaches, and at what address, when several network
//! namespaces listen on it (every pod may serve :8080). nginx's own connects decide: the
//! destination IP it was last seen connecting to, from its namespace. A loopback destination
//! is served in the client's own namespace (a sidecar); any other by the namespace that holds
//! that address (a pod's IP). Without a connect, nginx's configured address stands in.
use std::{
    collections::{BTreeMap, BTreeSet},
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::Path,
};

use super::{
    listeners::Listener,
    netns::{netns_of, NamespaceView, NetnsId},
};

/// A listener and the namespace it listens in.
#[derive(Debug, Clone, Copy)]
pub struct Found<'a> {
    pub listener: &'a Listener,
    pub ns: &'a NamespaceView,
}

/// Where nginx connects to a port: the destination IP, from which namespace (when known).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    pub ip: IpAddr,
    pub client_ns: Option<NetnsId>,
}

/// How the listener was picked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice {
    /// It is where nginx's target leads.
    Reached,
    /// No target decided; the one in the agent's own namespace.
    Own,
    /// No target decided; the only one.
    Only,
    /// No target decided among this many: the first namespace's.
    Ambiguous(usize),
}

/// What nginx's connects and configuration say about where each port is reached.
#[derive(Debug, Default)]
pub struct Targets {
    /// The last connect seen per watched port: the connecting pid and the destination IP.
    last_connect: BTreeMap<u16, (u32, IpAddr)>,
    nginx_pids: Vec<u32>,
}

impl Targets {
    /// On the fast path: a map insert per connection (keyed by port: bounded).
    pub fn note_connect(&mut self, pid: u32, dst: SocketAddr) {
        self.last_connect.insert(dst.port(), (pid, dst.ip()));
    }

    pub fn set_nginx_pids(&mut self, pids: Vec<u32>) {
        self.nginx_pids = pids;
    }

    /// The last connect's destination, from the connecting process's namespace; else the
    /// configured address (a literal IP or `localhost`), from nginx's.
    pub fn resolve(
        &self,
        proc_root: &Path,
        port: u16,
        configured: Option<&String>,
    ) -> Option<Target> {
        let nginx_ns = || {
            self.nginx_pids
                .iter()
                .find_map(|&pid| netns_of(proc_root, pid))
        };
        if let Some(&(pid, ip)) = self.last_connect.get(&port) {
            let client_ns = netns_of(proc_root, pid).or_else(nginx_ns);
            return Some(Target { ip, client_ns });
        }
        let ip = configured.and_then(|c| host_ip(c))?;
        Some(Target {
            ip,
            client_ns: nginx_ns(),
        })
    }
}

/// `10.0.0.7:8080`, `[fd00::7]:8080`, `localhost:8080` → the IP; None for other names.
fn host_ip(addr: &str) -> Option<IpAddr> {
    if let Ok(sock) = addr.parse::<SocketAddr>() {
        return Some(sock.ip());
    }
    let (host, _) = addr.rsplit_once(':')?;
    (host == "localhost").then_some(IpAddr::V4(Ipv4Addr::LOCALHOST))
}

/// The listener chosen for a port, where it listens and where nginx reaches it.
#[derive(Debug, Clone)]
pub struct Chosen {
    pub listener: Listener,
    /// None for the agent's own namespace.
    pub netns: Option<NetnsId>,
    pub reached_at: Option<SocketAddr>,
    pub choice: Choice,
}

/// For each port with a listener in some namespace, the one nginx reaches.
pub fn choose_per_port(
    views: &[NamespaceView],
    ports: &BTreeSet<u16>,
    target_for: impl Fn(u16) -> Option<Target>,
) -> BTreeMap<u16, Chosen> {
    let mut out = BTreeMap::new();
    for &port in ports {
        let candidates: Vec<Found> = views
            .iter()
            .flat_map(|ns| {
                ns.listeners
                    .iter()
                    .map(move |listener| Found { listener, ns })
            })
            .filter(|f| f.listener.addr.port() == port)
            .collect();
        let target = target_for(port);
        if let Some((found, choice)) = choose(&candidates, target) {
            let chosen = Chosen {
                listener: found.listener.clone(),
                netns: (!found.ns.own).then_some(found.ns.id),
                reached_at: reached_at(found, choice, target),
                choice,
            };
            out.insert(port, chosen);
        }
    }
    out
}

/// The listener nginx reaches among `candidates` (all on one port).
pub fn choose<'a>(candidates: &[Found<'a>], target: Option<Target>) -> Option<(Found<'a>, Choice)> {
    if let Some(found) = target.and_then(|t| reached(candidates, t)) {
        return Some((found, Choice::Reached));
    }
    if let Some(own) = candidates.iter().find(|f| f.ns.own) {
        return Some((*own, Choice::Own));
    }
    match candidates {
        [] => None,
        [only] => Some((*only, Choice::Only)),
        many => many
            .iter()
            .min_by_key(|f| f.ns.id)
            .map(|f| (*f, Choice::Ambiguous(many.len()))),
    }
}

fn reached<'a>(candidates: &[Found<'a>], target: Target) -> Option<Found<'a>> {
    let accepts = |f: &Found| {
        let bound = f.listener.addr.ip();
        bound == target.ip || bound.is_unspecified()
    };
    // A bound address beats a wildcard (the kernel prefers it too).
    let best = |mut matching: Vec<Found<'a>>| {
        matching.sort_by_key(|f| f.listener.addr.ip().is_unspecified());
        matching.first().copied()
    };
    if target.ip.is_loopback() {
        // Loopback never leaves the client's namespace.
        let ns_matches = |f: &Found| match target.client_ns {
            Some(id) => f.ns.id == id,
            None => f.ns.own,
        };
        return best(
            candidates
                .iter()
                .copied()
                .filter(|f| ns_matches(f) && accepts(f))
                .collect(),
        );
    }
    best(
        candidates
            .iter()
            .copied()
            .filter(|f| f.ns.addrs.contains(&target.ip) && accepts(f))
            .collect(),
    )
}

/// The address nginx reaches a chosen listener at, when it is not the node's loopback: the
/// target's IP when that is how it was chosen, else for a pod's listener its pod IP (the
/// bound address, or the namespace's first non-loopback address of the family for a
/// wildcard; IPv4 first).
pub fn reached_at(found: Found, choice: Choice, target: Option<Target>) -> Option<SocketAddr> {
    let port = found.listener.addr.port();
    if let (Choice::Reached, Some(t)) = (choice, target) {
        return Some(SocketAddr::new(t.ip, port));
    }
    if found.ns.own {
        return None;
    }
    let bound = found.listener.addr.ip();
    if !bound.is_unspecified() {
        return (!bound.is_loopback()).then_some(SocketAddr::new(bound, port));
    }
    let routable = |ip: &&IpAddr| !ip.is_loopback() && !is_link_local_v6(ip);
    let v4 = found
        .ns
        .addrs
        .iter()
        .filter(routable)
        .find(|ip| ip.is_ipv4());
    let any = found.ns.addrs.iter().find(routable);
    // A v4 wildcard takes IPv4 only; a v6 one takes both (v6only is rare).
    let ip = if bound.is_ipv4() { v4 } else { v4.or(any) };
    ip.map(|ip| SocketAddr::new(*ip, port))
}

fn is_link_local_v6(ip: &IpAddr) -> bool {
    matches!(ip, IpAddr::V6(v6) if (v6.segments()[0] & 0xffc0) == 0xfe80)
}

#[cfg(test)]
#[path = "placement_tests.rs"]
mod tests;
