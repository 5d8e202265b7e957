//! Each transition of the lifecycle, on findings made by hand.
use std::collections::BTreeMap;

use super::*;
use crate::alerts::{
    rules::Verdict,
    testing::{T0, UP},
    view::Episode,
};

const T: Timing = Timing {
    for_ms: 1500,
    resolve_after_ms: 10_000,
    repeat_ms: 60_000,
};

fn finding(cause: Cause, first_ms: i64, last_ms: i64, failed: u64) -> Finding {
    Finding {
        upstream: UP.into(),
        cause,
        episode: Episode {
            first_ms,
            last_ms,
            by_status: BTreeMap::from([(cause.status(), failed)]),
            probe_count: failed,
            log_count: failed,
        },
        verdict: Verdict {
            summary: format!("{} summary", cause.name()),
            evidence: vec![],
            next_step: "do it".into(),
        },
        server_names: vec!["shop.example.com".into()],
        locations: vec!["/".into()],
    }
}

fn down(first: i64, last: i64, n: u64) -> Vec<Finding> {
    vec![finding(Cause::UpstreamDown, T0 + first, T0 + last, n)]
}

fn notices(out: &[Outgoing]) -> Vec<(Notice, AlertState)> {
    out.iter().map(|o| (o.notice, o.alert.state)).collect()
}

#[test]
fn pending_then_firing_once_failures_last_for() {
    let mut book = Book::default();
    let out = book.apply("n1", &down(0, 1000, 3), T0 + 1000, 0, &T);
    assert!(out.is_empty(), "pending is not announced");
    assert_eq!(book.list()[0].state, AlertState::Pending);
    let out = book.apply("n1", &down(0, 1600, 5), T0 + 2000, 0, &T);
    assert_eq!(notices(&out), [(Notice::Fired, AlertState::Firing)]);
    let a = &out[0].alert;
    assert_eq!(a.fired_at_ms, Some(T0 + 2000));
    assert_eq!((a.first_seen_ms, a.last_seen_ms), (T0, T0 + 1600));
    assert_eq!(a.failed_requests, BTreeMap::from([("502".into(), 5)]));
    assert_eq!(
        (a.status, a.server_names.as_slice()),
        (502, &["shop.example.com".to_owned()][..])
    );
    let out = book.apply("n1", &down(0, 2600, 9), T0 + 3000, 0, &T);
    assert!(out.is_empty(), "firing once: an update is not a transition");
    assert_eq!(book.list()[0].failed_requests["502"], 9);
    // No failure since: what came later does not rewrite what decided the cause.
    let mut later = down(0, 2600, 9);
    later[0].verdict.summary = "the listener is back".into();
    book.apply("n1", &later, T0 + 4000, 0, &T);
    assert_eq!(book.list()[0].summary, "UpstreamDown summary");
}

#[test]
fn a_restart_that_heals_within_for_never_fires() {
    let mut book = Book::default();
    // 502s for 1.2 s, then the upstream serves again: its finding goes away.
    assert!(book
        .apply("n1", &down(0, 1200, 12), T0 + 1200, 0, &T)
        .is_empty());
    assert!(book.apply("n1", &[], T0 + 2500, 0, &T).is_empty());
    assert!(
        book.list().is_empty(),
        "a pending alert without its finding is dropped silently"
    );
}

#[test]
fn traffic_that_stops_does_not_fire_and_a_firing_alert_resolves() {
    let mut book = Book::default();
    // Failures for 1 s, then no more requests at all: the run stays live but never spans `for`.
    book.apply("n1", &down(0, 1000, 4), T0 + 1000, 0, &T);
    assert!(book
        .apply("n1", &down(0, 1000, 4), T0 + 8000, 0, &T)
        .is_empty());
    assert!(book.apply("n1", &[], T0 + 11_000, 0, &T).is_empty());
    assert!(book.list().is_empty());

    let mut book = Book::default();
    book.apply("n1", &down(0, 2000, 20), T0 + 2000, 0, &T);
    assert_eq!(book.list()[0].state, AlertState::Firing);
    assert!(
        book.apply("n1", &[], T0 + 11_999, 0, &T).is_empty(),
        "hysteresis"
    );
    let out = book.apply("n1", &[], T0 + 12_000, 0, &T);
    assert_eq!(notices(&out), [(Notice::Resolved, AlertState::Resolved)]);
    assert_eq!(out[0].alert.resolved_at_ms, Some(T0 + 12_000));
    assert_eq!(
        book.list()[0].state,
        AlertState::Resolved,
        "kept in the recent list"
    );
    assert!(book.active.is_empty());
}

