//! What `cargo xtask demo` and `cargo xtask run` print for an alert: read from the
//! collector's `GET /api/v1/alerts` (the JSON contract of collector/src/alerts/model.rs),
//! turned into transitions (an alert that fires, one that resolves) and rendered for a
//! person at a terminal: the cause, the site, the summary, the evidence, the failed
//! requests and the next step.
use std::{collections::BTreeMap, time::Duration};

use serde::Deserialize;

use crate::{
    http,
    term::{wrap, Colour, Style},
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertState {
    Pending,
    Firing,
    Resolved,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
pub struct AlertKey {
    pub node: String,
    pub upstream: String,
    pub cause: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Evidence {
    pub kind: String,
    pub text: String,
}

/// One alert as the collector serves it.
#[derive(Debug, Clone, Deserialize)]
pub struct Alert {
    pub key: AlertKey,
    pub state: AlertState,
    pub status: u16,
    pub server_names: Vec<String>,
    pub locations: Vec<String>,
    pub failed_requests: BTreeMap<String, u64>,
    pub first_seen_ms: i64,
    pub last_seen_ms: i64,
    pub fired_at_ms: Option<i64>,
    pub resolved_at_ms: Option<i64>,
    pub summary: String,
    pub evidence: Vec<Evidence>,
    pub next_step: String,
}

#[derive(Deserialize)]
struct AlertList {
    alerts: Vec<Alert>,
}

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("GET /api/v1/alerts: {0}")]
    Http(#[from] http::HttpError),
    #[error("GET /api/v1/alerts: status {status}: {body}")]
    Status { status: u16, body: String },
    #[error("GET /api/v1/alerts: not the alert list: {0}")]
    Json(#[from] serde_json::Error),
}

/// The collector's alerts now.
pub fn fetch(collector_port: u16) -> Result<Vec<Alert>, FetchError> {
    let r = http::get(
        collector_port,
        "/api/v1/alerts",
        "127.0.0.1",
        Duration::from_secs(5),
    )?;
    if r.status != 200 {
        let body = r.body.chars().take(300).collect();
        return Err(FetchError::Status {
            status: r.status,
            body,
        });
    }
    parse(&r.body)
}

pub fn parse(json: &str) -> Result<Vec<Alert>, FetchError> {
    Ok(serde_json::from_str::<AlertList>(json)?.alerts)
}

/// Turns successive alert lists into transitions: an alert seen firing for the first time,
/// and one seen resolved after it fired. Pending alerts are not transitions (they may never
/// fire); the caller can list them with `pending`.
///
/// An incident is a key and when it fired: once a key fires again the collector lists it
/// twice, the new incident among the active alerts and the earlier one among the resolved.
#[derive(Default)]
pub struct Feed {
    last: BTreeMap<(AlertKey, Option<i64>), AlertState>,
    pending: Vec<Alert>,
}

impl Feed {
    /// The transitions in `alerts` since the previous call, firing before resolved.
    pub fn changes(&mut self, alerts: Vec<Alert>) -> Vec<Alert> {
        let mut out = Vec::new();
        self.pending.clear();
        let mut now = BTreeMap::new();
        for a in alerts {
            let incident = (a.key.clone(), a.fired_at_ms);
            // Pending before it fired: the same incident, under its key alone.
            let pending_before = self.last.get(&(a.key.clone(), None)).copied();
            let before = self.last.get(&incident).copied().or(pending_before);
            now.insert(incident, a.state);
            match a.state {
                AlertState::Pending => self.pending.push(a),
                AlertState::Firing if before != Some(AlertState::Firing) => out.push(a),
                AlertState::Resolved
                    if a.fired_at_ms.is_some()
                        && before.is_some_and(|b| b != AlertState::Resolved) =>
                {
                    out.push(a)
                }
                _ => {}
            }
        }
        // What is no longer listed is forgotten (a pending alert that never fired).
        self.last = now;
        out.sort_by_key(|a| (a.state == AlertState::Resolved, a.key.clone()));
        out
    }

    /// Keys with an incident firing or pending in the last list.
    pub fn active(&self) -> impl Iterator<Item = &AlertKey> {
        self.last
            .iter()
            .filter(|(_, state)| **state != AlertState::Resolved)
            .map(|((k, _), _)| k)
    }

    /// Alerts pending in the last list.
    pub fn pending(&self) -> &[Alert] {
        &self.pending
    }
}

/// `10:13:58` (UTC) of a Unix-ms time.
pub fn clock(unix_ms: i64) -> String {
    let secs = unix_ms.div_euclid(1000).rem_euclid(86_400);
    format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60)
}

/// `502 × 14`, `504 × 3, 502 × 1`.
fn failed(a: &Alert) -> String {
    let mut counts: Vec<(&String, &u64)> = a.failed_requests.iter().collect();
    counts.sort_by(|x, y| y.1.cmp(x.1).then(x.0.cmp(y.0)));
    let parts: Vec<String> = counts.iter().map(|(s, n)| format!("{s} × {n}")).collect();
    if parts.is_empty() {
        "none counted yet".to_owned()
    } else {
        parts.join(", ")
    }
}

/// `client-portal.example.com → 127.0.0.1:8084`, with the locations when not just `/`
/// (`shop.example.com /api/, /admin/ → …`), or the upstream alone.
fn target(a: &Alert) -> String {
    let mut site = a.server_names.join(", ");
    if !a.locations.is_empty() && a.locations != ["/"] {
        site = format!("{site} {}", a.locations.join(", "))
            .trim()
            .to_owned();
    }
    if site.is_empty() {
        a.key.upstream.clone()
    } else {
        format!("{site} → {}", a.key.upstream)
    }
}

/// The alert for a person: a headline, then (firing) the summary, every piece of evidence,
/// the failed requests and the next step, or (resolved) how long it lasted.
pub fn render(a: &Alert, style: &Style) -> String {
    let (word, colour, at) = match a.state {
        AlertState::Firing => ("FIRING", Colour::Red, a.fired_at_ms),
        AlertState::Resolved => ("RESOLVED", Colour::Green, a.resolved_at_ms),
        AlertState::Pending => ("PENDING", Colour::Yellow, None),
    };
    let node = format!("(node {})", a.key.node);
    let mut out = vec![format!(
        "{}  {}  {}  {}  {}  {}",
        clock(at.unwrap_or(a.last_seen_ms)),
        style.paint(colour, word),
        style.paint(Colour::Bold, &a.status.to_string()),
        style.paint(Colour::Bold, &a.key.cause),
        target(a),
        style.paint(Colour::Dim, &node),
    )];
    // `  label            text…`, the text wrapped under itself.
    let field = |name: &str, text: &str, colour: Option<Colour>| {
        let wrapped = wrap(text, 19, 19, style.width);
        let text = colour.map_or(wrapped.clone(), |c| style.paint(c, &wrapped));
        format!(
            "  {} {text}",
            style.paint(Colour::Dim, &format!("{name:<16}"))
        )
    };
    if a.state == AlertState::Resolved {
        let end = a.resolved_at_ms.unwrap_or(a.last_seen_ms);
        let lasted = format!(
            "{} → {} ({:.1} s); failed requests: {}",
            clock(a.first_seen_ms),
            clock(end),
            (end - a.first_seen_ms) as f64 / 1000.0,
            failed(a)
        );
        out.push(field("lasted", &lasted, None));
        return out.join("\n");
    }
    out.push(format!("  {}", wrap(&a.summary, 2, 2, style.width)));
    out.push(format!("  {}", style.paint(Colour::Dim, "evidence")));
    for e in &a.evidence {
        let kind = style.paint(Colour::Cyan, &format!("{:<14}", e.kind));
        out.push(format!("    {kind} {}", wrap(&e.text, 19, 19, style.width)));
    }
    let requests = format!(
        "{} (first {}, last {})",
        failed(a),
        clock(a.first_seen_ms),
        clock(a.last_seen_ms)
    );
    out.push(field("failed requests", &requests, None));
    out.push(field("next step", &a.next_step, Some(Colour::Bold)));
    out.join("\n")
}

#[cfg(test)]
#[path = "alert_view_tests.rs"]
mod tests;
