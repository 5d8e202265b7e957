//! A strict Loki stand-in (Grafana Loki cannot be installed here), run inside the test
//! process: push as snappy protobuf or JSON with Loki's validation (label syntax, sorted
//! unique labels, line size, too old / too new, structured metadata allowed or not), whole
//! batches rejected with 400 like Loki, 429/500 on demand, and `query_range` for stream
//! selectors with `|=` / `!=` line filters.
use std::{
    collections::{BTreeMap, VecDeque},
    io::{BufRead, BufReader, Read, Write},
    net::{TcpListener, TcpStream},
    sync::{Arc, Mutex},
};

use prost::Message;

use push::{decode, proto, validate};
use query::query_range;

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
    /// (status, X-Scope-OrgID) of every push.
    pub pushes: Vec<(u16, Option<String>)>,
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
        ("POST", "/loki/api/v1/push") => push(state, &headers, &body),
        ("GET", "/loki/api/v1/query_range") => query_range(state, target),
        ("GET", "/ready") => (200, "ready".into()),
        _ => (404, "404 page not found".into()),
    };
    let reason = match status {
        200 => "OK",
        204 => "No Content",
        400 => "Bad Request",
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

fn push(
    state: &Mutex<LokiState>,
    headers: &BTreeMap<String, String>,
    body: &[u8],
) -> (u16, String) {
    let mut s = state.lock().unwrap();
    let tenant = headers.get("x-scope-orgid").cloned();
    let result = match s.fail_next.pop_front() {
        Some(429) => Err((
            429,
            "Ingestion rate limit exceeded for user fake".to_owned(),
        )),
        Some(code) => Err((code, "rpc error: code = Unavailable".to_owned())),
        None => decode(headers, body).and_then(|streams| validate(&s, streams)),
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
    s.pushes.push((status, tenant));
    (status, text)
}
