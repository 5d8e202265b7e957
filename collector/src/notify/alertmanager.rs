//! Alertmanager notifier: `POST {url}/api/v2/alerts`. Alertmanager resolves an alert nobody
//! re-sends, so, like Prometheus, this keeps every firing alert and re-sends them all each
//! `resend_interval` with `endsAt` four intervals ahead; a resolved alert goes out once with
//! `endsAt` = when it resolved. A failed POST is repeated by the next one, which carries the
//! same state.
use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use metrics::counter;
use tracing::warn;

use crate::alerts::model::{Alert, AlertKey, AlertState};

use super::{
    config::Links,
    http::post_json,
    payload,
    worker::{Notifier, SendError},
};

/// Firing alerts kept for re-sending; beyond it new ones are dropped (and counted).
pub const MAX_FIRING: usize = 5000;

pub struct Alertmanager {
    http: ureq::Agent,
    base: String,
    post_url: String,
    links: Links,
    resend_interval: Duration,
    firing: BTreeMap<AlertKey, Alert>,
    /// Resolved, not yet accepted by Alertmanager.
    resolved: BTreeMap<AlertKey, Alert>,
    next_resend: Option<Instant>,
}

impl Alertmanager {
    pub fn new(http: ureq::Agent, base: String, links: Links, resend_interval: Duration) -> Self {
        Alertmanager {
            http,
            post_url: format!("{base}/api/v2/alerts"),
            base,
            links,
            resend_interval,
            firing: BTreeMap::new(),
            resolved: BTreeMap::new(),
            next_resend: None,
        }
    }

    fn fold(&mut self, a: &Alert) {
        match a.state {
            AlertState::Firing => {
                if self.firing.len() >= MAX_FIRING && !self.firing.contains_key(&a.key) {
                    counter!("vigil_notifications_dropped_total", "notifier" => "alertmanager")
                        .increment(1);
                    warn!(alert = ?a.key, limit = MAX_FIRING, "too many firing alerts to re-send; this one is not sent to Alertmanager");
                    return;
                }
                self.resolved.remove(&a.key);
                self.firing.insert(a.key.clone(), a.clone());
            }
            AlertState::Resolved => {
                self.firing.remove(&a.key);
                self.resolved.insert(a.key.clone(), a.clone());
            }
            AlertState::Pending => {}
        }
    }

    fn now_ms() -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64)
    }
}

impl Notifier for Alertmanager {
    fn kind(&self) -> &'static str {
        "alertmanager"
    }

    fn target(&self) -> &str {
        &self.base
    }

    /// Every transition is folded into the state, and each POST carries the whole state.
    fn split(&self, alerts: Vec<Alert>) -> Vec<Vec<Alert>> {
        vec![alerts]
    }

    fn send(&mut self, alerts: &[Alert]) -> Result<(), SendError> {
        alerts.iter().for_each(|a| self.fold(a));
        if self.firing.is_empty() && self.resolved.is_empty() {
            self.next_resend = None;
            return Ok(());
        }
        // Also when this POST fails: the next re-send repeats it at the latest.
        self.next_resend = Some(Instant::now() + self.resend_interval);
        let until = Self::now_ms() + 4 * self.resend_interval.as_millis() as i64;
        let body: Vec<payload::PostableAlert> = self
            .firing
            .values()
            .chain(self.resolved.values())
            .map(|a| payload::postable(a, until, &self.links))
            .collect();
        let body = serde_json::to_vec(&body).map_err(|e| SendError::Permanent(e.to_string()))?;
        let sent = post_json(&self.http, &self.post_url, &body);
        if matches!(sent, Ok(()) | Err(SendError::Permanent(_))) {
            // Accepted, or refused for good: resolved alerts are not sent again.
            self.resolved.clear();
            if self.firing.is_empty() {
                self.next_resend = None;
            }
        }
        sent
    }

    fn resend_due(&self) -> Option<Instant> {
        self.next_resend
    }
}
