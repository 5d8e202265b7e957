//! The diagnosis, as data: `RULES` is a table of (cause, the failures it is made of, a
//! function that confirms the cause from the rest of the evidence and says it). A rule
//! applies to an upstream when its family of failures has a live episode and `decide`
//! returns a verdict. Rules that share failures (the timeouts) are made exclusive by their
//! conditions: CPU-bound workers make it UpstreamSaturated, a full accept queue
//! UpstreamBacklogFull, neither UpstreamSlow or UpstreamUnreachable.
mod connect;
mod response;

use self::{connect::*, response::*};
use super::{
    evidence::Signal::*,
    model::{Cause, Evidence},
    view::{Episode, Family, UpstreamView},
    wording::{clock, evidence},
};

/// What a rule says about an upstream.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub summary: String,
    pub evidence: Vec<Evidence>,
    pub next_step: String,
}

pub struct Rule {
    pub cause: Cause,
    pub family: Family,
    pub decide: fn(&UpstreamView, &Episode) -> Option<Verdict>,
}

/// A cause found on an upstream at the node's data time.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    pub upstream: String,
    pub cause: Cause,
    pub episode: Episode,
    pub verdict: Verdict,
    pub server_names: Vec<String>,
    pub locations: Vec<String>,
}

pub const REFUSED: Family = Family {
    probe: &[ConnRefused],
    log: &[LogRefused],
};
pub const READ_TIMEOUT: Family = Family {
    probe: &[ConnSilent],
    log: &[LogReadTimeout],
};
pub const CONNECT_TIMEOUT: Family = Family {
    probe: &[ConnTimeout],
    log: &[LogConnectTimeout],
};
/// CPU-bound workers explain both: requests that wait for a byte, and connects that wait
/// for room in a queue nobody drains.
pub const SATURATION: Family = Family {
    probe: &[ConnSilent, ConnTimeout],
    log: &[LogReadTimeout, LogConnectTimeout],
};
pub const UNANSWERED: Family = Family {
    probe: &[ConnTimeout, ConnUnreachable],
    log: &[LogConnectTimeout, LogUnreachable],
};
pub const RESET: Family = Family {
    probe: &[ConnReset],
    log: &[LogReset, LogPremature],
};
pub const NO_LIVE: Family = Family {
    probe: &[],
    log: &[LogNoLive],
};

pub const RULES: [Rule; 7] = [
    Rule {
        cause: Cause::UpstreamDown,
        family: REFUSED,
        decide: down,
    },
    Rule {
        cause: Cause::NoLiveUpstreams,
        family: NO_LIVE,
        decide: no_live,
    },
    Rule {
        cause: Cause::UpstreamReset,
        family: RESET,
        decide: reset,
    },
    Rule {
        cause: Cause::UpstreamSaturated,
        family: SATURATION,
        decide: saturated,
    },
    Rule {
        cause: Cause::UpstreamBacklogFull,
        family: CONNECT_TIMEOUT,
        decide: backlog_full,
    },
    Rule {
        cause: Cause::UpstreamUnreachable,
        family: UNANSWERED,
        decide: unreachable,
    },
    Rule {
        cause: Cause::UpstreamSlow,
        family: READ_TIMEOUT,
        decide: slow,
    },
];

/// Every cause that applies to the upstream now.
pub fn diagnose(view: &UpstreamView) -> Vec<Finding> {
    let mut out = Vec::new();
    for rule in &RULES {
        let Some(episode) = view.episode(&rule.family) else {
            continue;
        };
        if let Some(verdict) = (rule.decide)(view, &episode) {
            out.push(Finding {
                upstream: view.upstream.to_owned(),
                cause: rule.cause,
                episode,
                verdict,
                server_names: view.server_names(),
                locations: view.locations(),
            });
        }
    }
    out
}

/// The status most of the episode's requests got.
pub(super) fn answered(e: &Episode) -> u16 {
    e.by_status
        .iter()
        .max_by_key(|(_, n)| **n)
        .map_or(502, |(s, _)| *s)
}

/// "37 requests failed since 10:13:58 (probes 37, error.log 37)".
pub(super) fn failed(e: &Episode, what: &str) -> Evidence {
    let n = e.by_status.values().sum::<u64>();
    evidence(
        "requests",
        format!(
            "{n} requests {what} since {} (probes {}, error.log {})",
            clock(e.first_ms),
            e.probe_count,
            e.log_count
        ),
    )
}

/// The latest nginx error line among these signals.
pub(super) fn nginx_line(
    v: &UpstreamView,
    signals: &[super::evidence::Signal],
) -> Option<Evidence> {
    signals
        .iter()
        .filter_map(|s| Some((v.live(*s)?.last_ms, v.evidence.lines.get(s)?)))
        .max_by_key(|(at, _)| *at)
        .map(|(_, line)| evidence("nginx_error", line.clone()))
}

pub(super) fn workers_text(v: &UpstreamView) -> Option<String> {
    let w = v.workers()?;
    let cores = match (w.cores, w.capacity()) {
        (Some(c), Some(cap)) if cap < c => format!("{cap:.2} cores ({} threads)", w.threads),
        (Some(c), _) => format!("{c:.2} cores"),
        _ => "an unknown number of cores".to_owned(),
    };
    Some(format!(
        "{} processes serving {} (pids {:?}) use {:.2} cores of the {cores} they can get; states {} ({} running)",
        w.count, v.upstream, w.pids, w.cpu, w.states, w.running
    ))
}

#[cfg(test)]
mod tests;
