//! Loki shipping: which records become log lines (`entries`), how they are encoded
//! (`encode`, `proto`) and how they are delivered (`sink`).
//!
//! Streams: `{job="vigil", node, source, level}` with source ∈ ebpf | nginx_error |
//! nginx_access | alert; everything else is structured metadata. ebpf lines are logfmt;
//! nginx lines are the raw log line.
pub mod encode;
pub mod proto;
mod shipper;
pub mod sink;

use std::fmt::Write;

use vigil_wire::{Batch, ConnectResult};

pub use encode::LogEntry;

/// Spool file ids: ordered across restarts (time-based start), unique within a run.
pub fn next_spool_id() -> u128 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    static START: std::sync::OnceLock<u128> = std::sync::OnceLock::new();
    let start = *START.get_or_init(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros())
            .unwrap_or(0)
    });
    start * 1_000_000 + u128::from(NEXT.fetch_add(1, Ordering::Relaxed))
}
pub use sink::{LokiAuth, LokiConfig, LokiSink};

/// The log lines a batch yields: failed or abnormal connections (healthy ones are in the
/// metrics), and every nginx log line, parsed or not. Takes the batch: its strings move into
/// the entries instead of being copied.
pub fn entries_from_batch(batch: Batch) -> Vec<LogEntry> {
    let node = batch.node;
    let mut out = Vec::new();
    for c in batch.connections {
        let ok = c.result() == ConnectResult::Ok;
        if ok && !c.silent_close && !c.reset {
            continue;
        }
        let result = c.result().label();
        let mut line = format!(
            "connect result={result} src={} dst={} comm={} pid={} connect_ms={:.3} syn_retransmits={}",
            c.src, c.dst, c.comm, c.pid, c.connect_us as f64 / 1000.0, c.syn_retransmits
        );
        if c.errno != 0 {
            let _ = write!(line, " errno={}", c.errno);
        }
        if c.silent_close {
            line += " silent_close=true";
        }
        if c.reset {
            line += " reset=true";
        }
        out.push(LogEntry {
            unix_ns: c.unix_ns,
            node: node.clone(),
            source: "ebpf",
            level: if ok { "warn" } else { "error" },
            line,
            metadata: vec![("upstream", c.dst), ("result", result.to_owned())],
        });
    }
    for e in batch.nginx_errors {
        let mut metadata = vec![
            ("upstream", e.upstream),
            ("upstream_error", e.upstream_error),
        ];
        if e.errno != 0 {
            metadata.push(("errno", e.errno.to_string()));
        }
        let flags = (e.parsed, e.truncated);
        let level = level(&e.level);
        out.push(nginx_entry(
            &node,
            "nginx_error",
            level,
            e.line,
            flags,
            metadata,
            e.unix_ns,
        ));
    }
    for a in batch.nginx_access {
        let mut metadata = vec![("upstream", a.upstream_addr)];
        if a.parsed {
            metadata.push(("status", a.status.to_string()));
        }
        let flags = (a.parsed, a.truncated);
        out.push(nginx_entry(
            &node,
            "nginx_access",
            "info",
            a.line,
            flags,
            metadata,
            a.unix_ns,
        ));
    }
    out
}

/// An nginx log line as shipped: the raw line, flagged when it did not parse or was cut.
fn nginx_entry(
    node: &str,
    source: &'static str,
    level: &'static str,
    line: String,
    (parsed, truncated): (bool, bool),
    mut metadata: Vec<(&'static str, String)>,
    unix_ns: i64,
) -> LogEntry {
    if !parsed {
        metadata.push(("parsed", "false".into()));
    }
    if truncated {
        metadata.push(("truncated", "true".into()));
    }
    LogEntry {
        unix_ns,
        node: node.to_owned(),
        source,
        level,
        line,
        metadata,
    }
}

/// nginx levels mapped to the few Loki `level` values we use (keeps stream count low).
fn level(nginx: &str) -> &'static str {
    match nginx {
        "emerg" | "alert" | "crit" | "error" => "error",
        "warn" => "warn",
        "notice" | "info" => "info",
        "debug" => "debug",
        _ => "unknown",
    }
}
