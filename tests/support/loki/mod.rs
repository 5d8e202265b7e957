//! A strict Loki stand-in (Grafana Loki cannot be installed here), run inside the test
//! process: push as snappy protobuf or JSON with Loki's validation (label syntax, sorted
//! unique labels, line size, too old / too new, structured metadata allowed or not), whole
//! batches rejected with 400 like Loki, 429 above an ingestion burst, 401/429/5xx on demand,
//! pushes held unanswered (to kill a client mid-push), `query_range` for the LogQL vigil
//! documents, and `status/buildinfo`. It is a Loki 3 by default, or a Loki 2.7: structured
//! metadata dropped without an error, logfmt as 2.7 parses it; buildinfo can be absent (404).
use std::{
    collections::{BTreeMap, VecDeque},
    io::{BufRead, BufReader, Read, Write},
    net::{TcpListener, TcpStream},
    sync::{Arc, Mutex},
};

use prost::Message;

use push::{decode, proto, validate};
use query::query_range;

mod logfmt;
mod logql;
mod push;
mod query;
mod selector;

#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    pub ts_ns: i64,
    pub line: String,
    pub metadata: BTreeMap<String, String>,
}

pub struct LokiState {
    pub streams: BTreeMap<BTreeMap<String, String>, Vec<Stored>>,
    /// Statuses to answer for the next pushes (e.g. 500, 429), before validating.
    pub fail_next: VecDeque<u16>,
    pub allow_structured_metadata: bool,
    pub max_line_bytes: usize,
    /// (status, X-Scope-OrgID) of every push answered.
    pub pushes: Vec<(u16, Option<String>)>,
    /// What `GET /loki/api/v1/status/buildinfo` reports; `None`: no such endpoint (404).
    pub version: Option<String>,
    /// Behave like Loki 2.7: entry field 3 (structured metadata) is unknown to it and dropped
    /// without an error; `| logfmt` stops at the first invalid token.
    pub loki_2x: bool,
    /// Loki's ingestion burst: a push whose lines (and structured metadata) add up to more is
    /// answered 429 every time, however long the client waits.
    pub burst_bytes: Option<usize>,
    /// Hold the next push unanswered until the client goes away.
    pub stall_next: Option<Stall>,
    /// Pushes held so far.
    pub stalled: usize,
}

/// When a held push is held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stall {
    /// Nothing stored: like a Loki that died with the push.
    BeforeStoring,
    /// Stored, the answer never sent: like a connection lost after Loki took it.
    AfterStoring,
}

impl LokiState {
    /// Loki 2.7.4, as still widely run.
    pub fn like_loki_2_7(&mut self) {
        self.version = Some("2.7.4".into());
        self.loki_2x = true;
    }
}

pub struct LokiServer {
    pub port: u16,
    pub state: Arc<Mutex<LokiState>>,
}

type Labels = BTreeMap<String, String>;
/// A push's streams as sent (label text) and as validated (parsed labels).
type RawStreams = Vec<(String, Vec<Stored>)>;
type PushError = (u16, String);
const MAX_AGE_NS: i64 = 7 * 24 * 3600 * 1_000_000_000;
const FUTURE_GRACE_NS: i64 = 10 * 60 * 1_000_000_000;

impl LokiServer {
    pub fn start() -> LokiServer {
        Self::start_on(0)
    }

    pub fn start_on(port: u16) -> LokiServer {
        let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(LokiState {
            streams: BTreeMap::new(),
            fail_next: VecDeque::new(),
            allow_structured_metadata: true,
            max_line_bytes: 256 * 1024,
            pushes: Vec::new(),
            version: Some("3.2.0".into()),
            loki_2x: false,
            burst_bytes: None,
            stall_next: None,
            stalled: 0,
        }));
        let shared = state.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let state = shared.clone();
                std::thread::spawn(move || serve(stream, &state));
            }
        });
        LokiServer { port, state }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A one-entry protobuf push with a hand-written label string (for validation tests).
    pub fn raw_protobuf_push(&self, labels: &str, ts_ns: i64) -> crate::http::Response {
        let req = proto::PushRequest {
            streams: vec![proto::Stream {
                labels: labels.to_owned(),
                entries: vec![proto::Entry {
                    timestamp: Some(proto::Timestamp {
                        seconds: ts_ns / 1_000_000_000,
                        nanos: (ts_ns % 1_000_000_000) as i32,
                    }),
                    line: "raw".into(),
                    structured_metadata: vec![],
                }],
            }],
        };
        let body = snap::raw::Encoder::new()
            .compress_vec(&req.encode_to_vec())
            .unwrap();
        crate::http::request(
            "POST",
            self.port,
            "/loki/api/v1/push",
            &[("Content-Type", "application/x-protobuf")],
            &body,
        )
        .unwrap()
    }

    /// Every stored line whose stream has all of `selector`'s labels.
    pub fn lines(&self, selector: &[(&str, &str)]) -> Vec<Stored> {
        let state = self.state.lock().unwrap();
        state
            .streams
            .iter()
            .filter(|(labels, _)| {
                selector
                    .iter()
                    .all(|(k, v)| labels.get(*k).map(String::as_str) == Some(*v))
            })
            .flat_map(|(_, entries)| entries.iter().cloned())
            .collect()
    }

    /// Entries stored more than once (same stream, timestamp and line): Loki would keep one.
    pub fn duplicates(&self) -> usize {
        let state = self.state.lock().unwrap();
        let mut seen = std::collections::HashSet::new();
        let mut duplicates = 0;
        for (labels, entries) in &state.streams {
            for e in entries {
                if !seen.insert((labels, e.ts_ns, &e.line)) {
                    duplicates += 1;
                }
            }
        }
        duplicates
    }

    /// `GET /loki/api/v1/query_range?query=…`: the body, which must be a 200.
    pub fn query(&self, logql: &str) -> String {
        let path = format!(
            "/loki/api/v1/query_range?query={}&limit=1000",
            crate::http::encode(logql)
        );
        let r = crate::http::get(self.port, &path).unwrap();
        assert_eq!(r.status, 200, "{logql}: {}", r.body);
        r.body
    }
}

