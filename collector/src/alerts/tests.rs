//! The engine end to end on batches as agents send them: timing from the first failing
//! request, restarts, crash loops, silent nodes, repeats and the state file.
use std::sync::{Arc, Mutex};

use vigil_wire::{Batch, ConnectResult};

use super::{
    lifecycle::{Notice, Outgoing},
    model::{Alert, AlertState, Cause},
    testing::*,
    AlertEngine, AlertSink, AlertsConfig, NODE_SILENT_MS,
};

#[derive(Default)]
struct Recorded(Mutex<Vec<(&'static str, Alert)>>);

impl AlertSink for Recorded {
    fn transition(&self, alert: &Alert) {
        self.0.lock().unwrap().push(("transition", alert.clone()));
    }
    fn restored(&self, alert: &Alert) {
        self.0.lock().unwrap().push(("restored", alert.clone()));
    }
}

impl Recorded {
    fn states(&self) -> Vec<(&'static str, AlertState)> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .map(|(k, a)| (*k, a.state))
            .collect()
    }
}

fn engine(config: AlertsConfig) -> (AlertEngine, Arc<Recorded>) {
    let engine = AlertEngine::new(config, None).unwrap();
    let sink = Arc::new(Recorded::default());
    engine.add_sink(sink.clone());
    (engine, sink)
}

/// One batch per second from `from_s` to `to_s` (exclusive), a request every 100 ms:
/// refused while `down(ms)` says so, answered otherwise. Each carries the listener state.
fn traffic(from_s: i64, to_s: i64, down: impl Fn(i64) -> bool) -> Vec<Batch> {
    (from_s..to_s)
        .map(|s| {
            let mut b = batch("web-1", T0 + (s + 1) * 1000);
            for i in 0..10 {
                let at = s * 1000 + i * 100;
                if down(at) {
                    b.connections
                        .push(conn(UP, ConnectResult::Refused, T0 + at));
                    b.nginx_errors.push(refused_line(UP, T0 + at));
                } else {
                    b.connections.push(answered(UP, T0 + at));
                }
            }
            b.upstreams
                .push(listener(UP, !down(s * 1000 + 900), 0, 128));
            b
        })
        .collect()
}

fn feed(engine: &AlertEngine, batches: &[Batch]) {
    for b in batches {
        engine.observe_at(b, b.created_unix_ms);
    }
}

#[test]
fn a_502_storm_fires_within_3_s_of_the_first_failing_request() {
    let (engine, sink) = engine(AlertsConfig::default());
    let mut fired_with = None;
    for b in traffic(0, 5, |_| true) {
        engine.observe_at(&b, b.created_unix_ms);
        if fired_with.is_none() && !sink.states().is_empty() {
            fired_with = Some(b.created_unix_ms - T0);
        }
    }
    // The first failing request was at T0; the batch that fired it was sealed at T0 + 2 s.
    assert_eq!(fired_with, Some(2000));
    assert_eq!(sink.states(), [("transition", AlertState::Firing)]);
    let alerts = engine.alerts();
    let a = &alerts[0];
    assert_eq!(
        (a.key.cause, a.key.upstream.as_str(), a.status),
        (Cause::UpstreamDown, UP, 502)
    );
    assert!(a.fired_at_ms.unwrap() - T0 <= 3000);
    assert_eq!(
        a.failed_requests["502"], 50,
        "each request once, seen by probes and error.log"
    );
}

#[test]
fn a_restart_that_heals_within_for_raises_nothing() {
    let (engine, sink) = engine(AlertsConfig::default());
    feed(&engine, &traffic(0, 20, |ms| ms < 1000));
    assert!(sink.states().is_empty(), "{:?}", sink.states());
    assert!(engine.alerts().is_empty(), "the pending alert was dropped");
}

#[test]
fn a_crash_loop_is_one_alert_that_resolves_once_it_serves() {
    let (engine, sink) = engine(AlertsConfig::default());
    // Down 2 s of every 8, three times, then serving for good.
    feed(
        &engine,
        &traffic(0, 40, |ms| ms < 24_000 && ms % 8000 < 2000),
    );
    assert_eq!(
        sink.states(),
        [
            ("transition", AlertState::Firing),
            ("transition", AlertState::Resolved)
        ]
    );
    let resolved = &engine.alerts()[0];
    assert_eq!(resolved.state, AlertState::Resolved);
    // Resolved `resolve_after` after the last failing request (17.9 s), at a batch boundary.
    let at = resolved.resolved_at_ms.unwrap() - T0;
    assert!((27_900..=29_000).contains(&at), "{at}");
}

#[test]
fn traffic_that_stops_resolves_the_alert() {
    let (engine, sink) = engine(AlertsConfig::default());
    feed(&engine, &traffic(0, 3, |_| true));
    // No requests any more: only the agent's samples arrive.
    let quiet: Vec<Batch> = (3..20)
        .map(|s| {
            let mut b = batch("web-1", T0 + (s + 1) * 1000);
            b.upstreams.push(listener(UP, false, 0, 0));
            b
        })
        .collect();
    feed(&engine, &quiet);
    assert_eq!(
        sink.states(),
        [
            ("transition", AlertState::Firing),
            ("transition", AlertState::Resolved)
        ]
    );
}

#[test]
fn a_node_that_goes_silent_has_its_alerts_resolved_by_the_timer() {
    let (engine, sink) = engine(AlertsConfig::default());
    let batches = traffic(0, 3, |_| true);
    feed(&engine, &batches);
    let last_wall = batches.last().unwrap().created_unix_ms;
    engine.tick_at(last_wall + NODE_SILENT_MS - 1);
    assert_eq!(sink.states().len(), 1);
    engine.tick_at(last_wall + NODE_SILENT_MS);
    assert_eq!(sink.states()[1], ("transition", AlertState::Resolved));
    let a = &engine.alerts()[0];
    assert!(a
        .evidence
        .last()
        .unwrap()
        .text
        .starts_with("no data from the node's agent since"));
}

#[test]
fn firing_alerts_are_repeated_every_repeat_interval() {
    let config = AlertsConfig {
        repeat_interval: std::time::Duration::from_secs(60),
        ..Default::default()
    };
    let (engine, sink) = engine(config);
    let batches = traffic(0, 3, |_| true);
    feed(&engine, &batches);
    let fired_wall = T0 + 2000;
    engine.tick_at(fired_wall + 59_999);
    assert_eq!(sink.states().len(), 1);
    engine.tick_at(fired_wall + 60_000);
    assert_eq!(sink.states()[1], ("transition", AlertState::Firing));
}

#[test]
fn a_firing_alert_survives_a_restart_and_is_not_announced_again() {
    let dir = std::env::temp_dir().join(format!("vigil-alert-state-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let config = AlertsConfig {
        state_dir: Some(dir.clone()),
        ..Default::default()
    };
    let (first, _) = engine(config.clone());
    feed(&first, &traffic(0, 3, |_| true));
    let before = first.alerts();
    assert_eq!(before[0].state, AlertState::Firing);
    assert!(dir.join("alerts.json").exists(), "saved when it fired");
    first.shutdown();

    let (second, sink) = engine(config.clone());
    assert_eq!(second.alerts(), before);
    assert_eq!(sink.states(), [("restored", AlertState::Firing)]);
    // The incident goes on, then ends: only the resolution is new.
    feed(&second, &traffic(3, 20, |ms| ms < 6000));
    assert_eq!(
        sink.states(),
        [
            ("restored", AlertState::Firing),
            ("transition", AlertState::Resolved)
        ]
    );
    let a = &second.alerts()[0];
    assert_eq!(
        a.failed_requests["502"], 60,
        "30 before the restart, 30 after"
    );
    assert_eq!(a.first_seen_ms, T0);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn an_unreadable_state_file_is_set_aside() {
    let dir = std::env::temp_dir().join(format!("vigil-alert-corrupt-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("alerts.json"), "{not json").unwrap();
    let config = AlertsConfig {
        state_dir: Some(dir.clone()),
        ..Default::default()
    };
    let (engine, _) = engine(config);
    assert!(engine.alerts().is_empty());
    assert_eq!(
        std::fs::read_to_string(dir.join("alerts.json.corrupt")).unwrap(),
        "{not json"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn transitions_go_to_loki_as_alert_lines() {
    let (engine, sink) = engine(AlertsConfig::default());
    feed(&engine, &traffic(0, 3, |_| true));
    let alert = sink.0.lock().unwrap()[0].1.clone();
    let entry = super::publish::log_entry(&Outgoing {
        notice: Notice::Fired,
        alert,
    })
    .unwrap();
    assert_eq!(
        (entry.source, entry.level, entry.node.as_str()),
        ("alert", "error", "web-1")
    );
    assert_eq!(entry.unix_ns, (T0 + 2000) * 1_000_000);
    assert!(
        entry.line.starts_with("alert=UpstreamDown state=firing upstream=127.0.0.1:8084 status=502 failed_requests=20 summary=\"502 on client-portal.example.com: nothing listens on 127.0.0.1:8084"),
        "{}",
        entry.line
    );
    let keys: Vec<&str> = entry.metadata.iter().map(|(k, _)| *k).collect();
    assert_eq!(keys, ["alertname", "upstream", "status"]);
}
