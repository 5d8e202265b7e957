//! Where a transition goes besides the notifiers: a Loki line (`source="alert"`, level
//! error when firing and info when resolved) and the `vigil_alerts_firing` gauge.
use metrics::{counter, gauge};

use super::{
    lifecycle::{Notice, Outgoing},
    model::{Alert, AlertState},
};
use crate::loki::LogEntry;

/// The Loki line of a fired or resolved alert; None for a repeat (not a transition).
pub fn log_entry(o: &Outgoing) -> Option<LogEntry> {
    let a = &o.alert;
    let (level, at_ms) = match o.notice {
        Notice::Fired => ("error", a.fired_at_ms),
        Notice::Resolved => ("info", a.resolved_at_ms),
        Notice::Repeat => return None,
    };
    let state = match a.state {
        AlertState::Firing => "firing",
        AlertState::Resolved => "resolved",
        AlertState::Pending => "pending",
    };
    let failed: u64 = a.failed_requests.values().sum();
    let line = format!(
        "alert={} state={state} upstream={} status={} failed_requests={failed} summary={} next_step={}",
        a.key.cause.name(),
        quote(&a.key.upstream),
        a.status,
        quote(&a.summary),
        quote(&a.next_step),
    );
    Some(LogEntry {
        release: None,
        unix_ns: at_ms.unwrap_or(a.last_seen_ms).saturating_mul(1_000_000),
        node: a.key.node.clone(),
        source: "alert",
        level,
        line,
        metadata: vec![
            ("alertname", a.key.cause.name().to_owned()),
            ("upstream", a.key.upstream.clone()),
            ("status", a.status.to_string()),
        ],
    })
}

/// logfmt value: bare when it can be, else double-quoted with `"` and `\` escaped.
fn quote(value: &str) -> String {
    if !value.is_empty() && !value.contains([' ', '"', '=', '\\', '\n']) {
        return value.to_owned();
    }
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

pub fn set_gauge(alert: &Alert, value: f64) {
    gauge!("vigil_alerts_firing",
        "node" => alert.key.node.clone(),
        "upstream" => alert.key.upstream.clone(),
        "alertname" => alert.key.cause.name())
    .set(value);
}

/// Gauge and transition counter of one outgoing alert.
pub fn record(o: &Outgoing) {
    let state = match o.notice {
        Notice::Fired => "firing",
        Notice::Resolved => "resolved",
        Notice::Repeat => return,
    };
    set_gauge(&o.alert, if o.notice == Notice::Fired { 1.0 } else { 0.0 });
    counter!("vigil_alert_transitions_total",
        "alertname" => o.alert.key.cause.name(), "state" => state)
    .increment(1);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logfmt_values_are_quoted_when_needed() {
        assert_eq!(quote("127.0.0.1:8084"), "127.0.0.1:8084");
        assert_eq!(quote("a b"), "\"a b\"");
        assert_eq!(quote("say \"x\"\n"), "\"say \\\"x\\\"\\n\"");
        assert_eq!(quote(""), "\"\"");
    }
}
