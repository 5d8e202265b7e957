//! Turns what the agent sees into wire records and seals them into numbered batches by
//! size and age; healthy connections are counted per (client, upstream) in each batch
//! (`summary`) unless every connection is to travel alone.
use std::time::{Duration, Instant};

use vigil_wire as wire;

use crate::{
    host::{owners::ProcessIdentity, upstreams::UpstreamState},
    nginx::{view::LogEvent, NginxConfig, ProxyTarget, UpstreamError},
    probes::{connection::ConnectionRecord, exit::ProcessExitInfo},
    watch::RoledSample,
};

mod summary;

/// Which connections travel one by one (`--connection-records`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ConnectionRecords {
    /// Failed, reset, silent, slow ones and those after SYN retransmits alone; healthy
    /// ones counted per client and upstream in each batch.
    Failures,
    /// Every connection alone, healthy ones too.
    All,
}

pub struct Outbox {
    agent_id: String,
    node: String,
    next_sequence: u64,
    current: wire::Batch,
    /// Healthy connections of `current`, counted; None when every connection goes alone.
    summaries: Option<summary::Summaries>,
    opened: Instant,
    pub max_records: usize,
    pub max_age: Duration,
}

/// A sealed batch: its sequence and encoded body.
pub struct Sealed {
    pub sequence: u64,
    /// How many records it holds.
    pub records: u64,
    pub body: Vec<u8>,
}

fn unix_ms(unix_ns: i128) -> i64 {
    (unix_ns / 1_000_000) as i64
}

impl Outbox {
    pub fn new(agent_id: String, node: String, records: ConnectionRecords) -> Self {
        Outbox {
            agent_id,
            node,
            next_sequence: 1,
            current: wire::Batch::default(),
            summaries: (records == ConnectionRecords::Failures).then(Default::default),
            opened: Instant::now(),
            max_records: 5000,
            max_age: Duration::from_secs(1),
        }
    }

    pub fn batch(&mut self) -> &mut wire::Batch {
        &mut self.current
    }

    /// A finished connection: counted in its summary when healthy, else sent alone. At
    /// trace level each one is logged with what the metrics take from it, summarised or not
    /// (how the e2e test holds summaries to per-connection counting).
    pub fn add_connection(&mut self, r: ConnectionRecord) {
        if tracing::enabled!(tracing::Level::TRACE) {
            trace_connection(&r, self.summaries.is_some() && summary::healthy(&r));
        }
        let alone = match self.summaries.as_mut() {
            Some(summaries) => summaries.add(r),
            None => Some(r),
        };
        if let Some(r) = alone {
            self.current.connections.push(connection(r));
        }
    }

    fn summarised(&self) -> usize {
        self.summaries.as_ref().map_or(0, summary::Summaries::len)
    }

    /// Seal when full, or when old enough and not empty; `force` seals whatever is there.
    pub fn seal_if_due(&mut self, force: bool) -> Option<Sealed> {
        let records = self.current.len() + self.summarised();
        let due = records >= self.max_records || self.opened.elapsed() >= self.max_age || force;
        let empty = self.current.is_empty()
            && self
                .summaries
                .as_ref()
                .is_none_or(summary::Summaries::is_empty);
        if !due || empty {
            if empty {
                self.opened = Instant::now();
            }
            return None;
        }
        if let Some(summaries) = self.summaries.as_mut() {
            self.current.summaries = summaries.take();
        }
        // Taken whole: a burst's vectors go with the batch, the next one starts small.
        let mut batch = std::mem::take(&mut self.current);
        batch.agent_id = self.agent_id.clone();
        batch.node = self.node.clone();
        batch.sequence = self.next_sequence;
        batch.created_unix_ms = unix_ms(crate::clock::unix_now_ns());
        self.next_sequence += 1;
        self.opened = Instant::now();
        Some(Sealed {
            sequence: batch.sequence,
            records: batch.len() as u64,
            body: batch.encode_compressed(),
        })
    }
}

fn trace_connection(r: &ConnectionRecord, healthy: bool) {
    tracing::trace!(
        comm = %r.comm,
        dst = %r.dst,
        result = r.result.label(),
        connect_us = micros(r.connect_ms),
        first_byte_us = r.first_byte_ms.map(micros),
        silent_close = r.silent_close,
        reset = r.reset,
        syn_retransmits = r.syn_retransmits,
        healthy,
        "connection"
    );
}

/// Milliseconds as the whole microseconds the wire carries.
fn micros(ms: f64) -> u64 {
    (ms * 1000.0).round() as u64
}

