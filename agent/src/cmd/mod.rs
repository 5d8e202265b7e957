//! The agent's commands — `trace`, `inspect`, `run` — and the arguments they share.
use std::{collections::BTreeSet, path::PathBuf, time::Duration};

pub mod health;
pub mod inspect;
mod poll;
pub mod ports;
pub mod run;
pub mod trace;
mod trace_line;

/// What to watch: the flags `inspect` and `run` share.
#[derive(Debug, Clone, clap::Args)]
pub struct WatchArgs {
    /// Upstream ports, e.g. `8080-8099,9000`; default: every upstream port in nginx's configuration.
    #[arg(long, env = "VIGIL_PORTS", value_parser = parse_ports)]
    pub ports: Option<BTreeSet<u16>>,
    /// nginx error.log to follow instead of the ones in nginx's configuration.
    #[arg(long, env = "VIGIL_NGINX_ERROR_LOG")]
    pub nginx_error_log: Option<PathBuf>,
    /// nginx access.log (combined format) instead of the configured ones.
    #[arg(long, env = "VIGIL_NGINX_ACCESS_LOG")]
    pub nginx_access_log: Option<PathBuf>,
}

/// `8080-8099,9000` → the ports.
pub fn parse_ports(text: &str) -> Result<BTreeSet<u16>, String> {
    ports::parse_port_list(text).map_err(|e| e.to_string())
}

/// `30s`, `500ms`, `2m`, `1h`; a bare number is seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration like 30s"))?;
    let secs = match unit {
        "ms" => value / 1000.0,
        "" | "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => return Err(format!("unknown unit in `{text}` (use ms, s, m or h)")),
    };
    Ok(Duration::from_secs_f64(secs))
}
