//! A strict Loki stand-in (Grafana Loki cannot be installed here), run inside the test
//! process: push as snappy protobuf or JSON with Loki's validation (label syntax, sorted
//! unique labels, line size, too old / too new, structured metadata allowed or not), whole
//! batches rejected with 400 like Loki, 429/500 on demand, and `query_range` for stream
//! selectors with `|=` / `!=` line filters. Its protobuf types are declared here, apart
//! from the collector's, so the two are checked against each other.
use std::{
    collections::{BTreeMap, VecDeque},
    io::{BufRead, BufReader, Read, Write},
    net::{TcpListener, TcpStream},
    sync::{Arc, Mutex},
    time::{SystemTime, UNIX_EPOCH},
};

use prost::Message;
use serde_json::{json, Value};

mod proto {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct PushRequest {
        #[prost(message, repeated, tag = "1")]
        pub streams: Vec<Stream>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Stream {
        #[prost(string, tag = "1")]
        pub labels: String,
        #[prost(message, repeated, tag = "2")]
        pub entries: Vec<Entry>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Entry {
        #[prost(message, optional, tag = "1")]
        pub timestamp: Option<Timestamp>,
        #[prost(string, tag = "2")]
        pub line: String,
        #[prost(message, repeated, tag = "3")]
        pub structured_metadata: Vec<Pair>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Pair {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(string, tag = "2")]
        pub value: String,
    }
    #[derive(Clone, Copy, PartialEq, prost::Message)]
    pub struct Timestamp {
        #[prost(int64, tag = "1")]
        pub seconds: i64,
        #[prost(int32, tag = "2")]
        pub nanos: i32,
    }
}

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

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64
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

fn decode(headers: &BTreeMap<String, String>, body: &[u8]) -> Result<RawStreams, PushError> {
    let bad = |m: String| (400u16, m);
    let content_type = headers
        .get("content-type")
        .map(String::as_str)
        .unwrap_or("");
    if content_type.starts_with("application/json") {
        let v: Value = serde_json::from_slice(body).map_err(|e| bad(format!("loghttp: {e}")))?;
        let mut out = Vec::new();
        for s in v["streams"]
            .as_array()
            .ok_or_else(|| bad("no streams".into()))?
        {
            let labels: Vec<String> = s["stream"]
                .as_object()
                .ok_or_else(|| bad("no stream".into()))?
                .iter()
                .map(|(k, v)| format!("{k}=\"{}\"", v.as_str().unwrap_or("")))
                .collect();
            let mut entries = Vec::new();
            for e in s["values"]
                .as_array()
                .ok_or_else(|| bad("no values".into()))?
            {
                let ts = e[0]
                    .as_str()
                    .and_then(|t| t.parse().ok())
                    .ok_or_else(|| bad("bad timestamp".into()))?;
                let metadata = e[2]
                    .as_object()
                    .map(|m| {
                        m.iter()
                            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_owned()))
                            .collect()
                    })
                    .unwrap_or_default();
                entries.push(Stored {
                    ts_ns: ts,
                    line: e[1].as_str().unwrap_or("").to_owned(),
                    metadata,
                });
            }
            out.push((format!("{{{}}}", labels.join(", ")), entries));
        }
        return Ok(out);
    }
    if !content_type.starts_with("application/x-protobuf") {
        return Err(bad(format!("unsupported Content-Type {content_type:?}")));
    }
    let raw = snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(|e| bad(format!("snappy: {e}")))?;
    let req = proto::PushRequest::decode(raw.as_slice()).map_err(|e| bad(format!("proto: {e}")))?;
    Ok(req
        .streams
        .into_iter()
        .map(|s| {
            let entries = s
                .entries
                .into_iter()
                .map(|e| {
                    let ts = e.timestamp.unwrap_or_default();
                    Stored {
                        ts_ns: ts.seconds * 1_000_000_000 + i64::from(ts.nanos),
                        line: e.line,
                        metadata: e
                            .structured_metadata
                            .into_iter()
                            .map(|p| (p.name, p.value))
                            .collect(),
                    }
                })
                .collect();
            (s.labels, entries)
        })
        .collect())
}

/// Loki's per-batch validation: any invalid stream or entry rejects the whole push.
fn validate(s: &LokiState, streams: RawStreams) -> Result<Vec<(Labels, Vec<Stored>)>, PushError> {
    let mut out = Vec::new();
    let now = now_ns();
    for (text, entries) in streams {
        let labels = parse_selector(&text, true)
            .map_err(|e| (400, format!("error parsing labels {text}: {e}")))?;
        for e in &entries {
            if e.line.len() > s.max_line_bytes {
                return Err((
                    400,
                    format!(
                        "stream '{text}' has a line too long: {} bytes, limit {}",
                        e.line.len(),
                        s.max_line_bytes
                    ),
                ));
            }
            if e.ts_ns < now - MAX_AGE_NS {
                return Err((
                    400,
                    format!(
                        "entry for stream '{text}' has timestamp too old: {}",
                        e.ts_ns
                    ),
                ));
            }
            if e.ts_ns > now + FUTURE_GRACE_NS {
                return Err((
                    400,
                    format!(
                        "entry for stream '{text}' has timestamp too new: {}",
                        e.ts_ns
                    ),
                ));
            }
            if !e.metadata.is_empty() && !s.allow_structured_metadata {
                return Err((400, format!("stream '{text}' includes structured metadata, but this feature is disallowed. Please see `limits_config.allow_structured_metadata` or contact your Loki administrator to enable it.")));
            }
        }
        out.push((labels, entries));
    }
    Ok(out)
}

