//! Which records of an agent batch become Loki log lines, and how: failed or abnormal
//! connections as logfmt `ebpf` lines, nginx error and access log lines as they were written
//! (flagged when unparsed or cut), with the stream level and structured metadata.
use std::fmt::Write;

use vigil_wire::{Batch, ConnectResult};

use super::encode::LogEntry;

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
            release: None,
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
        release: None,
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
