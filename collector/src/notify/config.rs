//! Notifier settings: the `[notify]` table of the config file (`NotifyFileConfig`), its flags
//! and `VIGIL_*` variables (`NotifyOverrides`, they win over the file), validated once into
//! what the notifiers run with (`NotifyConfig`).
use std::{path::PathBuf, time::Duration};

use serde::Deserialize;
use url::Url;
use vigil_wire::token::TokenError;

use super::email_config;
pub use super::email_config::{EmailConfig, Secret, SmtpSecurity};

#[derive(Debug, thiserror::Error)]
pub enum NotifyConfigError {
    #[error("[notify] `{field}` = {value:?}: {what}")]
    Invalid {
        field: &'static str,
        value: String,
        what: String,
    },
    #[error("[notify] `{field}` is required with `{with}`")]
    Missing {
        field: &'static str,
        with: &'static str,
    },
    #[error("[notify] `{field}` = {path}: cannot read it: {source}")]
    Read {
        field: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("[notify] smtp password: {0}")]
    Password(#[from] TokenError),
}

/// A list key that also takes a single string (`webhook_url = "http://..."`).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

/// `[notify]` table: every key optional; unknown keys are an error.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyFileConfig {
    pub smtp_url: Option<String>,
    pub smtp_username: Option<String>,
    pub smtp_password_file: Option<PathBuf>,
    pub email_from: Option<String>,
    pub email_to: Option<OneOrMany>,
    pub alertmanager_url: Option<OneOrMany>,
    pub webhook_url: Option<OneOrMany>,
    /// PEM file of the CA(s) to trust instead of the built-in roots (SMTP and HTTPS).
    pub ca_file: Option<PathBuf>,
    pub prometheus_url: Option<String>,
    pub grafana_url: Option<String>,
    /// The collector's URL as people reach it (webhook `externalURL`, fallback generatorURL).
    pub external_url: Option<String>,
    pub group_wait_ms: Option<u64>,
    pub resend_interval_ms: Option<u64>,
    pub queue_len: Option<usize>,
    pub retry_attempts: Option<u32>,
}

/// Notifier flags and variables (they win over `[notify]`).
#[derive(Debug, Default, Clone, clap::Args)]
pub struct NotifyOverrides {
    /// SMTP server for alert mail: smtp://host[:25] (plain), smtp://host[:587]?tls=starttls,
    /// smtps://host[:465] (TLS).
    #[arg(long, env = "VIGIL_SMTP_URL")]
    pub smtp_url: Option<String>,
    /// SMTP user; its password comes from --smtp-password-file or VIGIL_SMTP_PASSWORD.
    #[arg(long, env = "VIGIL_SMTP_USERNAME")]
    pub smtp_username: Option<String>,
    /// File holding the SMTP password (keep it 0600).
    #[arg(long, env = "VIGIL_SMTP_PASSWORD_FILE")]
    pub smtp_password_file: Option<PathBuf>,
    /// From the environment only: a flag would show it in `ps`.
    #[arg(skip = std::env::var("VIGIL_SMTP_PASSWORD").ok().map(Secret))]
    pub smtp_password: Option<Secret>,
    /// Sender of alert mail, e.g. "vigil <vigil@example.com>".
    #[arg(long, env = "VIGIL_EMAIL_FROM")]
    pub email_from: Option<String>,
    /// Recipient of alert mail (repeatable; comma-separated in the variable).
    #[arg(long, env = "VIGIL_EMAIL_TO", value_delimiter = ',')]
    pub email_to: Vec<String>,
    /// Alertmanager base URL; alerts go to {url}/api/v2/alerts (repeatable).
    #[arg(long, env = "VIGIL_ALERTMANAGER_URL", value_delimiter = ',')]
    pub alertmanager_url: Vec<String>,
    /// URL that receives Alertmanager-webhook JSON (repeatable).
    #[arg(long, env = "VIGIL_WEBHOOK_URL", value_delimiter = ',')]
    pub webhook_url: Vec<String>,
}

/// Where links in alerts point (base URLs without a trailing `/`).
#[derive(Debug, Clone, Default)]
pub struct Links {
    pub prometheus: Option<String>,
    pub grafana: Option<String>,
    pub external: Option<String>,
}

#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Tries per notification, the first included; then it counts as failed.
    pub attempts: u32,
    pub first_wait: Duration,
    pub max_wait: Duration,
}

