//! The causes once connected: no response while the workers are CPU-bound
//! (UpstreamSaturated) or not (UpstreamSlow), cut before the response (UpstreamReset),
//! and nginx out of servers for a group (NoLiveUpstreams).
use super::{
    answered,
    connect::{is_loopback, UNWATCHED},
    failed, nginx_line, workers_text, Verdict,
};
use crate::alerts::{
    evidence::Signal::*,
    view::{Cpu, Episode, UpstreamView},
    wording::{clock, evidence, process, seconds},
};

/// The workers sampled now are the ones that failed these requests: not a process that
/// took over after a restart (judging the old failures by its idle CPU would be wrong).
fn same_workers(v: &UpstreamView, e: &Episode) -> bool {
    v.evidence
        .owner_since_ms
        .is_none_or(|since| since <= e.last_ms)
}

pub fn saturated(v: &UpstreamView, e: &Episode) -> Option<Verdict> {
    if !same_workers(v, e) {
        return None;
    }
    let Cpu::Bound(w) = v.cpu() else {
        return None;
    };
    let capacity = w
        .capacity()
        .map_or_else(|| "all".to_owned(), |c| format!("{c:.2}"));
    let summary = format!(
        "{} on {}: {} accepts connections but sends no response; its {} processes use {:.2} of the {capacity} cores they can get (CPU-bound)",
        answered(e), v.site(), v.upstream, w.count, w.cpu
    );
    let mut ev = vec![failed(e, "got no response byte")];
    ev.push(evidence(
        "connects",
        format!(
            "{} connects succeeded meanwhile: the port accepts",
            v.count(ConnOk)
        ),
    ));
    ev.extend(workers_text(v).map(|t| evidence("workers", t)));
    if let Some(s) = v.status().filter(|_| v.queue_was_full(e)) {
        ev.push(evidence(
            "accept_queue",
            format!(
                "accept queue full ({}/{}): nobody takes new connections",
                s.accept_queue, s.backlog
            ),
        ));
    }
    ev.extend(nginx_line(v, &[LogReadTimeout, LogConnectTimeout]));
    let pid = w.pids.first().copied().unwrap_or_default();
    let next_step = format!(
        "workers are CPU-bound: add a worker timeout such as gunicorn --timeout 30 so a stuck request frees its worker, \
         find the hot code (py-spy dump --pid {pid}), and give them more CPU (cpu.max) before adding workers"
    );
    Some(Verdict {
        summary,
        evidence: ev,
        next_step,
    })
}

pub fn slow(v: &UpstreamView, e: &Episode) -> Option<Verdict> {
    if !same_workers(v, e) {
        return None;
    }
    let within = v.read_timeout_ms().map_or_else(String::new, |t| {
        format!(" within proxy_read_timeout {}", seconds(t))
    });
    let (why, pid) = match v.cpu() {
        Cpu::Bound(_) | Cpu::Unknown => return None,
        Cpu::NotBound(w) => (
            format!(
                "its workers are not CPU-bound ({:.2} of {} cores): they wait on I/O or locks",
                w.cpu,
                w.capacity()
                    .map_or_else(|| "?".to_owned(), |c| format!("{c:.2}"))
            ),
            w.pids
                .first()
                .copied()
                .map_or_else(|| "PID".to_owned(), |p| p.to_string()),
        ),
        Cpu::NoLocalWorkers if v.status().is_none() && is_loopback(v.upstream) => {
            (UNWATCHED.to_owned(), "PID".to_owned())
        }
        Cpu::NoLocalWorkers => (
            "no process of it runs on this node to inspect".to_owned(),
            "PID".to_owned(),
        ),
    };
    let summary = format!(
        "{} on {}: {} sends no response{within}; {why}",
        answered(e),
        v.site(),
        v.upstream
    );
    let mut ev = vec![failed(e, "got no response byte")];
    ev.extend(workers_text(v).map(|t| evidence("workers", t)));
    ev.extend(nginx_line(v, &[LogReadTimeout]));
    let next_step = format!(
        "see what the workers wait on: py-spy dump --pid {pid}, cat /proc/{pid}/stack or strace -p {pid} \
         (a database, a lock, a remote API); a worker timeout such as gunicorn --timeout 30 bounds the damage"
    );
    Some(Verdict {
        summary,
        evidence: ev,
        next_step,
    })
}

pub fn reset(v: &UpstreamView, e: &Episode) -> Option<Verdict> {
    // The process died mid-request: UpstreamDown says why.
    if v.status().is_some_and(|s| !s.listening) {
        return None;
    }
    let summary =
        format!(
        "{} on {}: {} closes connections before answering ({} resets or premature closes since {})",
        answered(e), v.site(), v.upstream, e.by_status.values().sum::<u64>(), clock(e.first_ms)
    );
    let mut ev = vec![failed(e, "were cut before a response")];
    ev.extend(nginx_line(v, &[LogReset, LogPremature]));
    ev.extend(workers_text(v).map(|t| evidence("workers", t)));
    let owner = v.status().and_then(|s| s.owner.as_ref());
    let log = match owner {
        Some(o) if !o.unit.is_empty() => {
            format!("journalctl -u {} --since {}", o.unit, clock(e.first_ms))
        }
        Some(o) => format!("the log of {}", process(o)),
        None => format!("{}'s log", v.upstream),
    };
    let next_step = format!(
        "read {log} for workers that crashed or were killed (gunicorn WORKER TIMEOUT; the OOM killer: journalctl -k | grep -i oom); \
         if it closes idle keep-alive connections, make its keep-alive timeout longer than nginx's"
    );
    Some(Verdict {
        summary,
        evidence: ev,
        next_step,
    })
}

pub fn no_live(v: &UpstreamView, e: &Episode) -> Option<Verdict> {
    let servers = v.group_servers();
    let states: Vec<String> = servers
        .iter()
        .map(|s| format!("{s}: {}", member_state(v, s)))
        .collect();
    let listed = if states.is_empty() {
        String::new()
    } else {
        format!(" ({})", states.join(", "))
    };
    let summary = format!(
        "{} on {}: nginx has no live server in upstream {}: every one failed and is marked down{listed}",
        answered(e), v.site(), v.upstream
    );
    let mut ev = vec![failed(e, "found no live upstream")];
    ev.extend(states.into_iter().map(|s| evidence("server", s)));
    ev.extend(nginx_line(v, &[LogNoLive]));
    let next_step = format!(
        "bring back the servers of upstream {} (see their own alerts); nginx tries each again after fail_timeout (10s by default)",
        v.upstream
    );
    Some(Verdict {
        summary,
        evidence: ev,
        next_step,
    })
}

/// How a member of an `upstream` block fails, from its own evidence.
fn member_state(v: &UpstreamView, server: &str) -> &'static str {
    let Some(u) = v.other(server) else {
        return "no failure seen";
    };
    let live = |s| u.run(s).alive(v.now_ms, v.gap_ms);
    if live(ConnRefused) || live(LogRefused) {
        "refuses connections"
    } else if live(ConnTimeout)
        || live(LogConnectTimeout)
        || live(ConnUnreachable)
        || live(LogUnreachable)
    {
        "connects time out"
    } else if live(ConnSilent) || live(LogReadTimeout) {
        "sends no response"
    } else if live(ConnReset) || live(LogReset) || live(LogPremature) {
        "resets connections"
    } else {
        "no failure seen"
    }
}
