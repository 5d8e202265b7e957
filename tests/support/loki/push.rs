//! What a push must be to be stored: its protobuf (snappy) or JSON body decoded, then
//! validated per batch as Loki does. The protobuf types are declared here, apart from the
//! collector's, so the two are checked against each other.
use std::collections::BTreeMap;

use prost::Message;
use serde_json::Value;

use crate::now_ns;

use super::{
    selector::parse_selector, Labels, LokiState, PushError, RawStreams, Stored, FUTURE_GRACE_NS,
    MAX_AGE_NS,
};

pub(super) mod proto {
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

pub(super) fn decode(
    headers: &BTreeMap<String, String>,
    body: &[u8],
) -> Result<RawStreams, PushError> {
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
            // JSON label values must be strings; they are quoted into Loki's label syntax.
            let labels = s["stream"]
                .as_object()
                .ok_or_else(|| bad("no stream".into()))?
                .iter()
                .map(|(k, v)| match v {
                    Value::String(v) => Ok(format!("{k}={}", Value::from(v.as_str()))),
                    _ => Err(bad(format!("loghttp: label {k} is not a string"))),
                })
                .collect::<Result<Vec<String>, _>>()?;
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
pub(super) fn validate(
    s: &LokiState,
    streams: RawStreams,
) -> Result<Vec<(Labels, Vec<Stored>)>, PushError> {
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