/// `{a="1", b="2"}` → map. Push labels (`strict`) must be sorted and unique with valid names.
fn parse_selector(text: &str, strict: bool) -> Result<Labels, String> {
    let inner = text
        .trim()
        .strip_prefix('{')
        .and_then(|t| t.strip_suffix('}'))
        .ok_or("not {...}")?;
    let mut labels = Labels::new();
    let mut previous: Option<String> = None;
    let mut rest = inner.trim();
    while !rest.is_empty() {
        let (name, after) = rest.split_once('=').ok_or("expected =")?;
        let name = name.trim();
        let valid = name
            .chars()
            .enumerate()
            .all(|(i, c)| c == '_' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit()));
        if name.is_empty() || !valid {
            return Err(format!("invalid label name {name:?}"));
        }
        let after = after
            .trim_start()
            .strip_prefix('"')
            .ok_or("expected quoted value")?;
        let (mut value, mut end, mut escaped) = (String::new(), None, false);
        for (i, c) in after.char_indices() {
            match (escaped, c) {
                (true, 'n') => {
                    value.push('\n');
                    escaped = false
                }
                (true, c) => {
                    value.push(c);
                    escaped = false
                }
                (false, '\\') => escaped = true,
                (false, '"') => {
                    end = Some(i);
                    break;
                }
                (false, c) => value.push(c),
            }
        }
        let end = end.ok_or("unterminated value")?;
        if strict {
            if previous.as_deref().is_some_and(|p| p >= name) {
                return Err(format!("labels not sorted and unique at {name:?}"));
            }
            previous = Some(name.to_owned());
        }
        labels.insert(name.to_owned(), value);
        rest = after[end + 1..]
            .trim_start()
            .trim_start_matches(',')
            .trim_start();
    }
    Ok(labels)
}

fn query_param(target: &str, key: &str) -> Option<String> {
    let query = target.split_once('?')?.1;
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == key).then(|| percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("00");
                out.push(u8::from_str_radix(hex, 16).unwrap_or(b'?'));
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1
            }
            b => {
                out.push(b);
                i += 1
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `{selector} |= "a" != "b"`; structured metadata is returned as stream labels (Loki 3).
fn query_range(state: &Mutex<LokiState>, target: &str) -> (u16, String) {
    let Some(query) = query_param(target, "query") else {
        return (400, "missing query".into());
    };
    let limit: usize = query_param(target, "limit")
        .and_then(|l| l.parse().ok())
        .unwrap_or(100);
    let close = match query.find('}') {
        Some(i) => i,
        None => return (400, "parse error".into()),
    };
    let selector = match parse_selector(&query[..=close], false) {
        Ok(s) => s,
        Err(e) => return (400, format!("parse error: {e}")),
    };
    let mut filters = Vec::new();
    let mut rest = query[close + 1..].trim();
    while !rest.is_empty() {
        let (op, after) = rest.split_at(2.min(rest.len()));
        let after = after.trim_start();
        let Some(body) = after.strip_prefix('"') else {
            return (400, "parse error: expected string".into());
        };
        let Some(end) = body.find('"') else {
            return (400, "parse error: unterminated".into());
        };
        match op {
            "|=" | "!=" => filters.push((op == "|=", body[..end].to_owned())),
            _ => return (400, format!("unsupported {op}")),
        }
        rest = body[end + 1..].trim();
    }
    let s = state.lock().unwrap();
    let mut result = Vec::new();
    let mut count = 0;
    for (labels, entries) in &s.streams {
        if !selector.iter().all(|(k, v)| labels.get(k) == Some(v)) {
            continue;
        }
        for e in entries.iter().filter(|e| {
            filters
                .iter()
                .all(|(keep, f)| e.line.contains(f.as_str()) == *keep)
        }) {
            if count == limit {
                break;
            }
            count += 1;
            let mut stream = labels.clone();
            stream.extend(e.metadata.clone());
            result.push(json!({"stream": stream, "values": [[e.ts_ns.to_string(), e.line]]}));
        }
    }
    (
        200,
        json!({"status": "success", "data": {"resultType": "streams", "result": result}})
            .to_string(),
    )
}
