//! Extracts what vigil needs from a master's configuration files: upstream groups,
//! `proxy_pass` targets with their effective timeouts, log file paths and log formats.
//! The files are read by `load`, inside the master's root; nothing is executed.

mod extract;
mod load;
mod lua;
mod syntax;

pub use load::{
    LoadReport, Refused, MAX_FILES, MAX_FILE_BYTES, MAX_INCLUDE_DEPTH, MAX_TOTAL_BYTES,
};
pub use syntax::{parse_file, Directive};

use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tracing::debug;

use super::{in_root::RootDir, in_root::RootError, paths::MasterPaths};

/// nginx's built-in `combined` format (never written in a configuration).
pub const COMBINED_FORMAT: &str = "$remote_addr - $remote_user [$time_local] \"$request\" $status \
$body_bytes_sent \"$http_referer\" \"$http_user_agent\"";
/// Default for both `proxy_connect_timeout` and `proxy_read_timeout`.
pub const DEFAULT_PROXY_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("nginx config syntax error in {file}:{line}: {reason}")]
    Syntax {
        file: String,
        line: usize,
        reason: String,
    },
    #[error("cannot read nginx's main configuration file")]
    Read(#[source] RootError),
}

/// An `upstream NAME { server ADDR ...; }` block.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Upstream {
    pub name: String,
    /// `host:port` (port defaulted to 80), `[v6]:port` or `unix:/path`; hostnames are not resolved.
    pub servers: Vec<String>,
}

/// Where a `proxy_pass` sends requests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum ProxyTarget {
    /// Names an `upstream` block (see [`NginxConfig::upstreams`]).
    Upstream(String),
    /// A literal `host:port` or `unix:/path` taken from the URL.
    Address(String),
    /// Host part contains variables (resolved per request) or the URL is not http(s).
    Dynamic(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProxyPass {
    pub target: ProxyTarget,
    /// The `proxy_pass` argument verbatim.
    pub url: String,
    pub server_names: Vec<String>,
    /// Address part of each `listen` of the enclosing server.
    pub listen: Vec<String>,
    /// Innermost enclosing location's arguments, e.g. `/api/` or `= /exact`.
    pub location: Option<String>,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccessLog {
    pub path: PathBuf,
    /// `log_format` name; see [`NginxConfig::log_formats`].
    pub format: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct NginxConfig {
    pub upstreams: Vec<Upstream>,
    pub proxies: Vec<ProxyPass>,
    pub error_logs: Vec<PathBuf>,
    pub access_logs: Vec<AccessLog>,
    /// Format name → format string (always contains `combined`).
    pub log_formats: BTreeMap<String, String>,
}

impl NginxConfig {
    /// Reads the master's configuration files inside `root`. Relative log paths are resolved
    /// against the prefix, as nginx does.
    pub fn load(root: &RootDir, paths: &MasterPaths) -> Result<(Self, LoadReport), ConfigError> {
        let (tree, report) = load::load(root, &paths.conf_file)?;
        let config = Self::from_tree(&tree, &paths.prefix);
        debug!(
            upstreams = config.upstreams.len(),
            proxies = config.proxies.len(),
            access_logs = config.access_logs.len(),
            error_logs = config.error_logs.len(),
            files = report.files_read,
            refused = report.files_refused,
            "read nginx configuration"
        );
        Ok((config, report))
    }

    /// Builds the config from an already expanded directive tree.
    pub fn from_tree(tree: &[Directive], prefix: &Path) -> Self {
        let mut config = NginxConfig::default();
        config
            .log_formats
            .insert("combined".into(), COMBINED_FORMAT.into());
        // Upstream blocks first: a proxy_pass may name a block defined after it.
        extract::collect_upstreams(tree, &mut config.upstreams);
        extract::Walker {
            prefix,
            config: &mut config,
        }
        .walk(tree, &extract::Scope::default());
        config
    }

    /// Destination TCP ports of all upstream servers and literal proxy targets.
    pub fn upstream_ports(&self) -> Vec<u16> {
        let literal = self.proxies.iter().filter_map(|p| match &p.target {
            ProxyTarget::Address(addr) => Some(addr),
            _ => None,
        });
        let ports: BTreeSet<u16> = self
            .upstreams
            .iter()
            .flat_map(|u| &u.servers)
            .chain(literal)
            .filter_map(|addr| addr_port(addr))
            .collect();
        ports.into_iter().collect()
    }

    pub fn upstream(&self, name: &str) -> Option<&Upstream> {
        self.upstreams.iter().find(|u| u.name == name)
    }
}

/// Parses an nginx time value: `60s`, `500ms`, `1m30s`, `2h`, bare number = seconds.
/// Units (y, M, w, d, h, m, s, ms) must appear largest first, as nginx requires.
pub fn parse_nginx_time(text: &str) -> Option<Duration> {
    const UNITS: [(&str, u64); 8] = [
        ("y", 365 * 86_400_000),
        ("M", 30 * 86_400_000),
        ("w", 7 * 86_400_000),
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("ms", 1), // before "m" so that "ms" is not read as minutes
        ("m", 60_000),
        ("s", 1_000),
    ];
    const RANK: [usize; 8] = [0, 1, 2, 3, 4, 7, 5, 6];
    let mut rest = text.trim();
    let (mut total_ms, mut last_rank) = (0u64, None);
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let value: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit = match UNITS.iter().position(|(u, _)| rest.starts_with(u)) {
            Some(unit) => {
                rest = rest[UNITS[unit].0.len()..].trim_start();
                unit
            }
            None if rest.is_empty() => 7, // a trailing bare number counts as seconds
            None => return None,
        };
        if last_rank.is_some_and(|r| r >= RANK[unit]) {
            return None;
        }
        last_rank = Some(RANK[unit]);
        total_ms = total_ms.checked_add(value.checked_mul(UNITS[unit].1)?)?;
    }
    Some(Duration::from_millis(total_ms))
}

fn addr_port(addr: &str) -> Option<u16> {
    if addr.starts_with("unix:") {
        return None;
    }
    addr.rsplit_once(':')?.1.parse().ok()
}

#[cfg(test)]
mod tests;
