//! `run`'s health endpoint: `GET /healthz` (200 while the poll loop turns, 503 once it has
//! not for `STALE_AFTER`) and `GET /metrics` (the agent's own counters, Prometheus text).
//! A small HTTP/1.1 responder on std threads: the agent's tokio runtime is current-thread
//! and must never wait on a client. Requests are bounded (head size, read time, concurrent
//! connections); what a bound refuses is counted in /metrics.
use std::{
    fmt::Write as _,
    io::{self, Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    sync::{
        atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use tracing::{debug, info, warn};

/// No turn of the poll loop for this long: the agent is stuck, /healthz says 503.
pub const STALE_AFTER: Duration = Duration::from_secs(30);
/// A request head (request line + headers) larger than this is refused.
const MAX_HEAD_BYTES: usize = 8 * 1024;
/// Connections served at once; more are answered 503 and closed.
const MAX_CONNECTIONS: usize = 4;
/// A client that sends nothing for this long is dropped (kubelet's probes send at once).
const IO_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum HealthError {
    #[error("cannot listen on {addr} for /healthz and /metrics (--listen-health)")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
}

/// `--listen-health`: an address, or none (`off`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenHealth(pub Option<SocketAddr>);

/// `ADDR` or `off`.
pub fn parse_listen(text: &str) -> Result<ListenHealth, String> {
    if text.eq_ignore_ascii_case("off") {
        return Ok(ListenHealth(None));
    }
    text.parse()
        .map(|addr| ListenHealth(Some(addr)))
        .map_err(|_| format!("`{text}` is not an address like 127.0.0.1:9471 (or `off`)"))
}

/// The agent's own counters as the run loop last published them (every --interval).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct SelfMetrics {
    pub probes_loaded: bool,
    pub probe_events_lost: u64,
    pub probe_track_failed: u64,
    pub probe_connects_seen: u64,
    pub probe_exits_lost: u64,
    pub probe_runs_skipped: u64,
    pub connections_reported: u64,
    pub capabilities_missing: Vec<String>,
    pub spool_bytes: u64,
    pub spool_dropped_batches: u64,
    pub spool_corrupt_batches: u64,
    pub batches_sent: u64,
    pub batches_retried: u64,
    pub batches_rejected: u64,
    pub watched_ports: usize,
    pub net_namespaces: usize,
    pub net_namespaces_skipped: u64,
}

/// What the run loop shares with the responder: when it last turned, and its counters.
pub struct HealthState {
    started: Instant,
    /// Milliseconds after `started` of the last turn of the poll loop.
    last_turn_ms: AtomicU64,
    metrics: Mutex<SelfMetrics>,
    refused_connections: AtomicU64,
    bad_requests: AtomicU64,
    /// Connections being served.
    active: AtomicUsize,
    io_timeout: Duration,
    node: String,
}

impl HealthState {
    pub fn new(node: String) -> Arc<Self> {
        Arc::new(HealthState {
            started: Instant::now(),
            last_turn_ms: AtomicU64::new(0),
            metrics: Mutex::new(SelfMetrics::default()),
            refused_connections: AtomicU64::new(0),
            bad_requests: AtomicU64::new(0),
            active: AtomicUsize::new(0),
            io_timeout: IO_TIMEOUT,
            node,
        })
    }

    /// Called on every turn of the poll loop: one atomic store.
    pub fn turned(&self) {
        self.last_turn_ms
            .store(self.started.elapsed().as_millis() as u64, Relaxed);
    }

    pub fn publish(&self, metrics: SelfMetrics) {
        *self.metrics.lock().expect("health metrics lock") = metrics;
    }

    /// Time since the poll loop last turned, seen at `now`.
    fn since_last_turn(&self, now: Instant) -> Duration {
        let last = self.started + Duration::from_millis(self.last_turn_ms.load(Relaxed));
        now.saturating_duration_since(last)
    }

    fn healthy_at(&self, now: Instant) -> bool {
        self.since_last_turn(now) <= STALE_AFTER
    }

    fn render_metrics(&self, now: Instant) -> String {
        let m = self.metrics.lock().expect("health metrics lock").clone();
        let mut out = String::new();
        let node = escape(&self.node);
        let info = format!(
            "{{version=\"{}\",node=\"{node}\"}}",
            env!("CARGO_PKG_VERSION")
        );
        family(
            &mut out,
            "vigil_agent_info",
            "gauge",
            "The agent's version and node.",
            &[(&info, 1.0)],
        );
        let age = self.since_last_turn(now).as_secs_f64();
        let gauges: [(&str, &str, f64); 6] = [
            ("vigil_agent_poll_age_seconds", "Time since the poll loop last turned (/healthz fails past 30 s).", age),
            ("vigil_agent_probes_loaded", "1 when the eBPF probes are loaded.", f64::from(u8::from(m.probes_loaded))),
            ("vigil_agent_spool_queued_bytes", "Encoded batches waiting for the collector.", m.spool_bytes as f64),
            ("vigil_agent_watched_ports", "Upstream ports watched.", m.watched_ports as f64),
            ("vigil_agent_net_namespaces", "Network namespaces whose listeners are read (the agent's own included).", m.net_namespaces as f64),
            ("vigil_agent_capabilities_missing", "Kernel capabilities the probes could not attach (see vigil_agent_capability_missing).", m.capabilities_missing.len() as f64),
        ];
        for (name, help, value) in gauges {
            family(&mut out, name, "gauge", help, &[("", value)]);
        }
        let counters: [(&str, &str, u64); 14] = [
            (
                "vigil_agent_probe_events_lost_total",
                "Probe events lost (ring buffer full).",
                m.probe_events_lost,
            ),
            (
                "vigil_agent_probe_track_failed_total",
                "Connections the probes could not track (map full).",
                m.probe_track_failed,
            ),
            (
                "vigil_agent_probe_connects_seen_total",
                "Connects to watched ports the probes saw.",
                m.probe_connects_seen,
            ),
            (
                "vigil_agent_probe_exits_lost_total",
                "Exits of watched processes lost (ring buffer full).",
                m.probe_exits_lost,
            ),
            (
                "vigil_agent_probe_runs_skipped_total",
                "Probe runs the kernel skipped: the same program was already running on that CPU (a nested event); a skipped close leaves its connection unreported.",
                m.probe_runs_skipped,
            ),
            (
                "vigil_agent_connections_reported_total",
                "Finished connections read from the probes.",
                m.connections_reported,
            ),
            (
                "vigil_agent_spool_dropped_batches_total",
                "Batches the spool bound dropped (oldest first).",
                m.spool_dropped_batches,
            ),
            (
                "vigil_agent_spool_corrupt_batches_total",
                "Spooled batches set aside as unreadable.",
                m.spool_corrupt_batches,
            ),
            (
                "vigil_agent_batches_sent_total",
                "Batches the collector accepted.",
                m.batches_sent,
            ),
            (
                "vigil_agent_batches_retried_total",
                "Deliveries that failed and are retried.",
                m.batches_retried,
            ),
            (
                "vigil_agent_batches_rejected_total",
                "Batches the collector refused for good (4xx).",
                m.batches_rejected,
            ),
            (
                "vigil_agent_net_namespaces_skipped_total",
                "Network namespaces not read: over the bound or gone.",
                m.net_namespaces_skipped,
            ),
            (
                "vigil_agent_health_refused_connections_total",
                "Connections to this endpoint refused: too many at once.",
                self.refused_connections.load(Relaxed),
            ),
            (
                "vigil_agent_health_bad_requests_total",
                "Requests to this endpoint that were too large, too slow or malformed.",
                self.bad_requests.load(Relaxed),
            ),
        ];
        for (name, help, value) in counters {
            family(&mut out, name, "counter", help, &[("", value as f64)]);
        }
        let missing: Vec<(String, f64)> = m
            .capabilities_missing
            .iter()
            .map(|c| (format!("{{capability=\"{}\"}}", escape(c)), 1.0))
            .collect();
        let missing: Vec<(&str, f64)> = missing.iter().map(|(l, v)| (l.as_str(), *v)).collect();
        family(
            &mut out,
            "vigil_agent_capability_missing",
            "gauge",
            "1 for each kernel capability the probes lack.",
            &missing,
        );
        out
    }
}

fn family(out: &mut String, name: &str, kind: &str, help: &str, samples: &[(&str, f64)]) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    for (labels, value) in samples {
        let _ = writeln!(out, "{name}{labels} {value}");
    }
}

/// A label value as the text format wants it.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Binds `addr` now (so a taken port is an error at start) and serves from a thread.
pub fn serve(addr: SocketAddr, state: Arc<HealthState>) -> Result<SocketAddr, HealthError> {
    let listener = TcpListener::bind(addr).map_err(|source| HealthError::Bind { addr, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| HealthError::Bind { addr, source })?;
    std::thread::Builder::new()
        .name("vigil-health".into())
        .spawn(move || accept_loop(listener, state))
        .map_err(|source| HealthError::Bind { addr, source })?;
    info!(%bound, "serving /healthz and /metrics");
    Ok(bound)
}

fn accept_loop(listener: TcpListener, state: Arc<HealthState>) {
    for stream in listener.incoming() {
        let mut stream = match stream {
            Ok(s) => s,
            Err(e) => {
                debug!("health endpoint accept: {e}");
                // EMFILE and friends: do not spin.
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        let _ = stream.set_write_timeout(Some(state.io_timeout));
        if state.active.fetch_add(1, Relaxed) >= MAX_CONNECTIONS {
            state.active.fetch_sub(1, Relaxed);
            state.refused_connections.fetch_add(1, Relaxed);
            let _ = respond(&mut stream, 503, "text/plain", b"busy\n", false);
            continue;
        }
        let conn_state = state.clone();
        let spawned = std::thread::Builder::new()
            .name("vigil-health-conn".into())
            .spawn(move || {
                handle(stream, &conn_state);
                conn_state.active.fetch_sub(1, Relaxed);
            });
        if let Err(e) = spawned {
            warn!("health endpoint: cannot start a connection thread: {e}");
            state.active.fetch_sub(1, Relaxed);
        }
    }
}

fn handle(mut stream: TcpStream, state: &HealthState) {
    let _ = stream.set_read_timeout(Some(state.io_timeout));
    let head = match read_head(&mut stream) {
        Ok(head) => head,
        Err(status) => {
            state.bad_requests.fetch_add(1, Relaxed);
            let _ = respond(&mut stream, status, "text/plain", b"bad request\n", false);
            return;
        }
    };
    let mut words = head.split(' ');
    let (method, target) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    let head_only = method == "HEAD";
    let now = Instant::now();
    let result = match (method, path) {
        ("GET" | "HEAD", "/healthz") if state.healthy_at(now) => {
            respond(&mut stream, 200, "text/plain", b"ok\n", head_only)
        }
        ("GET" | "HEAD", "/healthz") => {
            let body = format!(
                "stale: the poll loop last turned {:.0} s ago\n",
                state.since_last_turn(now).as_secs_f64()
            );
            respond(&mut stream, 503, "text/plain", body.as_bytes(), head_only)
        }
        ("GET" | "HEAD", "/metrics") => {
            let body = state.render_metrics(now);
            let kind = "text/plain; version=0.0.4; charset=utf-8";
            respond(&mut stream, 200, kind, body.as_bytes(), head_only)
        }
        ("GET" | "HEAD", _) => respond(&mut stream, 404, "text/plain", b"not found\n", head_only),
        _ => respond(&mut stream, 405, "text/plain", b"GET only\n", false),
    };
    if let Err(e) = result {
        debug!("health endpoint: cannot answer: {e}");
    }
}

/// The request line, once the whole head arrived; an HTTP status when it cannot be had.
fn read_head(stream: &mut TcpStream) -> Result<String, u16> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        if head.len() > MAX_HEAD_BYTES {
            return Err(431);
        }
        match stream.read(&mut buf) {
            Ok(0) => return Err(400),
            Ok(n) => head.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Err(408),
        }
    }
    let line_end = head.iter().position(|&b| b == b'\r').unwrap_or(head.len());
    let line = std::str::from_utf8(&head[..line_end]).map_err(|_| 400u16)?;
    if !line.ends_with(" HTTP/1.1") && !line.ends_with(" HTTP/1.0") {
        return Err(400);
    }
    Ok(line.to_owned())
}

fn respond(
    stream: &mut TcpStream,
    status: u16,
    content_type: &str,
    body: &[u8],
    head_only: bool,
) -> io::Result<()> {
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Bad Request",
    };
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    if !head_only {
        stream.write_all(body)?;
    }
    stream.flush()
}

#[cfg(test)]
#[path = "health_tests.rs"]
mod tests;
