//! What an alert says: the cause nginx's 502/504 came from, on which node and upstream, with
//! the evidence that decided it and the next step. The engine (`alerts::`) produces these;
//! the notifiers (`notify::`), `GET /api/v1/alerts`, Loki (`source="alert"`) and the
//! `vigil_alerts_firing` gauge read them.
use serde::{Deserialize, Serialize};

/// The root causes (DESIGN.md): one alert per (node, upstream, cause).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Cause {
    /// 502: connects refused, nothing listens; the last owner and how it exited.
    UpstreamDown,
    /// 504: connects fine, no first byte, the owner's workers CPU-bound.
    UpstreamSaturated,
    /// 504: accept queue full / SYNs dropped at the listener.
    UpstreamBacklogFull,
    /// 504: SYNs unanswered with no local listener problem.
    UpstreamUnreachable,
    /// 502: reset mid-response.
    UpstreamReset,
    /// 502: nginx marked every server of the group down (`no live upstreams`).
    NoLiveUpstreams,
    /// 504: no first byte, workers not CPU-bound (blocked on I/O or locks).
    UpstreamSlow,
}

impl Cause {
    pub const ALL: [Cause; 7] = [
        Cause::UpstreamDown,
        Cause::UpstreamSaturated,
        Cause::UpstreamBacklogFull,
        Cause::UpstreamUnreachable,
        Cause::UpstreamReset,
        Cause::NoLiveUpstreams,
        Cause::UpstreamSlow,
    ];

    /// The `alertname` label.
    pub fn name(self) -> &'static str {
        match self {
            Cause::UpstreamDown => "UpstreamDown",
            Cause::UpstreamSaturated => "UpstreamSaturated",
            Cause::UpstreamBacklogFull => "UpstreamBacklogFull",
            Cause::UpstreamUnreachable => "UpstreamUnreachable",
            Cause::UpstreamReset => "UpstreamReset",
            Cause::NoLiveUpstreams => "NoLiveUpstreams",
            Cause::UpstreamSlow => "UpstreamSlow",
        }
    }

    /// The status nginx answers for this cause.
    pub fn status(self) -> u16 {
        match self {
            Cause::UpstreamDown | Cause::UpstreamReset | Cause::NoLiveUpstreams => 502,
            _ => 504,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertState {
    /// Seen, but not yet for the `for` window.
    Pending,
    Firing,
    Resolved,
}

/// Identity of an alert: dedup key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AlertKey {
    pub node: String,
    /// The destination nginx connects to, `host:port` or `unix:/path`.
    pub upstream: String,
    pub cause: Cause,
}

/// One fact that decided the cause, e.g. "nothing listens on 127.0.0.1:8084 since 10:13:58".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    /// Short machine-readable kind: `listener`, `connects`, `exit`, `stderr`, `workers`,
    /// `nginx_error`, `accept_queue`, `first_byte`, ...
    pub kind: String,
    /// One line an SRE reads.
    pub text: String,
}

/// An alert as every consumer sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    pub key: AlertKey,
    pub state: AlertState,
    /// 502 or 504.
    pub status: u16,
    /// nginx `server_name`s and locations that proxy to this upstream (from its configuration).
    pub server_names: Vec<String>,
    pub locations: Vec<String>,
    /// Failing requests nginx answered, by status (`"502"` → count), since the alert started.
    pub failed_requests: std::collections::BTreeMap<String, u64>,
    /// Unix ms.
    pub first_seen_ms: i64,
    pub last_seen_ms: i64,
    /// When it started firing / resolved (Unix ms).
    pub fired_at_ms: Option<i64>,
    pub resolved_at_ms: Option<i64>,
    /// One-line summary, e.g. "nothing listens on 127.0.0.1:8084 since 10:13:58; python3 app.py
    /// (pid 4242, unit drupal-client4.service) exited with status 1: ModuleNotFoundError: ...".
    pub summary: String,
    pub evidence: Vec<Evidence>,
    /// What an SRE would do next, e.g. `systemctl restart client-portal.service`.
    pub next_step: String,
}
