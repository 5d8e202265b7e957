//! Walks the expanded directive tree and collects upstreams, proxy_pass
//! targets (with inherited timeouts) and log settings into [`NginxConfig`].

use super::DEFAULT_PROXY_TIMEOUT;
use super::{
    parse_nginx_time, AccessLog, Directive, NginxConfig, ProxyPass, ProxyTarget, Upstream,
};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tracing::warn;

/// Adds `default_port` when the address has none (unix sockets never do).
fn with_default_port(addr: &str, default_port: u16) -> String {
    let has_port = if addr.starts_with("unix:") {
        true
    } else if let Some(v6) = addr.strip_prefix('[') {
        v6.contains("]:")
    } else {
        addr.contains(':')
    };
    if has_port {
        addr.to_string()
    } else {
        format!("{addr}:{default_port}")
    }
}

pub(super) fn collect_upstreams(dirs: &[Directive], out: &mut Vec<Upstream>) {
    for d in dirs {
        let Some(children) = &d.block else { continue };
        match (d.name.as_str(), d.args.first()) {
            ("upstream", Some(name)) => out.push(Upstream {
                name: name.clone(),
                servers: children
                    .iter()
                    .filter(|c| c.name == "server")
                    .filter_map(|c| c.args.first())
                    .map(|addr| with_default_port(addr, 80))
                    .collect(),
            }),
            // Stream/mail upstreams are a different protocol; only HTTP matters here.
            ("http", _) => collect_upstreams(children, out),
            _ => {}
        }
    }
}

/// Classifies a proxy_pass URL against the known upstream blocks.
fn proxy_target(url: &str, upstreams: &[Upstream]) -> ProxyTarget {
    let scheme_end = url.find("://").map_or(0, |i| i + 3);
    let default_port = match url[..scheme_end].to_ascii_lowercase().as_str() {
        "http://" => 80,
        "https://" => 443,
        _ => return ProxyTarget::Dynamic(url.to_string()),
    };
    let rest = &url[scheme_end..];
    if let Some(path) = rest.strip_prefix("unix:") {
        // nginx syntax: unix:/path/to.sock[:/uri]
        let path = path.split(':').next().unwrap_or(path);
        return ProxyTarget::Address(format!("unix:{path}"));
    }
    let host = rest.split(['/', '?']).next().unwrap_or_default();
    if host.is_empty() || host.contains('$') {
        return ProxyTarget::Dynamic(url.to_string());
    }
    // nginx matches upstream names case-insensitively and forbids a port with them.
    match upstreams.iter().find(|u| u.name.eq_ignore_ascii_case(host)) {
        Some(upstream) => ProxyTarget::Upstream(upstream.name.clone()),
        None => ProxyTarget::Address(with_default_port(host, default_port)),
    }
}

/// Settings inherited from enclosing blocks.
#[derive(Debug, Clone)]
pub(super) struct Scope {
    connect_timeout: Duration,
    read_timeout: Duration,
    server_names: Vec<String>,
    listen: Vec<String>,
    location: Option<String>,
}

impl Default for Scope {
    fn default() -> Self {
        Scope {
            connect_timeout: DEFAULT_PROXY_TIMEOUT,
            read_timeout: DEFAULT_PROXY_TIMEOUT,
            server_names: Vec::new(),
            listen: Vec::new(),
            location: None,
        }
    }
}

pub(super) struct Walker<'a> {
    pub(super) prefix: &'a Path,
    pub(super) config: &'a mut NginxConfig,
}

impl Walker<'_> {
    pub(super) fn walk(&mut self, dirs: &[Directive], parent: &Scope) {
        // A directive applies to its whole block wherever it appears in it.
        let scope = level_scope(dirs, parent);
        for d in dirs {
            match (d.name.as_str(), &d.block) {
                ("proxy_pass", None) => self.add_proxy(d, &scope),
                ("error_log", None) => self.add_error_log(d),
                ("access_log", None) => self.add_access_log(d),
                ("log_format", None) => self.add_log_format(d),
                ("server", Some(children)) => self.walk(children, &server_scope(children, &scope)),
                ("location", Some(children)) => {
                    let inner = Scope {
                        location: Some(d.args.join(" ")),
                        ..scope.clone()
                    };
                    self.walk(children, &inner);
                }
                ("http" | "if" | "limit_except", Some(children)) => self.walk(children, &scope),
                _ => {}
            }
        }
    }

    fn add_proxy(&mut self, d: &Directive, scope: &Scope) {
        let Some(url) = d.args.first() else { return };
        self.config.proxies.push(ProxyPass {
            target: proxy_target(url, &self.config.upstreams),
            url: url.clone(),
            server_names: scope.server_names.clone(),
            listen: scope.listen.clone(),
            location: scope.location.clone(),
            connect_timeout: scope.connect_timeout,
            read_timeout: scope.read_timeout,
        });
    }

    fn add_error_log(&mut self, d: &Directive) {
        let path = d.args.first().and_then(|t| self.log_path(t));
        if let Some(path) = path.filter(|p| !self.config.error_logs.contains(p)) {
            self.config.error_logs.push(path);
        }
    }

    fn add_access_log(&mut self, d: &Directive) {
        let Some(path) = d.args.first().and_then(|t| self.log_path(t)) else {
            return;
        };
        let format = d.args.get(1).cloned().unwrap_or_else(|| "combined".into());
        let log = AccessLog { path, format };
        if !self.config.access_logs.contains(&log) {
            self.config.access_logs.push(log);
        }
    }

    fn add_log_format(&mut self, d: &Directive) {
        let Some((name, parts)) = d.args.split_first() else {
            return;
        };
        let format: String = parts
            .iter()
            .filter(|p| !p.starts_with("escape="))
            .map(String::as_str)
            .collect();
        self.config.log_formats.insert(name.clone(), format);
    }

    /// `None` for targets that are not files we could tail.
    fn log_path(&self, target: &str) -> Option<PathBuf> {
        let not_a_file = ["off", "stderr"].contains(&target)
            || target.starts_with("syslog:")
            || target.starts_with("memory:");
        (!not_a_file).then(|| self.prefix.join(target))
    }
}

/// Applies this block's own timeout directives on top of the inherited ones.
fn level_scope(dirs: &[Directive], parent: &Scope) -> Scope {
    let mut scope = parent.clone();
    for d in dirs.iter().filter(|d| d.block.is_none()) {
        let slot = match d.name.as_str() {
            "proxy_connect_timeout" => &mut scope.connect_timeout,
            "proxy_read_timeout" => &mut scope.read_timeout,
            _ => continue,
        };
        match d.args.first().and_then(|v| parse_nginx_time(v)) {
            Some(value) => *slot = value,
            None => {
                warn!(directive = %d.name, args = ?d.args, line = d.line, "ignoring unparsable nginx time")
            }
        }
    }
    scope
}

fn server_scope(dirs: &[Directive], parent: &Scope) -> Scope {
    let mut scope = Scope {
        server_names: Vec::new(),
        listen: Vec::new(),
        location: None,
        ..parent.clone()
    };
    for d in dirs.iter().filter(|d| d.block.is_none()) {
        match d.name.as_str() {
            "server_name" => scope.server_names.extend(d.args.iter().cloned()),
            "listen" => scope.listen.extend(d.args.first().cloned()),
            _ => {}
        }
    }
    scope
}
