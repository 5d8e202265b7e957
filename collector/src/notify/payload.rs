//! The JSON notifiers send: alerts for Alertmanager's `POST /api/v2/alerts`, and the
//! Alertmanager webhook message (version 4) so receivers written for Alertmanager accept ours.
use std::collections::BTreeMap;

use serde::Serialize;

use crate::alerts::model::{Alert, AlertState};

use super::{config::Links, links, render::rfc3339};

pub type LabelSet = BTreeMap<String, String>;

/// Go's zero time: what Alertmanager's webhook shows as `endsAt` of an alert still firing.
pub const UNSET_TIME: &str = "0001-01-01T00:00:00Z";

/// Identity of the alert: what Alertmanager's fingerprint and dedup are computed from, so
/// nothing here may change while it fires.
pub fn labels(a: &Alert) -> LabelSet {
    [
        ("alertname", a.key.cause.name().to_owned()),
        ("node", a.key.node.clone()),
        ("upstream", a.key.upstream.clone()),
        ("status_code", a.status.to_string()),
        ("severity", "critical".to_owned()),
        ("source", "vigil".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// What may change while it fires; empty values are left out.
pub fn annotations(a: &Alert) -> LabelSet {
    let evidence: Vec<String> = a
        .evidence
        .iter()
        .map(|e| format!("{}: {}", e.kind, e.text))
        .collect();
    let requests: Vec<String> = a
        .failed_requests
        .iter()
        .map(|(s, n)| format!("{s}={n}"))
        .collect();
    [
        ("summary", a.summary.clone()),
        ("description", evidence.join("\n")),
        ("next_step", a.next_step.clone()),
        ("server_names", a.server_names.join(", ")),
        ("locations", a.locations.join(", ")),
        ("failed_requests", requests.join(", ")),
        ("first_seen", rfc3339(a.first_seen_ms)),
    ]
    .into_iter()
    .filter(|(_, v)| !v.is_empty())
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

fn starts_at(a: &Alert) -> String {
    rfc3339(a.fired_at_ms.unwrap_or(a.first_seen_ms))
}

/// One element of the `POST /api/v2/alerts` array.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PostableAlert {
    pub labels: LabelSet,
    pub annotations: LabelSet,
    pub starts_at: String,
    pub ends_at: String,
    #[serde(rename = "generatorURL", skip_serializing_if = "Option::is_none")]
    pub generator_url: Option<String>,
}

/// A firing alert ends at `firing_until_ms` unless re-sent; a resolved one when it resolved.
pub fn postable(a: &Alert, firing_until_ms: i64, links: &Links) -> PostableAlert {
    let ends = match a.state {
        AlertState::Resolved => a.resolved_at_ms.unwrap_or(a.last_seen_ms),
        _ => firing_until_ms,
    };
    PostableAlert {
        labels: labels(a),
        annotations: annotations(a),
        starts_at: starts_at(a),
        ends_at: rfc3339(ends),
        generator_url: links::generator(a, links),
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookAlert {
    pub status: &'static str,
    pub labels: LabelSet,
    pub annotations: LabelSet,
    pub starts_at: String,
    pub ends_at: String,
    #[serde(rename = "generatorURL")]
    pub generator_url: String,
    pub fingerprint: String,
}

/// Alertmanager's webhook message, version 4.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookMessage {
    pub version: &'static str,
    pub group_key: String,
    pub truncated_alerts: u32,
    pub status: &'static str,
    pub receiver: &'static str,
    pub group_labels: LabelSet,
    pub common_labels: LabelSet,
    pub common_annotations: LabelSet,
    #[serde(rename = "externalURL")]
    pub external_url: String,
    pub alerts: Vec<WebhookAlert>,
}

fn status(state: AlertState) -> &'static str {
    match state {
        AlertState::Resolved => "resolved",
        _ => "firing",
    }
}

/// The pairs every set has in common.
fn common(sets: &[LabelSet]) -> LabelSet {
    let Some((first, rest)) = sets.split_first() else {
        return LabelSet::new();
    };
    first
        .iter()
        .filter(|(k, v)| rest.iter().all(|s| s.get(*k) == Some(*v)))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// One node's transitions as a webhook message grouped by `node`, like a route with
/// `group_by: [node]`.
pub fn webhook(alerts: &[Alert], links: &Links) -> WebhookMessage {
    let node = alerts
        .first()
        .map(|a| a.key.node.clone())
        .unwrap_or_default();
    let items: Vec<WebhookAlert> = alerts
        .iter()
        .map(|a| {
            let labels = labels(a);
            WebhookAlert {
                status: status(a.state),
                fingerprint: fingerprint(&labels),
                labels,
                annotations: annotations(a),
                starts_at: starts_at(a),
                ends_at: match (a.state, a.resolved_at_ms) {
                    (AlertState::Resolved, Some(ms)) => rfc3339(ms),
                    _ => UNSET_TIME.to_owned(),
                },
                generator_url: links::generator(a, links).unwrap_or_default(),
            }
        })
        .collect();
    let label_sets: Vec<LabelSet> = items.iter().map(|i| i.labels.clone()).collect();
    let annotation_sets: Vec<LabelSet> = items.iter().map(|i| i.annotations.clone()).collect();
    let any_firing = items.iter().any(|i| i.status == "firing");
    WebhookMessage {
        version: "4",
        group_key: format!("{{}}:{{node={:?}}}", node),
        truncated_alerts: 0,
        status: if any_firing { "firing" } else { "resolved" },
        receiver: "vigil",
        group_labels: LabelSet::from([("node".to_owned(), node)]),
        common_labels: common(&label_sets),
        common_annotations: common(&annotation_sets),
        external_url: links.external.clone().unwrap_or_default(),
        alerts: items,
    }
}

/// Alertmanager's fingerprint of a label set (Prometheus `model.LabelSet.Fingerprint`):
/// FNV-1a 64 over the sorted names and values, each followed by the 0xff separator.
pub fn fingerprint(labels: &LabelSet) -> String {
    const OFFSET: u64 = 14_695_981_039_346_656_037;
    const PRIME: u64 = 1_099_511_628_211;
    let mut hash = OFFSET;
    let mut add = |bytes: &[u8]| {
        for &b in bytes {
            hash ^= u64::from(b);
            hash = hash.wrapping_mul(PRIME);
        }
    };
    for (name, value) in labels {
        add(name.as_bytes());
        add(&[0xff]);
        add(value.as_bytes());
        add(&[0xff]);
    }
    format!("{hash:016x}")
}