#[test]
fn a_crash_loop_stays_one_firing_alert() {
    let mut book = Book::default();
    let mut fired = 0;
    // Down 2 s, up 6 s, down again...: gaps shorter than resolve_after are one incident.
    for cycle in 0..4 {
        let start = cycle * 8000;
        for now in [start + 1000, start + 2000, start + 5000, start + 7999] {
            let findings = down(0, (start + 2000).min(now), 10);
            let out = book.apply("n1", &findings, T0 + now, 0, &T);
            fired += out.iter().filter(|o| o.notice == Notice::Fired).count();
            assert!(
                out.iter().all(|o| o.notice != Notice::Resolved),
                "flapped at {now}"
            );
        }
    }
    assert_eq!(fired, 1);
}

#[test]
fn one_alert_per_node_upstream_and_cause() {
    let mut book = Book::default();
    let both = vec![
        finding(Cause::UpstreamSlow, T0, T0 + 2000, 3),
        finding(Cause::UpstreamReset, T0, T0 + 2000, 1),
    ];
    book.apply("n1", &both, T0 + 2000, 0, &T);
    book.apply("n1", &both, T0 + 2500, 0, &T);
    book.apply("n2", &both[..1], T0 + 2000, 0, &T);
    let keys: Vec<(String, Cause)> = book
        .list()
        .iter()
        .map(|a| (a.key.node.clone(), a.key.cause))
        .collect();
    assert_eq!(keys.len(), 3, "{keys:?}");
    // A node's evaluation never touches another node's alerts.
    book.apply("n2", &[], T0 + 60_000, 0, &T);
    assert_eq!(book.firing().filter(|a| a.key.node == "n1").count(), 2);
}

#[test]
fn firing_alerts_repeat_on_our_clock() {
    let mut book = Book::default();
    book.apply("n1", &down(0, 2000, 5), T0 + 2000, 1_000, &T);
    assert!(book.repeats(60_999, &T).is_empty());
    let out = book.repeats(61_000, &T);
    assert_eq!(notices(&out), [(Notice::Repeat, AlertState::Firing)]);
    assert!(book.repeats(61_500, &T).is_empty());
    let never = Timing { repeat_ms: 0, ..T };
    assert!(book.repeats(10_000_000, &never).is_empty());
}

#[test]
fn a_silent_node_ends_its_alerts() {
    let mut book = Book::default();
    book.apply("n1", &down(0, 2000, 5), T0 + 2000, 0, &T);
    book.apply(
        "n1",
        &[finding(Cause::UpstreamReset, T0, T0 + 100, 1)],
        T0 + 2000,
        0,
        &T,
    );
    let why = crate::alerts::wording::evidence("agent", "no data");
    let out = book.end_node("n1", T0 + 3000, &why);
    assert_eq!(
        notices(&out),
        [(Notice::Resolved, AlertState::Resolved)],
        "pending dropped"
    );
    assert_eq!(out[0].alert.evidence.last(), Some(&why));
    assert!(book.active.is_empty());
}

#[test]
fn restored_alerts_keep_their_counts_and_state() {
    let mut book = Book::default();
    book.apply("n1", &down(0, 2000, 40), T0 + 2000, 0, &T);
    let saved = book.saved();
    let text = serde_json::to_string(&saved).unwrap();
    let mut again = Book::restore(serde_json::from_str(&text).unwrap());
    assert_eq!(again.list(), book.list());
    // After the restart the evidence starts empty: new failures add to the 40.
    let out = again.apply("n1", &down(5000, 6000, 3), T0 + 6000, 0, &T);
    assert!(out.is_empty(), "already firing: not announced again");
    let a = &again.list()[0];
    assert_eq!(
        (a.state, a.failed_requests["502"], a.first_seen_ms),
        (AlertState::Firing, 43, T0)
    );
}
