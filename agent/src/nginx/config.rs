//! Extracts what vigil needs from `nginx -T`: upstream groups, `proxy_pass`
//! targets with their effective timeouts, log file paths and log formats.

mod extract;
mod lua;
mod syntax;

pub use syntax::{parse_dump, Directive};

use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tracing::debug;

/// nginx's built-in `combined` format (not printed by `nginx -T`).
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
    #[error("nginx -T output contains no configuration")]
    Empty,
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
    /// Parses `nginx -T` output. `prefix` is nginx's `-p` prefix, used to
    /// resolve relative log paths as nginx does.
    pub fn parse(dump: &str, prefix: &Path) -> Result<Self, ConfigError> {
        let tree = parse_dump(dump)?;
        let config = Self::from_tree(&tree, prefix);
        debug!(
            upstreams = config.upstreams.len(),
            proxies = config.proxies.len(),
            access_logs = config.access_logs.len(),
            error_logs = config.error_logs.len(),
            "parsed nginx configuration"
        );
        Ok(config)
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
mod tests {
    use super::*;

    /// Captured verbatim from `nginx -T` of nginx 1.22.1 (three files, glob include).
    const REAL_DUMP: &str = r##"# configuration file /tmp/ngx-real/conf/nginx.conf:
# main config for vigil tests
worker_processes 2;
pid logs/nginx.pid;
error_log logs/error.log info;
events { worker_connections 64; }

http {
    log_format vigil '$remote_addr [$time_local] "$request" $status $body_bytes_sent '
                     'rt=$request_time ua="$upstream_addr" us="$upstream_status" urt="$upstream_response_time"';
    log_format jsonish escape=json '{"addr":"$remote_addr", "note":"a # not comment"}';
    access_log logs/access.log combined;
    proxy_connect_timeout 5s;
    proxy_read_timeout 1m30s;
    client_body_temp_path tmp/body;
    proxy_temp_path tmp/proxy;
    fastcgi_temp_path tmp/fcgi;
    uwsgi_temp_path tmp/uwsgi;
    scgi_temp_path tmp/scgi;

    upstream backend {
        server 127.0.0.1:18082 max_fails=1 fail_timeout=10s;
        server 127.0.0.1:18083 backup;
    }
    upstream dead {
        server 127.0.0.1:18084;
    }
    include conf.d/*.conf;
}

# configuration file /tmp/ngx-real/conf/conf.d/app.conf:
server {
    listen 127.0.0.1:18080;
    server_name localhost "app.local";   # trailing comment
    access_log logs/app_access.log vigil;
    error_log logs/app_error.log;
    proxy_read_timeout 2s;

    location / {
        proxy_pass http://backend;
    }
    location /api/ {
        proxy_connect_timeout 500ms;
        location /api/slow {
            proxy_read_timeout 1s;
            proxy_pass http://backend/slow;
        }
        proxy_pass http://127.0.0.1:18085;
    }
    location /dead {
        proxy_pass http://dead;
    }
    location /fb {
        error_page 502 = @fallback;
        proxy_pass http://dead;
    }
    location @fallback {
        proxy_pass http://127.0.0.1:18085;
    }
    location = "/with space" {
        add_header X-Note "hash # inside \"quotes\"";
        return 200 'ok';
    }
    location /literal {
        access_log off;
        proxy_pass http://localhost;
    }
}

# configuration file /tmp/ngx-real/conf/conf.d/other.conf:
server {
    listen 127.0.0.1:18081;
    server_name _;
    location / {
        if ($request_method = POST) {
            proxy_pass https://127.0.0.1:18086;
        }
        proxy_pass http://unix:/tmp/ngx-real/none.sock:/;
    }
}

"##;

    fn parsed() -> NginxConfig {
        NginxConfig::parse(REAL_DUMP, Path::new("/tmp/ngx-real")).unwrap()
    }

    fn proxy<'a>(config: &'a NginxConfig, listen: &str, location: &str) -> &'a ProxyPass {
        let found = config.proxies.iter().find(|p| {
            p.listen.iter().any(|l| l == listen) && p.location.as_deref() == Some(location)
        });
        found.unwrap_or_else(|| panic!("no proxy_pass for {listen} {location}"))
    }

    #[test]
    fn upstream_blocks() {
        let config = parsed();
        assert_eq!(
            config.upstream("backend").unwrap().servers,
            ["127.0.0.1:18082", "127.0.0.1:18083"]
        );
        assert_eq!(
            config.upstream("dead").unwrap().servers,
            ["127.0.0.1:18084"]
        );
        assert_eq!(config.upstreams.len(), 2);
    }

    #[test]
    fn proxies_with_inherited_timeouts() {
        let config = parsed();
        assert_eq!(config.proxies.len(), 9);
        let root = proxy(&config, "127.0.0.1:18080", "/");
        assert_eq!(root.target, ProxyTarget::Upstream("backend".into()));
        assert_eq!(root.server_names, ["localhost", "app.local"]);
        // connect from http (5s), read from server (2s)
        assert_eq!(
            (root.connect_timeout, root.read_timeout),
            (secs(5), secs(2))
        );

        let api = proxy(&config, "127.0.0.1:18080", "/api/");
        assert_eq!(api.target, ProxyTarget::Address("127.0.0.1:18085".into()));
        assert_eq!(
            (api.connect_timeout, api.read_timeout),
            (Duration::from_millis(500), secs(2))
        );

        // Nested location inherits connect from its parent location.
        let slow = proxy(&config, "127.0.0.1:18080", "/api/slow");
        assert_eq!(slow.target, ProxyTarget::Upstream("backend".into()));
        assert_eq!(
            (slow.connect_timeout, slow.read_timeout),
            (Duration::from_millis(500), secs(1))
        );

        let literal = proxy(&config, "127.0.0.1:18080", "/literal");
        assert_eq!(literal.target, ProxyTarget::Address("localhost:80".into()));
        let fallback = proxy(&config, "127.0.0.1:18080", "@fallback");
        assert_eq!(
            fallback.target,
            ProxyTarget::Address("127.0.0.1:18085".into())
        );
    }

    #[test]
    fn proxy_in_if_and_unix_socket_in_second_server() {
        let config = parsed();
        let other: Vec<_> = config
            .proxies
            .iter()
            .filter(|p| p.listen == ["127.0.0.1:18081"])
            .collect();
        assert_eq!(other.len(), 2);
        assert_eq!(
            other[0].target,
            ProxyTarget::Address("127.0.0.1:18086".into())
        );
        assert_eq!(other[0].location.as_deref(), Some("/"));
        assert_eq!(other[0].server_names, ["_"]);
        assert_eq!(
            (other[0].connect_timeout, other[0].read_timeout),
            (secs(5), secs(90))
        );
        assert_eq!(
            other[1].target,
            ProxyTarget::Address("unix:/tmp/ngx-real/none.sock".into())
        );
    }

    #[test]
    fn logs_and_formats() {
        let config = parsed();
        let prefix = Path::new("/tmp/ngx-real");
        assert_eq!(
            config.error_logs,
            [
                prefix.join("logs/error.log"),
                prefix.join("logs/app_error.log")
            ]
        );
        let access: Vec<_> = config
            .access_logs
            .iter()
            .map(|a| (a.path.clone(), a.format.as_str()))
            .collect();
        assert_eq!(
            access,
            [
                (prefix.join("logs/access.log"), "combined"),
                (prefix.join("logs/app_access.log"), "vigil")
            ]
        );
        assert_eq!(
            config.log_formats["vigil"],
            "$remote_addr [$time_local] \"$request\" $status $body_bytes_sent rt=$request_time \
             ua=\"$upstream_addr\" us=\"$upstream_status\" urt=\"$upstream_response_time\""
        );
        // escape= dropped, '#' inside quotes kept.
        assert_eq!(
            config.log_formats["jsonish"],
            r#"{"addr":"$remote_addr", "note":"a # not comment"}"#
        );
        assert_eq!(config.log_formats["combined"], COMBINED_FORMAT);
    }

    #[test]
    fn ports_are_deduplicated_and_sorted() {
        assert_eq!(
            parsed().upstream_ports(),
            [80, 18082, 18083, 18084, 18085, 18086]
        );
    }

    #[test]
    fn quoted_location_and_escaped_quotes() {
        let tree = parse_dump(REAL_DUMP).unwrap();
        let http = tree
            .iter()
            .find(|d| d.name == "http")
            .unwrap()
            .block
            .as_ref()
            .unwrap();
        let server = http
            .iter()
            .find(|d| d.name == "server")
            .unwrap()
            .block
            .as_ref()
            .unwrap();
        let loc = server
            .iter()
            .find(|d| d.args.last().map(String::as_str) == Some("/with space"))
            .unwrap();
        let header = &loc.block.as_ref().unwrap()[0];
        assert_eq!(header.args, ["X-Note", "hash # inside \"quotes\""]);
    }

    #[test]
    fn nested_relative_includes_and_plain_config() {
        let dump = "# configuration file /etc/nginx/nginx.conf:\n\
            http { include sites/*; syslog_only; error_log syslog:server=x; }\n\n\
            # configuration file /etc/nginx/sites/b:\n\
            server { location / { proxy_pass http://[::1]; } }\n\n\
            # configuration file /etc/nginx/sites/a:\n\
            include /etc/nginx/snip.conf;\n\n\
            # configuration file /etc/nginx/snip.conf:\n\
            upstream Be { server backend.local; server unix:/run/x.sock; server [::1]:81 down; }\n";
        let config = NginxConfig::parse(dump, Path::new("/usr/share/nginx")).unwrap();
        assert_eq!(
            config.upstreams[0].servers,
            ["backend.local:80", "unix:/run/x.sock", "[::1]:81"]
        );
        assert_eq!(
            config.proxies[0].target,
            ProxyTarget::Address("[::1]:80".into())
        );
        assert!(config.error_logs.is_empty());

        let plain =
            "http { proxy_read_timeout 1h; server { location / { proxy_pass http://be/x; } } \
                     upstream be { server 10.0.0.1:9000; } }";
        let config = NginxConfig::parse(plain, Path::new("/")).unwrap();
        assert_eq!(config.proxies[0].target, ProxyTarget::Upstream("be".into()));
        assert_eq!(config.proxies[0].read_timeout, secs(3600));
        assert_eq!(config.proxies[0].connect_timeout, DEFAULT_PROXY_TIMEOUT);
        assert!(matches!(
            NginxConfig::parse("", Path::new("/")),
            Err(ConfigError::Empty)
        ));
    }

    #[test]
    fn nginx_times() {
        let ok = [
            ("60s", 60_000),
            ("500ms", 500),
            ("1m", 60_000),
            ("2h", 7_200_000),
            ("1m30s", 90_000),
            ("45", 45_000),
            ("1h 30m", 5_400_000),
            ("1d", 86_400_000),
            ("1m30", 90_000),
        ];
        for (text, ms) in ok {
            assert_eq!(
                parse_nginx_time(text),
                Some(Duration::from_millis(ms)),
                "{text}"
            );
        }
        for bad in [
            "",
            "s",
            "5x",
            "1s1m",
            "1m1m",
            "-1s",
            "99999999999999999999y",
        ] {
            assert_eq!(parse_nginx_time(bad), None, "{bad}");
        }
    }

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }
}
