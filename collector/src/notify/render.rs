//! Alert mail: the subject and a plain-text body an SRE can act on from a phone — what fails,
//! since when, how many requests, the cause, the evidence, the next step, and links. Also the
//! UTC time formats the JSON payloads use.
use std::fmt::Write;

use crate::alerts::model::{Alert, AlertState, Cause};

use super::{config::Links, links};

/// What each cause means, in one line.
pub fn explain(cause: Cause) -> &'static str {
    match cause {
        Cause::UpstreamDown => "connects are refused, nothing listens on the upstream",
        Cause::UpstreamSaturated => {
            "connects succeed but no first byte comes: the upstream's workers are CPU-bound"
        }
        Cause::UpstreamBacklogFull => {
            "the upstream's accept queue is full: connections wait or SYNs are dropped"
        }
        Cause::UpstreamUnreachable => {
            "SYNs go unanswered, and no local listener problem explains it"
        }
        Cause::UpstreamReset => "the upstream resets connections mid-response",
        Cause::NoLiveUpstreams => "nginx marked every server of the upstream group down",
        Cause::UpstreamSlow => {
            "no first byte in time, workers not CPU-bound: blocked on I/O or locks"
        }
    }
}

fn state_word(state: AlertState) -> &'static str {
    match state {
        AlertState::Pending => "PENDING",
        AlertState::Firing => "FIRING",
        AlertState::Resolved => "RESOLVED",
    }
}

/// `UpstreamDown 127.0.0.1:8084 (502)`.
fn headline(a: &Alert) -> String {
    format!("{} {} ({})", a.key.cause.name(), a.key.upstream, a.status)
}

/// `client-portal.example.com`, `a.example.com +2`, or nothing.
fn sites(a: &Alert) -> Option<String> {
    let first = a.server_names.first()?;
    Some(match a.server_names.len() {
        1 => first.clone(),
        n => format!("{first} +{}", n - 1),
    })
}

/// One alert: `[vigil] FIRING UpstreamDown 127.0.0.1:8084 (502) client-portal.example.com on
/// node-1`; several (one node's): `[vigil] FIRING 2, RESOLVED 1 on node-1: UpstreamDown ...`.
pub fn subject(alerts: &[Alert]) -> String {
    let Some(first) = alerts.first() else {
        return "[vigil] no alerts".to_owned();
    };
    let node = &first.key.node;
    if alerts.len() == 1 {
        let site = sites(first).map(|s| format!(" {s}")).unwrap_or_default();
        return format!(
            "[vigil] {} {}{site} on {node}",
            state_word(first.state),
            headline(first)
        );
    }
    let count = |s| alerts.iter().filter(|a| a.state == s).count();
    let states: Vec<String> = [AlertState::Firing, AlertState::Resolved]
        .into_iter()
        .filter(|s| count(*s) > 0)
        .map(|s| format!("{} {}", state_word(s), count(s)))
        .collect();
    let shown = 3;
    let mut names: Vec<String> = alerts.iter().take(shown).map(headline).collect();
    if alerts.len() > shown {
        names.push(format!("+{} more", alerts.len() - shown));
    }
    format!(
        "[vigil] {} on {node}: {}",
        states.join(", "),
        names.join(", ")
    )
}

/// The mail body: one section per alert.
pub fn body(alerts: &[Alert], links: &Links, now_ms: i64) -> String {
    let mut out = String::new();
    for (i, a) in alerts.iter().enumerate() {
        if alerts.len() > 1 {
            let _ = writeln!(out, "--- {}/{} ---", i + 1, alerts.len());
        }
        section(&mut out, a, links, now_ms);
        out.push('\n');
    }
    out.push_str("-- \nvigil: why nginx answers 502/504\n");
    out
}

