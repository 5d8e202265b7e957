//! Collector configuration: defaults, then a TOML file (`--config`), then `VIGIL_*`
//! environment variables and flags (clap reads both), validated once at start. The `[loki]`
//! table is `loki::config`'s; this file resolves the collector's own settings and the Loki
//! URL, and hands the rest to `LokiConfig::resolve`.
use std::{net::SocketAddr, path::PathBuf};

use serde::Deserialize;

use vigil_wire::{
    token::{read_token_file, TokenError},
    DecodeLimits,
};

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
    #[error("listening on {0} (not loopback) without a token: give --token-file, or --insecure-no-auth to accept unauthenticated ingest")]
    NoAuth(SocketAddr),
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
    pub max_decoded_bytes: Option<usize>,
    pub max_records_per_batch: Option<usize>,
    pub max_concurrent_ingests: Option<usize>,
    pub ingest_timeout_ms: Option<u64>,
    pub label_value_limit: Option<usize>,
    pub max_nodes: Option<usize>,
    pub series_idle_ms: Option<u64>,
    pub shutdown_grace_ms: Option<u64>,
    pub state_dir: Option<PathBuf>,
    pub wal_disk_bytes: Option<u64>,
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
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
    /// Serve ingest without a token on a non-loopback address (anyone who reaches the port
    /// can then write metrics and logs).
    #[arg(long, env = "VIGIL_INSECURE_NO_AUTH")]
    pub insecure_no_auth: bool,
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
    /// What one body may decode to: decompressed bytes and records (413 above).
    pub decode_limits: DecodeLimits,
    /// Ingest requests served at once (503 busy above); bounds ingest memory.
    pub max_concurrent_ingests: usize,
    /// How long an ingest request may take to send its body (408 after).
    pub ingest_timeout: std::time::Duration,
    /// Distinct values kept per label, metric family and node before `other`.
    pub label_value_limit: usize,
    /// Nodes with series at once, fleet-wide, before `other`.
    pub max_nodes: usize,
    /// Series (and label values, agents' counters) not updated for this long are dropped.
    pub series_idle: std::time::Duration,
    /// How long /metrics keeps serving after SIGTERM (ingest refused meanwhile).
    pub shutdown_grace: std::time::Duration,
    /// Where accepted batches are logged before they are acknowledged (`wal/`) and the
    /// dedup state is kept; None: nothing is durable (tests, throwaway runs).
    pub state_dir: Option<PathBuf>,
    /// Disk bound of the write-ahead log; at it ingest answers 503 until Loki catches up.
    pub wal_disk_bytes: u64,
    /// Serve HTTPS with this certificate chain and key (PEM); both or neither.
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
    /// Email, Alertmanager and webhook notifiers (none configured: `is_empty`).
    pub notify: NotifyConfig,
    pub alerts: crate::alerts::AlertsConfig,
}

pub const DEFAULT_LISTEN: &str = "127.0.0.1:9470";
/// A full agent batch (5,000 records) decodes to a few MiB; these leave tenfold room while
/// keeping one request's memory (`DecodeLimits::memory_bound`) near 130 MiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 16 << 20;
pub const DEFAULT_MAX_DECODED_BYTES: usize = 32 << 20;
pub const DEFAULT_MAX_RECORDS_PER_BATCH: usize = 50_000;
/// Decoding is CPU-bound and takes milliseconds: 16 slots serve thousands of batches a
/// second on two cores, and cap ingest memory at 16 requests' worth.
pub const DEFAULT_MAX_CONCURRENT_INGESTS: usize = 16;
pub const DEFAULT_INGEST_TIMEOUT_MS: u64 = 10_000;
/// Far above what memory allows, and within the semaphore's u32 permit count.
const MAX_CONCURRENT_INGESTS: usize = 1 << 16;

/// `value`, or an error naming `field` when it is 0.
fn positive<T: Copy + Default + PartialEq + ToString>(
    field: &'static str,
    value: T,
) -> Result<T, ConfigError> {
    if value == T::default() {
        return Err(ConfigError::Invalid {
            field,
            value: value.to_string(),
            what: "positive number",
        });
    }
    Ok(value)
}

/// The ingest bounds: body, decode, concurrency, time.
struct IngestBounds {
    max_body_bytes: usize,
    decode_limits: DecodeLimits,
    max_concurrent_ingests: usize,
    ingest_timeout: std::time::Duration,
}

