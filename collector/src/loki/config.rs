//! Loki settings: the `[loki]` table of the config file (`LokiFileConfig`), validated with
//! the URL into what the sink runs with (`LokiConfig`, `LokiAuth`).
use std::{path::PathBuf, time::Duration};

use serde::Deserialize;

use vigil_wire::token::{read_token_file, TokenError};

#[derive(Debug, thiserror::Error)]
pub enum LokiConfigError {
    #[error("`loki_url` = {0:?} is not an http:// URL (for TLS put a proxy in front)")]
    Url(String),
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
}

#[derive(Debug, Clone)]
pub enum LokiAuth {
    Basic { user: String, password: String },
    Bearer(String),
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
}

impl LokiConfig {
    /// Validates the URL (already stripped of a trailing `/`) and the `[loki]` table, reads
    /// the credential files and fills in the defaults.
    pub fn resolve(url: String, f: LokiFileConfig) -> Result<LokiConfig, LokiConfigError> {
        if !url.starts_with("http://") {
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
    }
}
