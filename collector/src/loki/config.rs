//! Loki settings: the `[loki]` table of the config file (`LokiFileConfig`), validated with
//! the URL into what the sink runs with (`LokiConfig`, `LokiAuth`).
use std::{path::PathBuf, time::Duration};

use serde::Deserialize;

use vigil_wire::token::{read_token_file, TokenError};

#[derive(Debug, thiserror::Error)]
pub enum LokiConfigError {
    #[error("`loki_url` = {0:?} is not an http:// or https:// URL")]
    Url(String),
    #[error(transparent)]
    Tls(#[from] vigil_wire::http::HttpError),
    #[error("[loki] auth: give either bearer_token_file, or username with password_file")]
    Auth,
    #[error(transparent)]
    Token(#[from] TokenError),
}

/// `[loki]` table: everything about shipping but the URL.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LokiFileConfig {
    pub tenant: Option<String>,
    pub bearer_token_file: Option<PathBuf>,
    pub username: Option<String>,
    pub password_file: Option<PathBuf>,
    pub batch_bytes: Option<usize>,
    pub batch_age_ms: Option<u64>,
    pub queue_limit: Option<usize>,
    pub spool_dir: Option<PathBuf>,
    pub spool_disk_bytes: Option<u64>,
    /// Send structured metadata (`true`) or fold it into the line (`false`); unset: as
    /// Loki's version allows (buildinfo).
    pub structured_metadata: Option<bool>,
    /// PEM file of a CA to trust for an https:// Loki, besides the system's roots.
    pub ca_file: Option<PathBuf>,
}

#[derive(Clone)]
pub enum LokiAuth {
    Basic { user: String, password: String },
    Bearer(String),
}

/// Credentials never reach a log line.
impl std::fmt::Debug for LokiAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LokiAuth::Basic { user, .. } => {
                write!(f, "Basic {{ user: {user:?}, password: <redacted> }}")
            }
            LokiAuth::Bearer(_) => write!(f, "Bearer(<redacted>)"),
        }
    }
}

impl LokiAuth {
    /// The `Authorization` header value.
    pub fn header(&self) -> String {
        use base64::Engine;
        match self {
            LokiAuth::Basic { user, password } => {
                let encoded =
                    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
                format!("Basic {encoded}")
            }
            LokiAuth::Bearer(token) => format!("Bearer {token}"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct LokiConfig {
    /// Base URL; pushes go to `{url}/loki/api/v1/push`.
    pub url: String,
    pub tenant: Option<String>,
    pub auth: Option<LokiAuth>,
    pub batch_bytes: usize,
    pub batch_age: Duration,
    /// Entries waiting in memory; beyond it the oldest spill to `spool_dir`, or without one
    /// are dropped (and counted).
    pub queue_limit: usize,
    pub spool_dir: Option<PathBuf>,
    /// Disk bound of the spool; past it the oldest spilled batches are dropped (and counted).
    pub spool_disk_bytes: u64,
    /// `None`: decided by Loki's version (3.0 and later keep structured metadata).
    pub structured_metadata: Option<bool>,
    /// Extra CA for an https:// Loki (checked at start).
    pub ca_file: Option<PathBuf>,
}

impl LokiConfig {
    /// Validates the URL (already stripped of a trailing `/`) and the `[loki]` table, reads
    /// the credential files and fills in the defaults.
    pub fn resolve(url: String, f: LokiFileConfig) -> Result<LokiConfig, LokiConfigError> {
        if vigil_wire::http::check_url(&url).is_err() {
            return Err(LokiConfigError::Url(url));
        }
        let auth = match (f.bearer_token_file, f.username, f.password_file) {
            (Some(token), None, None) => Some(LokiAuth::Bearer(read_token_file(&token)?)),
            (None, Some(user), Some(pw)) => Some(LokiAuth::Basic {
                user,
                password: read_token_file(&pw)?,
            }),
            (None, None, None) => None,
            _ => return Err(LokiConfigError::Auth),
        };
        // A bad CA file stops the start, not the first push.
        vigil_wire::http::client(Duration::from_secs(1), f.ca_file.as_deref())?;
        Ok(LokiConfig {
            url,
            tenant: f.tenant,
            auth,
            batch_bytes: f.batch_bytes.unwrap_or(1 << 20),
            batch_age: Duration::from_millis(f.batch_age_ms.unwrap_or(1000)),
            queue_limit: f.queue_limit.unwrap_or(200_000),
            spool_dir: f.spool_dir,
            spool_disk_bytes: f.spool_disk_bytes.unwrap_or(512 << 20),
            structured_metadata: f.structured_metadata,
            ca_file: f.ca_file,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::LokiAuth;

    #[test]
    fn basic_auth_is_rfc4648_base64() {
        let basic = |user: &str, password: &str| {
            LokiAuth::Basic {
                user: user.into(),
                password: password.into(),
            }
            .header()
        };
        assert_eq!(basic("user", "pass"), "Basic dXNlcjpwYXNz");
        assert_eq!(basic("a", ""), "Basic YTo=");
        assert_eq!(basic("ab", "c"), "Basic YWI6Yw==");
        assert_eq!(LokiAuth::Bearer("t".into()).header(), "Bearer t");
        let shown = format!(
            "{:?}",
            LokiAuth::Basic {
                user: "u".into(),
                password: "s3cret".into()
            }
        );
        assert!(!shown.contains("s3cret"), "{shown}");
    }
}
