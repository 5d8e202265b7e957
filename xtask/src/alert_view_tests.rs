//! The renderer reads the JSON the collector's own model serializes (vigil-collector's
//! `Alert`, the type `GET /api/v1/alerts` serves), so a change of the contract breaks here.
use vigil_collector::alerts::model as collector;

use super::*;

/// 10:14:03 UTC on 2026-11-25.
const T0: i64 = 1_795_601_643_000;

fn upstream_down(state: collector::AlertState) -> collector::Alert {
    let ev = |kind: &str, text: &str| collector::Evidence {
        kind: kind.into(),
        text: text.into(),
    };
    collector::Alert {
        key: collector::AlertKey {
            node: "web-1".into(),
            upstream: "127.0.0.1:8084".into(),
            cause: collector::Cause::UpstreamDown,
        },
        state,
        status: 502,
        server_names: vec!["client-portal.example.com".into()],
        locations: vec!["/".into()],
        failed_requests: [("502".to_owned(), 14)].into(),
        first_seen_ms: T0,
        last_seen_ms: T0 + 2_400,
        fired_at_ms: Some(T0 + 2_100),
        resolved_at_ms: (state == collector::AlertState::Resolved).then_some(T0 + 17_000),
        summary: "502 on client-portal.example.com: nothing listens on 127.0.0.1:8084 since \
                  10:14:03; python3 app.py (pid 4242) exited with status 1: \
                  ModuleNotFoundError: No module named 'flask'"
            .into(),
        evidence: vec![
            ev(
                "listener",
                "nothing listens on 127.0.0.1:8084 since 10:14:03",
            ),
            ev("stderr", "ModuleNotFoundError: No module named 'flask'"),
        ],
        next_step: "fix what its stderr says, then start python3 app.py again".into(),
    }
}

/// The body `GET /api/v1/alerts` answers with these alerts.
fn served(alerts: &[collector::Alert]) -> String {
    serde_json::json!({ "alerts": alerts }).to_string()
}

/// The list as the renderer reads it when the collector serves `alert` alone.
fn listed(alert: &collector::Alert) -> Vec<Alert> {
    parse(&served(std::slice::from_ref(alert))).unwrap()
}

#[test]
fn renders_a_firing_alert_the_collector_serves() {
    let json = served(&[upstream_down(collector::AlertState::Firing)]);
    let alerts = parse(&json).unwrap();
    assert_eq!(alerts.len(), 1);
    let shown = render(&alerts[0], &Style::plain(80));
    let expected = "\
10:14:05  FIRING  502  UpstreamDown  client-portal.example.com → 127.0.0.1:8084  (node web-1)
  502 on client-portal.example.com: nothing listens on 127.0.0.1:8084 since
  10:14:03; python3 app.py (pid 4242) exited with status 1: ModuleNotFoundError:
  No module named 'flask'
  evidence
    listener       nothing listens on 127.0.0.1:8084 since 10:14:03
    stderr         ModuleNotFoundError: No module named 'flask'
  failed requests  502 × 14 (first 10:14:03, last 10:14:05)
  next step        fix what its stderr says, then start python3 app.py again";
    assert_eq!(shown, expected, "\n{shown}");
}

#[test]
fn renders_a_resolved_alert_with_how_long_it_lasted() {
    let json = served(&[upstream_down(collector::AlertState::Resolved)]);
    let shown = render(&parse(&json).unwrap()[0], &Style::plain(100));
    assert_eq!(
        shown,
        "10:14:20  RESOLVED  502  UpstreamDown  client-portal.example.com → 127.0.0.1:8084  (node web-1)\n  \
         lasted           10:14:03 → 10:14:20 (17.0 s); failed requests: 502 × 14"
    );
}

#[test]
fn colour_only_when_asked() {
    let json = served(&[upstream_down(collector::AlertState::Firing)]);
    let alert = &parse(&json).unwrap()[0];
    let tty = Style {
        colour: true,
        width: 80,
    };
    assert!(render(alert, &tty).contains("\x1b[1;31mFIRING\x1b[0m"));
    assert!(!render(alert, &Style::plain(80)).contains('\x1b'));
}

#[test]
fn feed_reports_each_transition_once() {
    let firing = upstream_down(collector::AlertState::Firing);
    let mut pending = firing.clone();
    pending.state = collector::AlertState::Pending;
    pending.fired_at_ms = None;
    let resolved = upstream_down(collector::AlertState::Resolved);
    let mut feed = Feed::default();
    let states = |alerts: Vec<Alert>| alerts.iter().map(|a| a.state).collect::<Vec<_>>();

    assert!(feed.changes(listed(&pending)).is_empty());
    assert_eq!(
        feed.pending().len(),
        1,
        "pending is listed, not a transition"
    );
    let seen = feed.changes(listed(&firing));
    assert_eq!(states(seen), [AlertState::Firing]);
    assert!(feed.pending().is_empty());
    assert!(feed.changes(listed(&firing)).is_empty());
    let seen = feed.changes(listed(&resolved));
    assert_eq!(states(seen), [AlertState::Resolved]);
    assert!(feed.changes(listed(&resolved)).is_empty());
    // The same key firing again is a new incident: it fired at another time.
    let mut again = firing;
    again.fired_at_ms = Some(T0 + 60_000);
    let seen = feed.changes(listed(&again));
    assert_eq!(states(seen), [AlertState::Firing]);
}

#[test]
fn a_resolved_alert_never_seen_firing_is_not_news() {
    // `run` attached to a collector that resolved it before: nothing to announce.
    let mut feed = Feed::default();
    let resolved = upstream_down(collector::AlertState::Resolved);
    assert!(feed.changes(listed(&resolved)).is_empty());
}

#[test]
fn refuses_what_is_not_the_alert_list() {
    assert!(parse(r#"{"alerts":[{"key":{}}]}"#).is_err());
    let mut alert = serde_json::to_value(upstream_down(collector::AlertState::Firing)).unwrap();
    alert["state"] = "silenced".into();
    assert!(parse(&serde_json::json!({ "alerts": [alert] }).to_string()).is_err());
    assert!(parse("[]").is_err());
}

#[test]
fn a_new_incident_listed_beside_the_resolved_one_is_one_transition() {
    // The collector lists the same key twice once it fires again: the new incident (firing)
    // among the active alerts, the earlier one among the recently resolved.
    let old = upstream_down(collector::AlertState::Resolved);
    let mut new = upstream_down(collector::AlertState::Firing);
    new.first_seen_ms = T0 + 60_000;
    new.fired_at_ms = Some(T0 + 62_000);
    let both = || parse(&served(&[new.clone(), old.clone()])).unwrap();
    let mut feed = Feed::default();
    feed.changes(listed(&upstream_down(collector::AlertState::Firing)));
    feed.changes(listed(&old));
    let seen = feed.changes(both());
    assert_eq!(seen.len(), 1, "{seen:#?}");
    assert_eq!(
        (seen[0].state, seen[0].fired_at_ms),
        (AlertState::Firing, Some(T0 + 62_000))
    );
    for _ in 0..3 {
        assert!(feed.changes(both()).is_empty(), "the same lists again");
    }
    assert_eq!(feed.active().count(), 1, "the new incident fires");
}
