//! Alert settings: the `[alerts]` table of the config file (`AlertsFileConfig`), validated
//! into what the engine runs with (`AlertsConfig`).
use std::{path::PathBuf, time::Duration};

use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum AlertsConfigError {
    #[error("[alerts] `{field}` = {value} is out of range: {why}")]
    Range {
        field: &'static str,
        value: u64,
        why: &'static str,
    },
}

/// `[alerts]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertsFileConfig {
    pub for_ms: Option<u64>,
    pub resolve_after_ms: Option<u64>,
    pub repeat_interval_ms: Option<u64>,
    pub state_dir: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct AlertsConfig {
    /// How long a cause's failures must last (first to latest failing request) to fire.
    pub for_: Duration,
    /// How long without failures of its cause before an alert resolves; also the longest
    /// gap between failures that still counts as one incident.
    pub resolve_after: Duration,
    /// How often a still-firing alert is handed to the notifiers again (0: never).
    pub repeat_interval: Duration,
    /// Where active alerts are kept across restarts (`alerts.json`); None: in memory only.
    pub state_dir: Option<PathBuf>,
}

/// 1.5 s: a 502 storm fires within `for` + one agent batch (≤ 1.1 s) of its first failing
/// request, under 3 s; a restart that serves again within 1.5 s stays silent.
pub const DEFAULT_FOR_MS: u64 = 1500;
/// 10 s: longer than agents' batch age (1 s) and a restart's gap between crash-loop
/// attempts, so neither flaps an alert; short enough to see recovery within seconds.
pub const DEFAULT_RESOLVE_AFTER_MS: u64 = 10_000;
/// Alertmanager's default repeat interval.
pub const DEFAULT_REPEAT_INTERVAL_MS: u64 = 4 * 3600 * 1000;
/// Agents send a batch a second while there is traffic: a `resolve_after` below that
/// resolves between two batches of the same incident.
const MIN_RESOLVE_AFTER_MS: u64 = 1000;
/// The evidence kept per upstream spans `for` + `resolve_after`; bounded to keep it small.
const MAX_WINDOW_MS: u64 = 3600 * 1000;

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig::resolve(AlertsFileConfig::default()).expect("defaults are valid")
    }
}

impl AlertsConfig {
    pub fn resolve(f: AlertsFileConfig) -> Result<AlertsConfig, AlertsConfigError> {
        let for_ms = f.for_ms.unwrap_or(DEFAULT_FOR_MS);
        let resolve_after_ms = f.resolve_after_ms.unwrap_or(DEFAULT_RESOLVE_AFTER_MS);
        if resolve_after_ms < MIN_RESOLVE_AFTER_MS {
            return Err(AlertsConfigError::Range {
                field: "resolve_after_ms",
                value: resolve_after_ms,
                why: "at least 1000 (agents send a batch a second)",
            });
        }
        if for_ms + resolve_after_ms > MAX_WINDOW_MS {
            return Err(AlertsConfigError::Range {
                field: "for_ms",
                value: for_ms,
                why: "for_ms + resolve_after_ms must stay within an hour",
            });
        }
        Ok(AlertsConfig {
            for_: Duration::from_millis(for_ms),
            resolve_after: Duration::from_millis(resolve_after_ms),
            repeat_interval: Duration::from_millis(
                f.repeat_interval_ms.unwrap_or(DEFAULT_REPEAT_INTERVAL_MS),
            ),
            state_dir: f.state_dir,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_bounds() {
        let c = AlertsConfig::default();
        assert_eq!(c.for_, Duration::from_millis(1500));
        assert_eq!(c.resolve_after, Duration::from_secs(10));
        assert!(c.state_dir.is_none());
        let short = AlertsFileConfig {
            resolve_after_ms: Some(200),
            ..Default::default()
        };
        let e = AlertsConfig::resolve(short).unwrap_err().to_string();
        assert!(e.contains("resolve_after_ms") && e.contains("200"), "{e}");
        let long = AlertsFileConfig {
            for_ms: Some(MAX_WINDOW_MS),
            ..Default::default()
        };
        assert!(AlertsConfig::resolve(long).is_err());
        assert!(
            toml::from_str::<AlertsFileConfig>("for = 1").is_err(),
            "typos refused"
        );
    }
}
