use std::collections::BTreeMap;

use super::*;
use crate::alerts::model::{AlertKey, Evidence};
use crate::notify::payload;

/// 2023-11-14 22:13:20 UTC.
const T0: i64 = 1_700_000_000_000;

pub(crate) fn down_alert() -> Alert {
    Alert {
        key: AlertKey {
            node: "node-1".into(),
            upstream: "127.0.0.1:8084".into(),
            cause: Cause::UpstreamDown,
        },
        state: AlertState::Firing,
        status: 502,
        server_names: vec!["client-portal.example.com".into()],
        locations: vec!["/".into()],
        failed_requests: BTreeMap::from([("502".into(), 1234)]),
        first_seen_ms: T0,
        last_seen_ms: T0 + 60_000,
        fired_at_ms: Some(T0 + 30_000),
        resolved_at_ms: None,
        summary: "nothing listens on 127.0.0.1:8084 since 22:13:20".into(),
        evidence: vec![
            Evidence {
                kind: "listener".into(),
                text: "nothing listens on 127.0.0.1:8084 since 22:13:20".into(),
            },
            Evidence {
                kind: "exit".into(),
                text: "python3 app.py (pid 4242, unit client-portal.service) exited with status 1"
                    .into(),
            },
            Evidence {
                kind: "stderr".into(),
                text: "ModuleNotFoundError: No module named 'flask'".into(),
            },
        ],
        next_step: "systemctl restart client-portal.service".into(),
    }
}

fn resolved(mut a: Alert) -> Alert {
    a.state = AlertState::Resolved;
    a.resolved_at_ms = Some(T0 + 365_000);
    a
}

#[test]
fn utc_times() {
    assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
    assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z");
    assert_eq!(rfc3339(T0 + 7), "2023-11-14T22:13:20.007Z");
    assert_eq!(rfc3339(-1000), "1969-12-31T23:59:59.000Z");
    assert_eq!(rfc3339(4_107_542_400_000), "2100-03-01T00:00:00.000Z");
    assert_eq!(clock(T0), "2023-11-14 22:13:20 UTC");
    assert_eq!(span(45_000), "45s");
    assert_eq!(span(365_000), "6m05s");
    assert_eq!(span(7_380_000), "2h03m");
    assert_eq!(span(-5), "0s");
}

#[test]
fn subject_names_state_cause_upstream_site_and_node() {
    let a = down_alert();
    assert_eq!(
        subject(std::slice::from_ref(&a)),
        "[vigil] FIRING UpstreamDown 127.0.0.1:8084 (502) client-portal.example.com on node-1"
    );
    assert_eq!(
        subject(&[resolved(a.clone())]),
        "[vigil] RESOLVED UpstreamDown 127.0.0.1:8084 (502) client-portal.example.com on node-1"
    );
    let mut slow = a.clone();
    slow.key.cause = Cause::UpstreamSlow;
    slow.key.upstream = "127.0.0.1:9000".into();
    slow.status = 504;
    assert_eq!(
        subject(&[a.clone(), slow, resolved(a)]),
        "[vigil] FIRING 2, RESOLVED 1 on node-1: UpstreamDown 127.0.0.1:8084 (502), UpstreamSlow 127.0.0.1:9000 (504), UpstreamDown 127.0.0.1:8084 (502)"
    );
}

#[test]
fn firing_body_says_what_since_when_how_many_why_and_what_next() {
    let links = Links {
        prometheus: Some("http://prom:9090".into()),
        grafana: Some("http://grafana:3000".into()),
        external: None,
    };
    let body = body(&[down_alert()], &links, T0 + 300_000);
    for want in [
        "FIRING UpstreamDown on node-1",
        "nginx answers 502 for client-portal.example.com: nothing listens on 127.0.0.1:8084",
        "Upstream:  127.0.0.1:8084",
        "Since:     2023-11-14 22:13:20 UTC (5m00s ago)",
        "Requests:  1234 answered 502",
        "Cause:     UpstreamDown: connects are refused",
        "  - [stderr] ModuleNotFoundError: No module named 'flask'",
        "  - [exit] python3 app.py (pid 4242, unit client-portal.service) exited with status 1",
        "Next step:\n  systemctl restart client-portal.service",
        "  Prometheus: http://prom:9090/graph?g0.expr=sum+by+%28result%29+%28rate%28vigil_upstream_connects_total%7Bnode%3D%22node-1%22%2Cupstream%3D%22127.0.0.1%3A8084%22%7D%5B5m%5D%29%29&g0.tab=0",
        "  Grafana: http://grafana:3000/explore?left=",
    ] {
        assert!(body.contains(want), "missing {want:?} in:\n{body}");
    }
    // A phone screen: no line an SRE must scroll sideways, links aside.
    assert!(
        body.lines()
            .filter(|l| !l.contains("://"))
            .all(|l| l.chars().count() <= 120),
        "{body}"
    );
}