#[derive(Debug, Clone)]
pub struct NotifyConfig {
    pub email: Option<EmailConfig>,
    /// Alertmanager base URLs.
    pub alertmanagers: Vec<String>,
    pub webhooks: Vec<String>,
    pub links: Links,
    /// PEM of the CA(s) trusted instead of the built-in (webpki) roots.
    pub ca_pem: Option<Vec<u8>>,
    /// Transitions arriving within this window of the first go out as one mail/webhook per node.
    pub group_wait: Duration,
    /// Alertmanager re-send period while an alert fires; endsAt is 4 periods ahead.
    pub resend_interval: Duration,
    /// Transitions waiting per notifier; beyond it the oldest is dropped (and counted).
    pub queue_len: usize,
    pub retry: RetryPolicy,
    /// Connect/read timeout of one delivery attempt.
    pub timeout: Duration,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        NotifyConfig {
            email: None,
            alertmanagers: Vec::new(),
            webhooks: Vec::new(),
            links: Links::default(),
            ca_pem: None,
            group_wait: Duration::from_millis(300),
            resend_interval: Duration::from_secs(60),
            queue_len: 256,
            retry: RetryPolicy {
                attempts: 8,
                first_wait: Duration::from_secs(1),
                max_wait: Duration::from_secs(60),
            },
            timeout: Duration::from_secs(10),
        }
    }
}

pub(super) fn invalid(
    field: &'static str,
    value: &str,
    what: impl Into<String>,
) -> NotifyConfigError {
    NotifyConfigError::Invalid {
        field,
        value: value.to_owned(),
        what: what.into(),
    }
}

/// The flag's list when given, else the file's.
pub(super) fn list(flag: &[String], file: Option<OneOrMany>) -> Vec<String> {
    if flag.is_empty() {
        file.map(OneOrMany::into_vec).unwrap_or_default()
    } else {
        flag.to_vec()
    }
}

impl NotifyConfig {
    pub fn resolve(f: NotifyFileConfig, o: &NotifyOverrides) -> Result<Self, NotifyConfigError> {
        let defaults = NotifyConfig::default();
        let alertmanagers = list(&o.alertmanager_url, f.alertmanager_url.clone())
            .iter()
            .map(|u| http_url("alertmanager_url", u))
            .collect::<Result<_, _>>()?;
        let webhooks = list(&o.webhook_url, f.webhook_url.clone())
            .iter()
            .map(|u| http_url("webhook_url", u))
            .collect::<Result<_, _>>()?;
        let optional_url = |field, value: &Option<String>| {
            value.as_deref().map(|u| http_url(field, u)).transpose()
        };
        let links = Links {
            prometheus: optional_url("prometheus_url", &f.prometheus_url)?,
            grafana: optional_url("grafana_url", &f.grafana_url)?,
            external: optional_url("external_url", &f.external_url)?,
        };
        let ca_pem = match &f.ca_file {
            Some(path) => Some(read_ca_file(path)?),
            None => None,
        };
        let positive = |field, value: Option<u64>, default: Duration| match value {
            Some(0) => Err(invalid(field, "0", "must be positive")),
            Some(ms) => Ok(Duration::from_millis(ms)),
            None => Ok(default),
        };
        let queue_len = f.queue_len.unwrap_or(defaults.queue_len);
        let attempts = f.retry_attempts.unwrap_or(defaults.retry.attempts);
        if queue_len == 0 || attempts == 0 {
            let field = if queue_len == 0 {
                "queue_len"
            } else {
                "retry_attempts"
            };
            return Err(invalid(field, "0", "must be positive"));
        }
        Ok(NotifyConfig {
            email: email_config::resolve(&f, o)?,
            alertmanagers,
            webhooks,
            links,
            ca_pem,
            group_wait: f
                .group_wait_ms
                .map_or(defaults.group_wait, Duration::from_millis),
            resend_interval: positive(
                "resend_interval_ms",
                f.resend_interval_ms,
                defaults.resend_interval,
            )?,
            queue_len,
            retry: RetryPolicy {
                attempts,
                ..defaults.retry
            },
            timeout: defaults.timeout,
        })
    }

    /// True when no notifier is configured.
    pub fn is_empty(&self) -> bool {
        self.email.is_none() && self.alertmanagers.is_empty() && self.webhooks.is_empty()
    }
}

/// An http(s) URL without a trailing `/`.
fn http_url(field: &'static str, value: &str) -> Result<String, NotifyConfigError> {
    match Url::parse(value) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {
            Ok(value.trim_end_matches('/').to_owned())
        }
        _ => Err(invalid(field, value, "not an http:// or https:// URL")),
    }
}

fn read_ca_file(path: &std::path::Path) -> Result<Vec<u8>, NotifyConfigError> {
    let pem = std::fs::read(path).map_err(|source| NotifyConfigError::Read {
        field: "ca_file",
        path: path.to_owned(),
        source,
    })?;
    let certs = ureq::tls::parse_pem(&pem)
        .filter(|item| matches!(item, Ok(ureq::tls::PemItem::Certificate(_))))
        .count();
    if certs == 0 {
        let shown = path.display().to_string();
        return Err(invalid("ca_file", &shown, "holds no PEM certificate"));
    }
    Ok(pem)
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