fn serve(stream: TcpStream, state: &Mutex<LokiState>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    let mut headers = BTreeMap::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
        }
    }
    let length: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    let _ = reader.read_exact(&mut body);
    let mut parts = request_line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let (status, text) = match (method, target.split('?').next().unwrap_or("")) {
        ("POST", "/loki/api/v1/push") => match push(state, &headers, &body) {
            Some(answer) => answer,
            None => return hold(stream),
        },
        ("GET", "/loki/api/v1/query_range") => query_range(state, target),
        ("GET", "/loki/api/v1/status/buildinfo") => buildinfo(state),
        ("GET", "/ready") => (200, "ready".into()),
        _ => (404, "404 page not found".into()),
    };
    let reason = match status {
        200 => "OK",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        429 => "Too Many Requests",
        _ => "Status",
    };
    let mut out = stream;
    let _ = write!(
        out,
        "HTTP/1.1 {status} {reason}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
        text.len()
    );
}

/// Keeps a held push's connection open, unanswered, until the client closes it (killed, or
/// its timeout).
fn hold(mut stream: TcpStream) {
    let mut byte = [0u8; 1];
    while matches!(stream.read(&mut byte), Ok(n) if n > 0) {}
}

/// Loki's buildinfo: the version as Prometheus' version handler renders it.
fn buildinfo(state: &Mutex<LokiState>) -> (u16, String) {
    match &state.lock().unwrap().version {
        Some(version) => (
            200,
            serde_json::json!({"version": version, "revision": "stand-in", "branch": "HEAD",
                "buildUser": "vigil-e2e", "buildDate": "", "goVersion": ""})
            .to_string(),
        ),
        None => (404, "404 page not found".into()),
    }
}

/// A push's answer, or `None` when it is held (`stall_next`).
fn push(
    state: &Mutex<LokiState>,
    headers: &BTreeMap<String, String>,
    body: &[u8],
) -> Option<(u16, String)> {
    let mut s = state.lock().unwrap();
    let tenant = headers.get("x-scope-orgid").cloned();
    let stall = s.stall_next.take();
    if stall == Some(Stall::BeforeStoring) {
        s.stalled += 1;
        return None;
    }
    let result = match s.fail_next.pop_front() {
        Some(429) => Err((429, rate_limited(tenant.as_deref(), 0, 0, 0))),
        Some(401) => Err((401, "Unauthorized".to_owned())),
        Some(403) => Err((403, "Forbidden".to_owned())),
        Some(code) => Err((code, "rpc error: code = Unavailable".to_owned())),
        None => decode(headers, body)
            .map(|streams| forget_metadata(&s, streams))
            .and_then(|streams| validate(&s, streams))
            .and_then(|streams| within_burst(&s, tenant.as_deref(), streams)),
    };
    let (status, text) = match result {
        Ok(streams) => {
            for (labels, entries) in streams {
                s.streams.entry(labels).or_default().extend(entries);
            }
            (204, String::new())
        }
        Err((status, text)) => (status, text),
    };
    if stall == Some(Stall::AfterStoring) {
        s.stalled += 1;
        return None;
    }
    s.pushes.push((status, tenant));
    Some((status, text))
}

/// Loki 2.7 does not know entry field 3: the metadata is gone before validation.
fn forget_metadata(s: &LokiState, mut streams: RawStreams) -> RawStreams {
    if s.loki_2x {
        for (_, entries) in &mut streams {
            entries.iter_mut().for_each(|e| e.metadata.clear());
        }
    }
    streams
}

/// Loki's rate limiter after validation: a push over the burst is refused with 429.
fn within_burst(
    s: &LokiState,
    tenant: Option<&str>,
    streams: Vec<(Labels, Vec<Stored>)>,
) -> Result<Vec<(Labels, Vec<Stored>)>, PushError> {
    let Some(burst) = s.burst_bytes else {
        return Ok(streams);
    };
    let entries = streams.iter().flat_map(|(_, e)| e);
    let lines = entries.clone().count();
    let bytes: usize = entries
        .map(|e| {
            e.line.len()
                + e.metadata
                    .iter()
                    .map(|(k, v)| k.len() + v.len())
                    .sum::<usize>()
        })
        .sum();
    if bytes > burst {
        return Err((429, rate_limited(tenant, burst, lines, bytes)));
    }
    Ok(streams)
}

fn rate_limited(tenant: Option<&str>, limit: usize, lines: usize, bytes: usize) -> String {
    format!("Ingestion rate limit exceeded for user {} (limit: {limit} bytes/sec) while attempting to ingest '{lines}' lines totaling '{bytes}' bytes, reduce log volume or contact your Loki administrator to see if the limit can be increased", tenant.unwrap_or("fake"))
}