impl IngestBounds {
    fn resolve(file: &FileConfig) -> Result<Self, ConfigError> {
        let max_concurrent_ingests = positive(
            "max_concurrent_ingests",
            file.max_concurrent_ingests
                .unwrap_or(DEFAULT_MAX_CONCURRENT_INGESTS),
        )?;
        if max_concurrent_ingests > MAX_CONCURRENT_INGESTS {
            return Err(ConfigError::Invalid {
                field: "max_concurrent_ingests",
                value: max_concurrent_ingests.to_string(),
                what: "number of requests (at most 65536)",
            });
        }
        let timeout_ms = file.ingest_timeout_ms.unwrap_or(DEFAULT_INGEST_TIMEOUT_MS);
        Ok(IngestBounds {
            max_body_bytes: positive(
                "max_body_bytes",
                file.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY_BYTES),
            )?,
            decode_limits: DecodeLimits {
                max_decoded_bytes: positive(
                    "max_decoded_bytes",
                    file.max_decoded_bytes.unwrap_or(DEFAULT_MAX_DECODED_BYTES),
                )?,
                max_records: positive(
                    "max_records_per_batch",
                    file.max_records_per_batch
                        .unwrap_or(DEFAULT_MAX_RECORDS_PER_BATCH),
                )?,
            },
            max_concurrent_ingests,
            ingest_timeout: std::time::Duration::from_millis(positive(
                "ingest_timeout_ms",
                timeout_ms,
            )?),
        })
    }
}

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
        let ingest = IngestBounds::resolve(&file)?;
        let listen = o
            .listen
            .clone()
            .or(file.listen)
            .unwrap_or_else(|| DEFAULT_LISTEN.into());
        let listen: SocketAddr = listen.parse().map_err(|_| ConfigError::Invalid {
            field: "listen",
            value: listen.clone(),
            what: "address (host:port, e.g. 127.0.0.1:9470)",
        })?;
        let token = match o.token_file.clone().or(file.token_file) {
            Some(path) => Some(read_token_file(&path)?),
            None => None,
        };
        if token.is_none() && !listen.ip().is_loopback() && !o.insecure_no_auth {
            return Err(ConfigError::NoAuth(listen));
        }
        let loki_url = o
            .loki_url
            .clone()
            .or(file.loki_url)
            .map(|u| u.trim_end_matches('/').to_owned());
        let loki = match loki_url {
            Some(url) => Some(LokiConfig::resolve(url, file.loki.unwrap_or_default())?),
            None => None,
        };
        let label_value_limit = file.label_value_limit.unwrap_or(500);
        if label_value_limit == 0 {
            return Err(ConfigError::Invalid {
                field: "label_value_limit",
                value: "0".into(),
                what: "positive number",
            });
        }
        let max_nodes = file.max_nodes.unwrap_or(10_000);
        let series_idle = std::time::Duration::from_millis(file.series_idle_ms.unwrap_or(600_000));
        if max_nodes == 0 || series_idle.is_zero() {
            return Err(ConfigError::Invalid {
                field: if max_nodes == 0 {
                    "max_nodes"
                } else {
                    "series_idle_ms"
                },
                value: "0".into(),
                what: "positive number",
            });
        }
        let shutdown_grace =
            std::time::Duration::from_millis(file.shutdown_grace_ms.unwrap_or(2000));
        let notify = NotifyConfig::resolve(file.notify.unwrap_or_default(), &o.notify)?;
        let alerts = crate::alerts::AlertsConfig::resolve(file.alerts.unwrap_or_default())?;
        if file.tls_cert_file.is_some() != file.tls_key_file.is_some() {
            return Err(ConfigError::Invalid {
                field: "tls_cert_file",
                value: "one of tls_cert_file / tls_key_file".into(),
                what: "TLS setting: give both files, or neither",
            });
        }
        Ok(CollectorConfig {
            listen,
            token,
            loki,
            max_body_bytes: ingest.max_body_bytes,
            decode_limits: ingest.decode_limits,
            max_concurrent_ingests: ingest.max_concurrent_ingests,
            ingest_timeout: ingest.ingest_timeout,
            label_value_limit,
            max_nodes,
            series_idle,
            shutdown_grace,
            state_dir: file.state_dir,
            tls_cert_file: file.tls_cert_file,
            tls_key_file: file.tls_key_file,
            wal_disk_bytes: positive("wal_disk_bytes", file.wal_disk_bytes.unwrap_or(1 << 30))?,
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
    fn a_public_listener_needs_a_token_or_an_explicit_opt_out() {
        let public = Overrides {
            listen: Some("0.0.0.0:9470".into()),
            ..Default::default()
        };
        assert!(matches!(
            CollectorConfig::resolve(FileConfig::default(), &public),
            Err(ConfigError::NoAuth(_))
        ));
        let opted_out = Overrides {
            insecure_no_auth: true,
            ..public
        };
        assert!(CollectorConfig::resolve(FileConfig::default(), &opted_out).is_ok());
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

    #[test]
    fn ingest_bounds_default_and_refuse_zero() {
        let c = CollectorConfig::resolve(FileConfig::default(), &Overrides::default()).unwrap();
        assert_eq!(c.decode_limits.max_records, DEFAULT_MAX_RECORDS_PER_BATCH);
        assert_eq!(c.decode_limits.max_decoded_bytes, DEFAULT_MAX_DECODED_BYTES);
        assert_eq!(c.max_concurrent_ingests, DEFAULT_MAX_CONCURRENT_INGESTS);
        assert_eq!(c.ingest_timeout.as_millis(), 10_000);
        let file: FileConfig = toml::from_str(
            "max_decoded_bytes = 1024\nmax_records_per_batch = 10\nmax_concurrent_ingests = 2\ningest_timeout_ms = 500",
        )
        .unwrap();
        let c = CollectorConfig::resolve(file, &Overrides::default()).unwrap();
        let limits = DecodeLimits {
            max_decoded_bytes: 1024,
            max_records: 10,
        };
        assert_eq!(c.decode_limits, limits);
        assert_eq!(c.max_concurrent_ingests, 2);
        assert_eq!(c.ingest_timeout.as_millis(), 500);
        for key in [
            "max_body_bytes",
            "max_decoded_bytes",
            "max_records_per_batch",
            "max_concurrent_ingests",
            "ingest_timeout_ms",
        ] {
            let file: FileConfig = toml::from_str(&format!("{key} = 0")).unwrap();
            let e = CollectorConfig::resolve(file, &Overrides::default())
                .unwrap_err()
                .to_string();
            assert!(e.contains(&format!("`{key}` = \"0\"")), "{e}");
        }
    }
}
