//! Webhook notifier: one node's transitions as one Alertmanager-webhook message (version 4)
//! POSTed as JSON, so receivers written for Alertmanager take vigil's alerts as they are.
use crate::alerts::model::Alert;

use super::{
    config::Links,
    http::post_json,
    payload,
    worker::{Notifier, SendError},
};

pub struct Webhook {
    http: ureq::Agent,
    url: String,
    links: Links,
}

impl Webhook {
    pub fn new(http: ureq::Agent, url: String, links: Links) -> Self {
        Webhook { http, url, links }
    }
}

impl Notifier for Webhook {
    fn kind(&self) -> &'static str {
        "webhook"
    }

    fn target(&self) -> &str {
        &self.url
    }

    fn send(&mut self, alerts: &[Alert]) -> Result<(), SendError> {
        if alerts.is_empty() {
            return Ok(());
        }
        let message = payload::webhook(alerts, &self.links);
        let body = serde_json::to_vec(&message).map_err(|e| SendError::Permanent(e.to_string()))?;
        post_json(&self.http, &self.url, &body)
    }
}
