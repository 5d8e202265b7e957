//! The HTML of `GET /`, written by hand: no template engine, no JavaScript, every value
//! escaped on its way out. It refreshes itself every 5 s.
use std::{fmt::Write, sync::Arc};

use axum::{
    extract::State,
    http::header,
    response::{IntoResponse, Response},
};
use vigil_wire::{ProcessIdentity, UpstreamStatus};

use super::NodeStatus;
use crate::{alerts::model::Alert, state::AppState};

const STYLE: &str = "body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse;\
margin-bottom:1.5em}td,th{border:1px solid #ccc;padding:.3em .6em;text-align:left;\
vertical-align:top}.firing{color:#b00;font-weight:bold}.pending{color:#b60}.down{color:#b00}";

/// HTML-escapes `&<>"'`, so a value cannot open a tag or leave an attribute.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

pub async fn page(State(state): State<Arc<AppState>>) -> Response {
    let html = render(&state.status.nodes(), &state.alerts.alerts());
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response()
}

/// The whole page. Writing to a String cannot fail: `let _ =` on every write!.
pub fn render(nodes: &[(String, NodeStatus)], alerts: &[Alert]) -> String {
    let mut h = String::with_capacity(4096);
    let _ = write!(
        h,
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"refresh\" content=\"5\"><title>vigil status</title>\
         <style>{STYLE}</style></head><body><h1>vigil status</h1>"
    );
    alerts_section(&mut h, alerts);
    agents_section(&mut h, nodes);
    upstreams_section(&mut h, nodes);
    h.push_str("</body></html>\n");
    h
}

fn alerts_section(h: &mut String, alerts: &[Alert]) {
    let _ = write!(h, "<h2>Alerts ({})</h2>", alerts.len());
    if alerts.is_empty() {
        h.push_str("<p>No active or recent alerts.</p>");
        return;
    }
    h.push_str(
        "<table><tr><th>State</th><th>Alert</th><th>Node</th><th>Upstream</th>\
         <th>Summary</th><th>Evidence</th><th>Next step</th></tr>",
    );
    for a in alerts {
        let state = format!("{:?}", a.state).to_lowercase();
        let _ = write!(
            h,
            "<tr><td class=\"{state}\">{state}</td><td>{} ({})</td><td>{}</td><td>{}</td>\
             <td>{}</td><td><ul>",
            escape(a.key.cause.name()),
            a.status,
            escape(&a.key.node),
            escape(&a.key.upstream),
            escape(&a.summary),
        );
        for e in &a.evidence {
            let _ = write!(
                h,
                "<li><b>{}</b>: {}</li>",
                escape(&e.kind),
                escape(&e.text)
            );
        }
        let _ = write!(h, "</ul></td><td>{}</td></tr>", escape(&a.next_step));
    }
    h.push_str("</table>");
}

fn agents_section(h: &mut String, nodes: &[(String, NodeStatus)]) {
    let _ = write!(h, "<h2>Agents ({})</h2>", nodes.len());
    if nodes.is_empty() {
        h.push_str("<p>No agent has sent a batch yet.</p>");
        return;
    }
    h.push_str(
        "<table><tr><th>Node</th><th>Last batch</th><th>Missing capabilities</th>\
         <th>Probe events lost</th><th>Spool dropped batches</th></tr>",
    );
    let now_ms = crate::alerts::wall_now_ms();
    for (name, n) in nodes {
        let (missing, lost, spool_dropped) = match &n.health {
            Some(hl) if hl.capabilities_missing.is_empty() => (
                "none".to_owned(),
                hl.probe_events_lost,
                hl.spool_dropped_batches,
            ),
            Some(hl) => (
                hl.capabilities_missing.join(", "),
                hl.probe_events_lost,
                hl.spool_dropped_batches,
            ),
            None => ("not reported".to_owned(), 0, 0),
        };
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{lost}</td><td>{spool_dropped}</td></tr>",
            escape(name),
            escape(&ago(n, now_ms)),
            escape(&missing),
        );
    }
    h.push_str("</table>");
}

/// "3 s ago (batch created 12 s ago)" style: arrival is the collector's clock, creation the
/// agent's; both are shown when they disagree by more than a few seconds.
fn ago(n: &NodeStatus, now_ms: i64) -> String {
    let arrived = (now_ms - n.arrived_ms).max(0) / 1000;
    let created = (now_ms - n.last_batch_ms) / 1000;
    if (created - arrived).abs() <= 5 {
        format!("{arrived} s ago")
    } else {
        format!("arrived {arrived} s ago (created {created} s ago by the agent's clock)")
    }
}

fn upstreams_section(h: &mut String, nodes: &[(String, NodeStatus)]) {
    h.push_str("<h2>Upstreams</h2>");
    if nodes.iter().all(|(_, n)| n.upstreams.is_empty()) {
        h.push_str("<p>No upstream reported yet.</p>");
        return;
    }
    h.push_str(
        "<table><tr><th>Node</th><th>Upstream</th><th>Listening</th>\
         <th>Accept queue / backlog</th><th>Owner</th></tr>",
    );
    for (name, n) in nodes {
        for u in &n.upstreams {
            upstream_row(h, name, u);
        }
    }
    h.push_str("</table>");
}

fn upstream_row(h: &mut String, node: &str, u: &UpstreamStatus) {
    let upstream = if u.upstream.is_empty() {
        format!("port {}", u.port)
    } else {
        u.upstream.clone()
    };
    let (listening, class) = if u.listening {
        ("listening".to_owned(), "")
    } else if u.gone_since_unix_ms > 0 {
        let since = crate::alerts::wall_now_ms().saturating_sub(u.gone_since_unix_ms) / 1000;
        (format!("NOT listening (for {since} s)"), "down")
    } else {
        ("NOT listening".to_owned(), "down")
    };
    let owner = match (&u.owner, &u.last_owner) {
        (Some(o), _) => identity(o),
        (None, Some(o)) => format!("last: {}", identity(o)),
        (None, None) => "unknown".to_owned(),
    };
    let _ = write!(
        h,
        "<tr><td>{}</td><td>{}</td><td class=\"{class}\">{}</td><td>{} / {}</td><td>{}</td></tr>",
        escape(node),
        escape(&upstream),
        escape(&listening),
        u.accept_queue,
        u.backlog,
        escape(&owner),
    );
}

fn identity(p: &ProcessIdentity) -> String {
    if p.unit.is_empty() {
        format!("{} (pid {})", p.comm, p.pid)
    } else {
        format!("{} (pid {}, {})", p.comm, p.pid, p.unit)
    }
}
