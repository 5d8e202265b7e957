//! Notifiers: alert transitions out to people and systems — `email` (SMTP), `alertmanager`
//! (`POST /api/v2/alerts`, re-sent while firing) and `webhook` (Alertmanager's webhook JSON).
//! `Notifiers::transition` is all the alert engine calls: it never waits on a receiver. Each
//! notifier has a bounded queue and a thread of its own (`worker`) that groups a node's
//! transitions of the next moments, delivers and retries with backoff. `render` writes the
//! mail, `payload` the JSON, `links` the Prometheus/Grafana URLs; `config` reads `[notify]`.
pub mod alertmanager;
pub mod config;
pub mod email;
mod email_config;
mod http;
pub mod links;
pub mod payload;
pub mod render;
pub mod webhook;
mod worker;

use tracing::info;

pub use config::{NotifyConfig, NotifyConfigError, NotifyFileConfig, NotifyOverrides};

use crate::alerts::model::{Alert, AlertState};

use self::{
    alertmanager::Alertmanager,
    email::Email,
    webhook::Webhook,
    worker::{Worker, WorkerSettings},
};

#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("email notifier for {target}: {source}")]
    Email {
        target: String,
        source: lettre::transport::smtp::Error,
    },
    #[error("cannot start the {kind} notifier thread: {source}")]
    Thread {
        kind: &'static str,
        source: std::io::Error,
    },
}

/// The running notifiers; dropping it stops them (see `shutdown`).
pub struct Notifiers {
    workers: Vec<Worker>,
}

impl Notifiers {
    /// Starts one thread per configured notifier (none: `transition` does nothing).
    pub fn start(config: &NotifyConfig) -> Result<Notifiers, NotifyError> {
        let settings = WorkerSettings {
            queue_len: config.queue_len,
            group_wait: config.group_wait,
            retry: config.retry.clone(),
        };
        let mut workers = Vec::new();
        let ca = config.ca_pem.as_deref();
        if let Some(email) = &config.email {
            let target = format!("{}:{}", email.host, email.port);
            let notifier =
                Email::new(email, ca, config.links.clone(), config.timeout).map_err(|source| {
                    NotifyError::Email {
                        target: target.clone(),
                        source,
                    }
                })?;
            info!(smtp = %target, security = ?email.security, to = email.to.len(), "email notifier started");
            workers.push(spawn(notifier, &settings)?);
        }
        let http = http::agent(ca, config.timeout);
        // Its queue holds one transition per alert, like its state: it must not lose a
        // RESOLVED while it holds the alert as firing.
        let keeping = WorkerSettings {
            queue_len: settings.queue_len.max(alertmanager::MAX_FIRING),
            ..settings.clone()
        };
        for url in &config.alertmanagers {
            let notifier = Alertmanager::new(
                http.clone(),
                url.clone(),
                config.links.clone(),
                config.resend_interval,
            );
            info!(%url, "alertmanager notifier started");
            workers.push(spawn(notifier, &keeping)?);
        }
        for url in &config.webhooks {
            info!(%url, "webhook notifier started");
            workers.push(spawn(
                Webhook::new(http.clone(), url.clone(), config.links.clone()),
                &settings,
            )?);
        }
        Ok(Notifiers { workers })
    }

    /// Hands a firing or resolved alert to every notifier and returns at once (a full queue
    /// drops its oldest transition, counted). Pending alerts are not notified.
    pub fn transition(&self, alert: &Alert) {
        if alert.state == AlertState::Pending {
            return;
        }
        for worker in &self.workers {
            worker.queue.push(alert.clone());
        }
    }

    pub fn is_empty(&self) -> bool {
        self.workers.is_empty()
    }
}

/// The alert engine's transitions reach every notifier. An alert restored as firing after a
/// collector restart notifies nobody again; only Alertmanager, which resolves what is not
/// re-sent, gets it back into its re-send set (it deduplicates, so no new notification).
impl crate::alerts::AlertSink for Notifiers {
    fn transition(&self, alert: &Alert) {
        Notifiers::transition(self, alert);
    }

    fn restored(&self, alert: &Alert) {
        if alert.state != AlertState::Firing {
            return;
        }
        for worker in self
            .workers
            .iter()
            .filter(|w| w.queue.kind == "alertmanager")
        {
            worker.queue.push(alert.clone());
        }
    }
}

impl Notifiers {
    /// Stops every notifier: retries end, what is still queued gets one try, then the
    /// threads are joined (each try is bounded by the configured timeout).
    pub fn shutdown(&self) {
        self.workers.iter().for_each(Worker::stop);
        self.workers.iter().for_each(Worker::join);
    }
}

fn spawn(
    notifier: impl worker::Notifier,
    settings: &WorkerSettings,
) -> Result<Worker, NotifyError> {
    let kind = notifier.kind();
    Worker::spawn(notifier, settings.clone()).map_err(|source| NotifyError::Thread { kind, source })
}

impl Drop for Notifiers {
    fn drop(&mut self) {
        self.shutdown();
    }
}
