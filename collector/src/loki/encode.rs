//! From collector log entries to a Loki push body: few stream labels (`job`, `node`,
//! `source`, `level`), everything else as structured metadata — or folded into the line as
//! logfmt for a Loki that refuses structured metadata. Entries sorted by time per stream.
use std::collections::BTreeMap;

use prost::Message;

use super::proto::{EntryAdapter, LabelPairAdapter, PushRequest, StreamAdapter, Timestamp};

/// One line bound for Loki.
#[derive(Debug, Clone, PartialEq)]
pub struct LogEntry {
    /// Shared by the lines of one accepted batch: when the last of them is dropped — Loki
    /// acknowledged it, it is in the spool, or it was finally refused and counted — the
    /// batch's write-ahead log record is released. None for lines not from a batch.
    pub release: Option<std::sync::Arc<crate::wal::WalTicket>>,
    pub unix_ns: i64,
    pub node: String,
    /// ebpf | nginx_error | nginx_access | alert
    pub source: &'static str,
    pub level: &'static str,
    pub line: String,
    pub metadata: Vec<(&'static str, String)>,
}

impl LogEntry {
    /// Rough encoded size, for batching by bytes.
    pub fn size(&self) -> usize {
        self.line.len()
            + self
                .metadata
                .iter()
                .map(|(k, v)| k.len() + v.len() + 4)
                .sum::<usize>()
            + 16
    }

    /// What tells its stream apart; the label text is built once per stream.
    fn stream_key(&self) -> (&'static str, &str, &'static str) {
        (self.level, &self.node, self.source)
    }
}

/// The stream's labels, sorted by name as Loki requires. `level` and `source` come from a
/// fixed vocabulary that needs no escaping.
fn stream_labels((level, node, source): (&str, &str, &str)) -> String {
    format!(
        "{{job=\"vigil\", level=\"{level}\", node=\"{}\", source=\"{source}\"}}",
        escape(node)
    )
}

/// LogQL string escaping for label values.
pub fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// Appends metadata to the line as logfmt (` key=value`, quoted when needed).
pub fn fold_metadata(line: &str, metadata: &[(&'static str, String)]) -> String {
    let mut out = line.to_owned();
    for (k, v) in metadata {
        if v.is_empty() || v.contains([' ', '"', '=']) {
            out += &format!(" {k}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\""));
        } else {
            out += &format!(" {k}={v}");
        }
    }
    out
}

/// Builds the protobuf push request. `with_metadata = false` folds metadata into lines.
pub fn push_request(entries: &[LogEntry], with_metadata: bool) -> PushRequest {
    let mut streams: BTreeMap<(&str, &str, &str), Vec<&LogEntry>> = BTreeMap::new();
    for e in entries {
        streams.entry(e.stream_key()).or_default().push(e);
    }
    let streams = streams
        .into_iter()
        .map(|(key, mut list)| {
            let labels = stream_labels(key);
            list.sort_by_key(|e| e.unix_ns);
            let entries = list
                .into_iter()
                .map(|e| EntryAdapter {
                    timestamp: Some(Timestamp::from_unix_ns(e.unix_ns)),
                    line: if with_metadata {
                        e.line.clone()
                    } else {
                        fold_metadata(&e.line, &e.metadata)
                    },
                    structured_metadata: if with_metadata {
                        e.metadata
                            .iter()
                            .filter(|(_, v)| !v.is_empty())
                            .map(|(k, v)| LabelPairAdapter {
                                name: (*k).to_owned(),
                                value: v.clone(),
                            })
                            .collect()
                    } else {
                        Vec::new()
                    },
                })
                .collect();
            StreamAdapter {
                labels,
                entries,
                hash: 0,
            }
        })
        .collect();
    PushRequest { streams }
}

/// The body of `POST /loki/api/v1/push`: protobuf, snappy raw block (not framed).
pub fn encode_push(entries: &[LogEntry], with_metadata: bool) -> Vec<u8> {
    let raw = push_request(entries, with_metadata).encode_to_vec();
    snap::raw::Encoder::new()
        .compress_vec(&raw)
        .expect("snappy compresses any input")
}

/// Snappy cannot expand more than this (a 3-byte copy of 64 bytes); a header claiming more
/// is corrupt, and is refused before allocating.
const SNAPPY_MAX_RATIO: usize = 22;

/// Inverse of [`encode_push`] (with metadata) for batches the collector spooled to disk;
/// `None` when the body is not one (corrupt).
pub fn decode_spooled(body: &[u8]) -> Option<Vec<LogEntry>> {
    let claimed = snap::raw::decompress_len(body).ok()?;
    if claimed > body.len().saturating_mul(SNAPPY_MAX_RATIO) + 16 {
        return None;
    }
    let raw = snap::raw::Decoder::new().decompress_vec(body).ok()?;
    let req = PushRequest::decode(raw.as_slice()).ok()?;
    let mut out = Vec::new();
    for s in req.streams {
        let label = |name: &str| label_value(&s.labels, name);
        let source = match label("source")?.as_str() {
            "ebpf" => "ebpf",
            "nginx_error" => "nginx_error",
            "nginx_access" => "nginx_access",
            _ => "alert",
        };
        let level = match label("level")?.as_str() {
            "error" => "error",
            "warn" => "warn",
            "info" => "info",
            "debug" => "debug",
            _ => "unknown",
        };
        let node = label("node")?;
        for e in s.entries {
            let ts = e.timestamp.unwrap_or_default();
            out.push(LogEntry {
                release: None,
                unix_ns: ts.seconds * 1_000_000_000 + i64::from(ts.nanos),
                node: node.clone(),
                source,
                level,
                line: e.line,
                metadata: e
                    .structured_metadata
                    .into_iter()
                    .filter_map(|p| Some((metadata_name(&p.name)?, p.value)))
                    .collect(),
            });
        }
    }
    Some(out)
}

/// The value of label `name` in a stream's label text, unescaped (inverse of [`escape`]).
fn label_value(labels: &str, name: &str) -> Option<String> {
    let start = labels.find(&format!("{name}=\""))? + name.len() + 2;
    let mut value = String::new();
    let mut chars = labels[start..].chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return Some(value),
            '\\' => match chars.next()? {
                'n' => value.push('\n'),
                escaped => value.push(escaped),
            },
            c => value.push(c),
        }
    }
    None
}

/// Metadata names are a fixed vocabulary; map a decoded one back to it.
fn metadata_name(name: &str) -> Option<&'static str> {
    [
        "upstream",
        "result",
        "upstream_error",
        "errno",
        "parsed",
        "truncated",
        "status",
        "alertname",
    ]
    .into_iter()
    .find(|n| *n == name)
}

#[cfg(test)]
mod tests;
