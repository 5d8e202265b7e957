//! The connect-phase causes: nothing listens (UpstreamDown), the listener's queue is full
//! (UpstreamBacklogFull), SYNs go unanswered (UpstreamUnreachable).
use vigil_wire::{ProcessExit, ProcessIdentity};

use super::{answered, failed, nginx_line, workers_text, Verdict};
use crate::alerts::{
    evidence::Signal::*,
    model::Evidence,
    view::{Cpu, Episode, UpstreamView},
    wording::{clock, crash_reason, evidence, exit, process, restart_step},
};

pub fn down(v: &UpstreamView, e: &Episode) -> Option<Verdict> {
    let status = v.status();
    let back = came_back(v, e);
    let listener = listener_text(v, back);
    let mut ev = vec![
        evidence("listener", listener.clone()),
        failed(e, "were refused"),
    ];
    ev.extend(nginx_line(v, &[LogRefused]));
    let gone = status.filter(|s| !s.listening);
    let owner = gone.and_then(|s| s.last_owner.as_ref());
    let last_exit = gone.and_then(|s| s.last_exit.as_ref());
    let reason = last_exit.and_then(crash_reason);
    let mut summary = format!("{} on {}: {listener}", answered(e), v.site());
    if let Some(o) = owner {
        let how = last_exit.map_or_else(|| "is gone".to_owned(), exit);
        summary += &format!("; {} {how}", process(o));
        ev.push(evidence("exit", format!("{} {how}", process(o))));
        if let Some(r) = &reason {
            summary += &format!(": {r}");
        }
    }
    ev.extend(last_exit.and_then(stderr_evidence));
    ev.extend(group_evidence(v));
    let next_step = match (owner, status) {
        (Some(o), _) => restart_step(o, last_exit, reason.is_some()),
        (None, Some(s)) if back => format!(
            "it serves again; find why it went away in the log of {}",
            s.owner
                .as_ref()
                .map_or_else(|| "its owner".to_owned(), owner_log)
        ),
        (None, Some(s)) if s.listening => format!(
            "make {} listen where nginx connects ({}), or point nginx's proxy_pass at {}",
            s.owner
                .as_ref()
                .map_or_else(|| "the listener".to_owned(), process),
            v.upstream,
            s.addr
        ),
        _ if v.upstream.starts_with("unix:") => format!(
            "start the service that creates {} (its systemd unit or pod)",
            v.upstream.trim_start_matches("unix:")
        ),
        _ => format!("start the service that should listen on {}", v.upstream),
    };
    Some(Verdict {
        summary,
        evidence: ev,
        next_step,
    })
}

/// The listener state was sampled after the last refusal and shows one: it came back.
fn came_back(v: &UpstreamView, e: &Episode) -> bool {
    v.status().is_some_and(|s| s.listening) && v.status_at().is_some_and(|at| at >= e.last_ms)
}

/// What the listener side says: gone since when, never there, back, or there yet refusing.
fn listener_text(v: &UpstreamView, back: bool) -> String {
    let up = v.upstream;
    if up.starts_with("unix:") {
        return if v.evidence.socket_missing {
            format!(
                "the socket {up} does not exist (2: No such file or directory): nothing listens"
            )
        } else {
            format!("nothing accepts connections on {up} (111: Connection refused)")
        };
    }
    match v.status() {
        Some(s) if !s.listening && s.gone_since_unix_ms > 0 => {
            format!(
                "nothing listens on {up} since {}",
                clock(s.gone_since_unix_ms)
            )
        }
        Some(s) if !s.listening => {
            format!("nothing listens on {up} (nothing has since the agent started)")
        }
        Some(_) if back => format!(
            "nothing listened on {up} until a listener came back (seen at {})",
            clock(v.status_at().unwrap_or_default())
        ),
        Some(s) => format!(
            "{up} refuses connections though a listener is on {}",
            s.addr
        ),
        None => format!("{up} refuses connections (111: Connection refused)"),
    }
}

/// The last lines the exited owner wrote, and where they were read.
fn stderr_evidence(x: &ProcessExit) -> Option<Evidence> {
    if x.stderr_tail.is_empty() {
        return None;
    }
    let from = if x.stderr_source.is_empty() {
        "stderr"
    } else {
        &x.stderr_source
    };
    let skip = x.stderr_tail.len().saturating_sub(5);
    let tail: Vec<&str> = x.stderr_tail[skip..].iter().map(String::as_str).collect();
    Some(evidence("stderr", format!("{from}: {}", tail.join(" | "))))
}