fn section(out: &mut String, a: &Alert, links: &Links, now_ms: i64) {
    let site = sites(a).unwrap_or_else(|| "its sites".to_owned());
    let cause = a.key.cause;
    let _ = writeln!(
        out,
        "{} {} on {}",
        state_word(a.state),
        cause.name(),
        a.key.node
    );
    if a.state == AlertState::Resolved {
        let _ = writeln!(
            out,
            "{} recovered: nginx no longer answers {} for {site}.\n",
            a.key.upstream, a.status
        );
    } else {
        let _ = writeln!(
            out,
            "nginx answers {} for {site}: {}.\n",
            a.status,
            a.summary.trim_end_matches('.')
        );
    }
    let mut field = |name: &str, value: &str| {
        if !value.is_empty() {
            let _ = writeln!(out, "{:<10} {value}", format!("{name}:"));
        }
    };
    field("Upstream", &a.key.upstream);
    field("Sites", &a.server_names.join(", "));
    field("Locations", &a.locations.join(", "));
    let since = clock(a.first_seen_ms);
    match (a.state, a.resolved_at_ms) {
        (AlertState::Resolved, Some(end)) => {
            field(
                "Lasted",
                &format!(
                    "{since} to {} ({})",
                    clock(end),
                    span(end - a.first_seen_ms)
                ),
            );
        }
        _ => field(
            "Since",
            &format!("{since} ({} ago)", span(now_ms - a.first_seen_ms)),
        ),
    }
    field("Requests", &requests(a));
    let cause_label = if a.state == AlertState::Resolved {
        "Cause was"
    } else {
        "Cause"
    };
    field(
        cause_label,
        &format!("{}: {}", cause.name(), explain(cause)),
    );
    if a.state == AlertState::Resolved {
        field("Summary", &a.summary);
    }
    if !a.evidence.is_empty() {
        out.push_str("\nEvidence:\n");
        for e in &a.evidence {
            let _ = writeln!(out, "  - [{}] {}", e.kind, e.text);
        }
    }
    if a.state != AlertState::Resolved && !a.next_step.is_empty() {
        let _ = writeln!(out, "\nNext step:\n  {}", a.next_step);
    }
    let urls = links::for_alert(a, links);
    if !urls.is_empty() {
        out.push_str("\nLinks:\n");
        for (name, url) in urls {
            let _ = writeln!(out, "  {name}: {url}");
        }
    }
}

/// `1234 answered 502, 3 answered 504`.
fn requests(a: &Alert) -> String {
    let counted: Vec<String> = a
        .failed_requests
        .iter()
        .map(|(status, n)| format!("{n} answered {status}"))
        .collect();
    let text = if counted.is_empty() {
        "none counted yet".to_owned()
    } else {
        counted.join(", ")
    };
    match a.state {
        AlertState::Resolved => format!("{text} while it lasted"),
        _ => text,
    }
}

fn split_ms(ms: i64) -> (i64, u32, u32, i64, i64, i64, i64) {
    let secs = ms.div_euclid(1000);
    let (y, mo, d) = vigil_wire::time::civil_from_days(secs.div_euclid(86_400));
    let s = secs.rem_euclid(86_400);
    (
        y,
        mo,
        d,
        s / 3600,
        s % 3600 / 60,
        s % 60,
        ms.rem_euclid(1000),
    )
}

/// RFC 3339 in UTC with milliseconds, e.g. `2023-11-14T22:13:20.000Z`.
pub fn rfc3339(ms: i64) -> String {
    let (y, mo, d, h, mi, s, milli) = split_ms(ms);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{milli:03}Z")
}

/// For people: `2023-11-14 22:13:20 UTC`.
pub fn clock(ms: i64) -> String {
    let (y, mo, d, h, mi, s, _) = split_ms(ms);
    format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02} UTC")
}

/// `45s`, `6m05s`, `2h03m`, `3d04h`.
pub fn span(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        3600..86_400 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{:02}h", s / 86_400, s % 86_400 / 3600),
    }
}

#[cfg(test)]
#[path = "render_tests.rs"]
mod tests;