pub fn connection(r: ConnectionRecord) -> wire::ConnectionOutcome {
    let us = micros;
    wire::ConnectionOutcome {
        unix_ns: r.unix_ns as i64,
        pid: r.pid,
        comm: r.comm,
        src: r.src.to_string(),
        dst: r.dst.to_string(),
        result: r.result as i32,
        errno: r.errno.unwrap_or(0),
        connect_us: us(r.connect_ms),
        first_byte_us: r.first_byte_ms.map(us),
        silent_close: r.silent_close,
        syn_retransmits: u32::from(r.syn_retransmits),
        reset: r.reset,
        bytes_sent: r.bytes_sent,
        bytes_received: r.bytes_received,
        duration_us: us(r.duration_ms),
    }
}

fn identity(p: &ProcessIdentity) -> wire::ProcessIdentity {
    wire::ProcessIdentity {
        pid: p.pid,
        comm: p.comm.clone(),
        cmdline: p.cmdline.clone(),
        unit: p.unit.clone().unwrap_or_default(),
        pod_uid: p.pod_uid.clone().unwrap_or_default(),
        container_id: p.container_id.clone().unwrap_or_default(),
        pod_namespace: p.pod_namespace.clone().unwrap_or_default(),
        pod_name: p.pod_name.clone().unwrap_or_default(),
    }
}

fn exit(e: &ProcessExitInfo) -> wire::ProcessExit {
    wire::ProcessExit {
        pid: e.pid,
        comm: e.comm.clone(),
        unix_ms: unix_ms(e.at),
        status: e.status,
        signal: e.signal,
        stderr_tail: e.stderr_tail.clone(),
        stderr_source: e.stderr_source.clone(),
    }
}

pub fn upstream(s: &UpstreamState) -> wire::UpstreamStatus {
    let l = s.listener.as_ref();
    wire::UpstreamStatus {
        port: u32::from(s.port),
        listening: l.is_some(),
        addr: l
            .map(|l| l.addr)
            .or(s.last_addr)
            .map(|a| a.to_string())
            .unwrap_or_default(),
        accept_queue: l.map_or(0, |l| l.accept_queue),
        backlog: l.map_or(0, |l| l.backlog),
        owner: l.and_then(|l| l.owner.as_ref()).map(identity),
        gone_since_unix_ms: s.gone_since.map_or(0, unix_ms),
        last_owner: s.last_owner.as_ref().map(identity),
        last_exit: s.last_exit.as_ref().map(exit),
        upstream: s.upstream.clone(),
    }
}

pub fn process(s: &RoledSample) -> wire::ProcessSample {
    wire::ProcessSample {
        pid: s.sample.pid,
        comm: s.sample.comm.clone(),
        role: s.role as i32,
        upstream_port: s.port.map_or(0, u32::from),
        cpu_ratio: s.sample.cpu_ratio,
        rss_bytes: s.sample.rss_bytes,
        state: s.sample.state.to_string(),
        threads: s.sample.threads,
        cpu_cores_available: s.sample.cpu_cores_available,
    }
}

/// Where nginx sends requests: one route per `proxy_pass` with a literal address, one per
/// server of the `upstream` block it names (variables in the host are resolved per request,
/// so those are left out). The same route in several masters' configurations is sent once.
pub fn routes(configs: &[NginxConfig]) -> Vec<wire::NginxRoute> {
    let mut seen = std::collections::BTreeSet::new();
    let mut out = Vec::new();
    for config in configs {
        for proxy in &config.proxies {
            let (group, servers) = match &proxy.target {
                ProxyTarget::Address(addr) => ("", std::slice::from_ref(addr)),
                ProxyTarget::Upstream(name) => match config.upstream(name) {
                    Some(u) => (name.as_str(), u.servers.as_slice()),
                    None => continue,
                },
                ProxyTarget::Dynamic(_) => continue,
            };
            let location = proxy.location.clone().unwrap_or_default();
            for server in servers {
                if !seen.insert((proxy.server_names.clone(), location.clone(), server.clone())) {
                    continue;
                }
                out.push(wire::NginxRoute {
                    server_names: proxy.server_names.clone(),
                    location: location.clone(),
                    upstream: server.clone(),
                    group: group.to_owned(),
                    connect_timeout_ms: proxy.connect_timeout.as_millis() as u64,
                    read_timeout_ms: proxy.read_timeout.as_millis() as u64,
                });
            }
        }
    }
    out
}