/// When this server is one of an `upstream` block's, nginx passes requests to the others.
fn group_evidence(v: &UpstreamView) -> Option<Evidence> {
    let peers = v.group_peers();
    let (group, _) = peers.first()?;
    let names: Vec<&str> = peers.iter().map(|(_, p)| *p).collect();
    Some(evidence(
        "group",
        format!(
            "one of the servers of upstream {group}: nginx passes its requests to the others ({})",
            names.join(", ")
        ),
    ))
}

/// `journalctl -u UNIT` for a process under systemd, else the process itself.
fn owner_log(o: &ProcessIdentity) -> String {
    if o.unit.is_empty() {
        process(o)
    } else {
        format!("{} (journalctl -u {})", process(o), o.unit)
    }
}

/// A listener is here, and its queue was seen full or connects got in only after SYN
/// retransmits: SYNs dropped at a full accept queue.
fn backlog_overflow(v: &UpstreamView, e: &Episode) -> bool {
    v.status().is_some_and(|s| s.listening)
        && (v.queue_was_full(e) || v.count(ConnSlowHandshake) > 0)
}

pub fn backlog_full(v: &UpstreamView, e: &Episode) -> Option<Verdict> {
    // CPU-bound workers explain a full queue (UpstreamSaturated); unmeasured ones may.
    if !matches!(v.cpu(), Cpu::NotBound(_) | Cpu::NoLocalWorkers) || !backlog_overflow(v, e) {
        return None;
    }
    let s = v.status()?;
    let summary = format!(
        "{} on {}: {}'s accept queue is full ({}/{}): new connections wait for SYN retransmits and time out",
        answered(e), v.site(), v.upstream, s.accept_queue, s.backlog
    );
    let mut ev = vec![failed(e, "timed out connecting")];
    ev.push(evidence(
        "accept_queue",
        format!(
            "accept queue {}/{} (last seen full at {}); {} connects got in only after SYN retransmits",
            s.accept_queue,
            s.backlog,
            v.evidence.queue_full_ms.map_or_else(|| "-".to_owned(), clock),
            v.count(ConnSlowHandshake)
        ),
    ));
    ev.extend(workers_text(v).map(|t| evidence("workers", t)));
    ev.extend(nginx_line(v, &[LogConnectTimeout]));
    let next_step = "raise the listen backlog (listen(..., N), e.g. gunicorn --backlog 2048, and sysctl net.core.somaxconn) \
                     and add workers so the queue drains"
        .to_owned();
    Some(Verdict {
        summary,
        evidence: ev,
        next_step,
    })
}

pub fn unreachable(v: &UpstreamView, e: &Episode) -> Option<Verdict> {
    if !matches!(v.cpu(), Cpu::NotBound(_) | Cpu::NoLocalWorkers) || backlog_overflow(v, e) {
        return None;
    }
    let icmp = v.count(ConnUnreachable) + v.count(LogUnreachable) > 0;
    let how = if icmp {
        "the network says there is no route (113/101)"
    } else {
        "SYNs go unanswered"
    };
    let place = match v.status() {
        Some(s) if s.listening => format!(
            "a listener is there with room in its queue ({}/{}): something drops the SYNs on the way",
            s.accept_queue, s.backlog
        ),
        Some(_) if is_loopback(v.upstream) => {
            "nothing listens there either, yet no RST comes back: a firewall drops the SYNs".to_owned()
        }
        None if is_loopback(v.upstream) => UNWATCHED.to_owned(),
        _ => "it is not on this node: the path or the host is at fault".to_owned(),
    };
    let summary = format!(
        "{} on {}: connects to {} get no answer, {how}; {place}",
        answered(e),
        v.site(),
        v.upstream
    );
    let mut ev = vec![failed(e, "could not connect")];
    ev.push(evidence("listener", place));
    ev.extend(nginx_line(v, &[LogConnectTimeout, LogUnreachable]));
    let host = v.upstream.rsplit_once(':').map_or(v.upstream, |(h, _)| h);
    let next_step = format!(
        "check the path to {host}: firewall rules that drop SYNs (nft list ruleset, iptables -S), routes, \
         security groups, and whether the host is up"
    );
    Some(Verdict {
        summary,
        evidence: ev,
        next_step,
    })
}

/// A loopback upstream the agent sent no state for: its port is not among those it watches.
pub const UNWATCHED: &str =
    "the agent does not watch its port (--ports): no listener or process state to check";

pub fn is_loopback(upstream: &str) -> bool {
    upstream.starts_with("127.")
        || upstream.starts_with("[::1]")
        || upstream.starts_with("localhost:")
}
