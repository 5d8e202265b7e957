//! Collector configuration: defaults, then a TOML file (`--config`), then `VIGIL_*`
//! environment variables and flags (clap reads both), validated once at start. The `[loki]`
//! table is `loki::config`'s; this file resolves the collector's own settings and the Loki
//! URL, and hands the rest to `LokiConfig::resolve`.
use std::{net::SocketAddr, path::PathBuf};

use serde::Deserialize;

use vigil_wire::token::{read_token_file, TokenError};

use crate::loki::{LokiConfig, LokiConfigError, LokiFileConfig};
use crate::notify::{NotifyConfig, NotifyConfigError, NotifyFileConfig, NotifyOverrides};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {source}")]
    Parse {
        path: PathBuf,
        source: toml::de::Error,
    },
    #[error("`{field}` = {value:?} is not a valid {what}")]
    Invalid {
        field: &'static str,
        value: String,
        what: &'static str,
    },
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error(transparent)]
    Loki(#[from] LokiConfigError),
    #[error(transparent)]
    Notify(#[from] NotifyConfigError),
    #[error(transparent)]
    Alerts(#[from] crate::alerts::AlertsConfigError),
}

/// The file's shape: every key optional; unknown keys are an error (typos must not pass).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub listen: Option<String>,
    pub token_file: Option<PathBuf>,
    pub loki_url: Option<String>,
    pub max_body_bytes: Option<usize>,
    pub label_value_limit: Option<usize>,
    pub shutdown_grace_ms: Option<u64>,
    pub loki: Option<LokiFileConfig>,
    /// Email, Alertmanager and webhook notifiers (`notify::config`).
    pub notify: Option<NotifyFileConfig>,
    /// Alert timing and state directory (`alerts::config`).
    pub alerts: Option<crate::alerts::AlertsFileConfig>,
}

/// Values given on the command line or in VIGIL_* variables (they win over the file).
#[derive(Debug, Default, Clone, clap::Args)]
pub struct Overrides {
    /// TOML configuration file.
    #[arg(long, env = "VIGIL_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to serve on (default 127.0.0.1:9470).
    #[arg(long, env = "VIGIL_LISTEN")]
    pub listen: Option<String>,
    /// File holding the bearer token agents must send; no file = no authentication.
    #[arg(long, env = "VIGIL_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// Loki base URL, e.g. http://127.0.0.1:3100 (push goes to /loki/api/v1/push).
    #[arg(long, env = "VIGIL_LOKI_URL")]
    pub loki_url: Option<String>,
    #[command(flatten)]
    pub notify: NotifyOverrides,
}

#[derive(Debug, Clone)]
pub struct CollectorConfig {
    pub listen: SocketAddr,
    pub token: Option<String>,
    pub loki: Option<LokiConfig>,
    /// Largest compressed ingest body accepted (413 above).
    pub max_body_bytes: usize,
    /// Distinct values kept per label and metric family before `other`.
    pub label_value_limit: usize,
    /// How long /metrics keeps serving after SIGTERM (ingest refused meanwhile).
    pub shutdown_grace: std::time::Duration,
    /// Email, Alertmanager and webhook notifiers (none configured: `is_empty`).
    pub notify: NotifyConfig,
    pub alerts: crate::alerts::AlertsConfig,
}

pub const DEFAULT_LISTEN: &str = "127.0.0.1:9470";

impl CollectorConfig {
    pub fn load(o: &Overrides) -> Result<Self, ConfigError> {
        let file = match &o.config {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.clone(),
                    source,
                })?;
                toml::from_str(&text).map_err(|source| ConfigError::Parse {
                    path: path.clone(),
                    source,
                })?
            }
            None => FileConfig::default(),
        };
        Self::resolve(file, o)
    }

    pub fn resolve(file: FileConfig, o: &Overrides) -> Result<Self, ConfigError> {
        let listen = o
            .listen
            .clone()
            .or(file.listen)
            .unwrap_or_else(|| DEFAULT_LISTEN.into());
        let listen = listen.parse().map_err(|_| ConfigError::Invalid {
            field: "listen",
            value: listen.clone(),
            what: "address (host:port, e.g. 127.0.0.1:9470)",
        })?;
        let token = match o.token_file.clone().or(file.token_file) {
            Some(path) => Some(read_token_file(&path)?),
            None => None,
        };
        let loki_url = o
            .loki_url
            .clone()
            .or(file.loki_url)
            .map(|u| u.trim_end_matches('/').to_owned());
        let loki = match loki_url {
            Some(url) => Some(LokiConfig::resolve(url, file.loki.unwrap_or_default())?),
            None => None,
        };
        let max_body_bytes = file.max_body_bytes.unwrap_or(16 << 20);
        let label_value_limit = file.label_value_limit.unwrap_or(500);
        if label_value_limit == 0 {
            return Err(ConfigError::Invalid {
                field: "label_value_limit",
                value: "0".into(),
                what: "positive number",
            });
        }
        let shutdown_grace =
            std::time::Duration::from_millis(file.shutdown_grace_ms.unwrap_or(2000));
        let notify = NotifyConfig::resolve(file.notify.unwrap_or_default(), &o.notify)?;
        let alerts = crate::alerts::AlertsConfig::resolve(file.alerts.unwrap_or_default())?;
        Ok(CollectorConfig {
            listen,
            token,
            loki,
            max_body_bytes,
            label_value_limit,
            shutdown_grace,
            notify,
            alerts,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_then_file_then_flags() {
        let c = CollectorConfig::resolve(FileConfig::default(), &Overrides::default()).unwrap();
        assert_eq!(c.listen.to_string(), DEFAULT_LISTEN);
        let file: FileConfig =
            toml::from_str("listen = \"127.0.0.1:1\"\nloki_url = \"http://l:3100/\"").unwrap();
        let o = Overrides {
            listen: Some("127.0.0.1:2".into()),
            ..Default::default()
        };
        let c = CollectorConfig::resolve(file, &o).unwrap();
        assert_eq!(c.listen.port(), 2);
        assert_eq!(c.loki.map(|l| l.url).as_deref(), Some("http://l:3100"));
    }

    #[test]
    fn bad_values_are_named() {
        let o = Overrides {
            listen: Some("nope".into()),
            ..Default::default()
        };
        let e = CollectorConfig::resolve(FileConfig::default(), &o)
            .unwrap_err()
            .to_string();
        assert!(e.contains("`listen`") && e.contains("nope"), "{e}");
        assert!(
            toml::from_str::<FileConfig>("lisen = \"x\"").is_err(),
            "typos are refused"
        );
        let o = Overrides {
            token_file: Some("/nonexistent/token".into()),
            ..Default::default()
        };
        assert!(matches!(
            CollectorConfig::resolve(FileConfig::default(), &o),
            Err(ConfigError::Token(_))
        ));
    }
}