/// nginx logs the upstream as a URL (`http://127.0.0.1:8084/dead`,
/// `fastcgi://unix:/run/php.sock:`): the destination is what sits between the scheme and the
/// URI, so error series share the `upstream` label with the connection series.
pub fn destination(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    if let Some(path) = rest.strip_prefix("unix:") {
        return format!("unix:{}", path.split(':').next().unwrap_or(path));
    }
    rest.split(['/', '?']).next().unwrap_or(rest).to_owned()
}

/// Every log line is shipped, parsed or not: nothing is lost to a parser.
pub fn log_event(batch: &mut wire::Batch, event: LogEvent, now_ns: i64) {
    match event {
        LogEvent::Error { line, record } => {
            let mut r = wire::NginxErrorRecord {
                unix_ns: now_ns,
                parsed: record.is_some(),
                truncated: line.truncated,
                line: line.text,
                ..Default::default()
            };
            if let Some(rec) = record {
                r.unix_ns = rec.timestamp * 1_000_000_000;
                r.level = rec.level.as_str().to_owned();
                r.errno = rec.errno.unwrap_or(0);
                r.upstream_error = rec
                    .upstream_error
                    .as_ref()
                    .map(UpstreamError::label)
                    .unwrap_or("")
                    .to_owned();
                r.upstream = rec.upstream.as_deref().map(destination).unwrap_or_default();
                r.server = rec.server.unwrap_or_default();
                r.request = rec.request.unwrap_or_default();
                r.phase = rec.phase.unwrap_or_default();
            }
            batch.nginx_errors.push(r);
        }
        LogEvent::Access { line, record } => {
            let status = record.as_ref().and_then(|r| r.status);
            batch.nginx_access.push(wire::NginxAccessRecord {
                unix_ns: now_ns,
                parsed: status.is_some(),
                truncated: line.truncated,
                line: line.text,
                status: status.map_or(0, u32::from),
                upstream_addr: record
                    .as_ref()
                    .and_then(|r| r.upstream_addr.clone())
                    .unwrap_or_default(),
                request_time: record.and_then(|r| r.request_time),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{destination, routes};
    use crate::nginx::{config::parse_file, NginxConfig};

    #[test]
    fn routes_name_each_destination_with_its_sites_and_locations() {
        let text = "http {
            upstream app { server 127.0.0.1:8081; server 127.0.0.1:8082; }
            server { server_name shop.example.com www.shop.example.com;
                proxy_read_timeout 30s;
                location /api/ { proxy_pass http://app; }
                location / { proxy_pass http://127.0.0.1:8084/; }
                location /dyn { proxy_pass http://$host:9000; }
            }
        }";
        let tree = parse_file(text, "nginx.conf").unwrap();
        let config = NginxConfig::from_tree(&tree, std::path::Path::new("/"));
        let routes = routes(&[config.clone(), config]);
        let got: Vec<_> = routes
            .iter()
            .map(|r| (r.location.as_str(), r.upstream.as_str(), r.group.as_str()))
            .collect();
        assert!(got.contains(&("/api/", "127.0.0.1:8081", "app")), "{got:?}");
        assert!(got.contains(&("/api/", "127.0.0.1:8082", "app")), "{got:?}");
        assert!(got.contains(&("/", "127.0.0.1:8084", "")), "{got:?}");
        assert!(
            !got.iter().any(|(l, _, _)| *l == "/dyn"),
            "a variable host is resolved per request: {got:?}"
        );
        assert_eq!(
            got.iter().filter(|(l, ..)| *l == "/").count(),
            1,
            "a route in two masters' configurations is sent once"
        );
        let api = routes.iter().find(|r| r.location == "/api/").unwrap();
        assert_eq!(
            api.server_names,
            ["shop.example.com", "www.shop.example.com"]
        );
        assert_eq!(
            (api.read_timeout_ms, api.connect_timeout_ms),
            (30_000, 60_000)
        );
    }

    #[test]
    fn destinations_from_nginx_upstream_urls() {
        assert_eq!(destination("http://127.0.0.1:8084/dead"), "127.0.0.1:8084");
        assert_eq!(destination("http://127.0.0.1:8084"), "127.0.0.1:8084");
        assert_eq!(destination("http://[::1]:8080/x?y"), "[::1]:8080");
        assert_eq!(
            destination("fastcgi://unix:/run/php/fpm.sock:"),
            "unix:/run/php/fpm.sock"
        );
        assert_eq!(
            destination("http://unix:/tmp/app.sock:/api"),
            "unix:/tmp/app.sock"
        );
    }
}