#[test]
fn resolved_body_says_how_long_it_lasted_and_drops_the_next_step() {
    let body = body(&[resolved(down_alert())], &Links::default(), T0 + 400_000);
    assert!(body.contains("RESOLVED UpstreamDown on node-1"), "{body}");
    assert!(
        body.contains("127.0.0.1:8084 recovered: nginx no longer answers 502"),
        "{body}"
    );
    assert!(
        body.contains("Lasted:    2023-11-14 22:13:20 UTC to 2023-11-14 22:19:25 UTC (6m05s)"),
        "{body}"
    );
    assert!(body.contains("1234 answered 502 while it lasted"), "{body}");
    assert!(!body.contains("Next step"), "{body}");
    assert!(!body.contains("Links:"), "no links configured: {body}");
}

#[test]
fn promql_label_values_are_escaped() {
    let mut a = down_alert();
    a.key.upstream = "unix:/run/a \"b\"\\c.sock".into();
    let q = links::queries(&a);
    assert!(
        q[0].contains(r#"upstream="unix:/run/a \"b\"\\c.sock""#),
        "{}",
        q[0]
    );
    for cause in Cause::ALL {
        a.key.cause = cause;
        assert_eq!(links::queries(&a).len(), 2);
    }
}

#[test]
fn alertmanager_alert_labels_annotations_and_times() {
    let links = Links {
        prometheus: Some("http://prom:9090".into()),
        ..Links::default()
    };
    let firing = payload::postable(&down_alert(), T0 + 240_000, &links);
    let json = serde_json::to_value(&firing).unwrap();
    assert_eq!(json["labels"]["alertname"], "UpstreamDown");
    assert_eq!(json["labels"]["node"], "node-1");
    assert_eq!(json["labels"]["upstream"], "127.0.0.1:8084");
    assert_eq!(json["labels"]["status_code"], "502");
    assert_eq!(json["startsAt"], "2023-11-14T22:13:50.000Z");
    assert_eq!(json["endsAt"], "2023-11-14T22:17:20.000Z");
    assert!(json["generatorURL"]
        .as_str()
        .unwrap()
        .starts_with("http://prom:9090/graph?g0.expr="));
    let description = json["annotations"]["description"].as_str().unwrap();
    assert!(
        description.contains("stderr: ModuleNotFoundError"),
        "{description}"
    );
    assert_eq!(
        json["annotations"]["next_step"],
        "systemctl restart client-portal.service"
    );
    assert_eq!(
        json["annotations"]["server_names"],
        "client-portal.example.com"
    );
    let done = serde_json::to_value(payload::postable(
        &resolved(down_alert()),
        T0 + 999_000,
        &Links::default(),
    ))
    .unwrap();
    assert_eq!(done["endsAt"], "2023-11-14T22:19:25.000Z");
    assert!(
        done.get("generatorURL").is_none(),
        "no URL configured: field left out"
    );
}

#[test]
fn webhook_message_is_alertmanagers_version_4() {
    let mut other = down_alert();
    other.key.upstream = "127.0.0.1:9000".into();
    let message = payload::webhook(&[down_alert(), resolved(other)], &Links::default());
    let json = serde_json::to_value(&message).unwrap();
    assert_eq!(json["version"], "4");
    assert_eq!(json["status"], "firing");
    assert_eq!(json["groupKey"], "{}:{node=\"node-1\"}");
    assert_eq!(json["groupLabels"], serde_json::json!({ "node": "node-1" }));
    assert_eq!(json["commonLabels"]["alertname"], "UpstreamDown");
    assert!(
        json["commonLabels"].get("upstream").is_none(),
        "upstreams differ"
    );
    assert_eq!(json["alerts"][0]["status"], "firing");
    assert_eq!(json["alerts"][0]["endsAt"], payload::UNSET_TIME);
    assert_eq!(json["alerts"][1]["status"], "resolved");
    assert_eq!(json["alerts"][1]["endsAt"], "2023-11-14T22:19:25.000Z");
    assert_eq!(json["alerts"][0]["fingerprint"].as_str().unwrap().len(), 16);
    let message = payload::webhook(&[resolved(down_alert())], &Links::default());
    assert_eq!(message.status, "resolved");
}

#[test]
fn fingerprint_is_prometheus_label_set_signature() {
    // Values from prometheus/common model's signature tests.
    assert_eq!(
        payload::fingerprint(&payload::LabelSet::new()),
        format!("{:016x}", 14_695_981_039_346_656_037_u64)
    );
    let set = payload::LabelSet::from([
        ("name".to_owned(), "garland, briggs".to_owned()),
        ("fear".to_owned(), "love is not enough".to_owned()),
    ]);
    assert_eq!(
        payload::fingerprint(&set),
        format!("{:016x}", 5_799_056_148_416_392_346_u64)
    );
}
