//! Builders for the alert tests: wire records as agents send them (nginx lines in nginx's
//! own wording), and evidence or findings made from them.
use vigil_wire::{
    Batch, ConnectResult, ConnectionOutcome, NginxErrorRecord, NginxRoute, ProcessExit,
    ProcessIdentity, ProcessRole, ProcessSample, UpstreamStatus,
};

use super::{
    evidence::{Dropped, NodeEvidence, Observe},
    rules::{diagnose, Finding},
    view::UpstreamView,
};

/// 2026-11-25T10:33:58Z.
pub const T0: i64 = 1_795_602_838_000;
pub const GAP_MS: i64 = 10_000;
pub const UP: &str = "127.0.0.1:8084";
pub const SITE: &str = "client-portal.example.com";

pub fn batch(node: &str, created_ms: i64) -> Batch {
    Batch {
        agent_id: format!("{node}/1"),
        sequence: 1,
        node: node.into(),
        created_unix_ms: created_ms,
        ..Default::default()
    }
}

pub fn conn(dst: &str, result: ConnectResult, end_ms: i64) -> ConnectionOutcome {
    ConnectionOutcome {
        unix_ns: end_ms * 1_000_000,
        pid: 900,
        comm: "nginx".into(),
        src: "127.0.0.1:40000".into(),
        dst: dst.into(),
        result: result as i32,
        errno: match result {
            ConnectResult::Refused => 111,
            _ => 0,
        },
        ..Default::default()
    }
}

pub fn answered(dst: &str, end_ms: i64) -> ConnectionOutcome {
    ConnectionOutcome {
        first_byte_us: Some(2000),
        ..conn(dst, ConnectResult::Ok, end_ms)
    }
}

/// nginx sent a request and closed after `lasted_ms` with no response byte.
pub fn silent(dst: &str, end_ms: i64, lasted_ms: i64) -> ConnectionOutcome {
    ConnectionOutcome {
        unix_ns: (end_ms - lasted_ms) * 1_000_000,
        duration_us: lasted_ms as u64 * 1000,
        silent_close: true,
        ..conn(dst, ConnectResult::Ok, 0)
    }
}

/// An error.log record as the agent parses it (host in UTC): `what` is nginx's message.
pub fn nginx_error(
    upstream: &str,
    upstream_error: &str,
    errno: i32,
    what: &str,
    phase: &str,
    at_ms: i64,
) -> NginxErrorRecord {
    let url = if upstream.starts_with("unix:") {
        format!("http://{upstream}:/")
    } else {
        format!("http://{upstream}/")
    };
    let line = format!(
        "2026/11/25 10:33:58 [error] 1234#1234: *5 {what} while {phase}, client: 127.0.0.1, \
         server: {SITE}, request: \"GET /login HTTP/1.1\", upstream: \"{url}\", host: \"{SITE}\""
    );
    NginxErrorRecord {
        unix_ns: at_ms / 1000 * 1_000_000_000,
        line,
        parsed: true,
        level: "error".into(),
        errno,
        upstream_error: upstream_error.into(),
        upstream: upstream.into(),
        server: SITE.into(),
        request: "GET /login HTTP/1.1".into(),
        phase: phase.into(),
        ..Default::default()
    }
}

pub fn refused_line(upstream: &str, at_ms: i64) -> NginxErrorRecord {
    nginx_error(
        upstream,
        "refused",
        111,
        "connect() failed (111: Connection refused)",
        "connecting to upstream",
        at_ms,
    )
}

pub fn read_timeout_line(upstream: &str, at_ms: i64) -> NginxErrorRecord {
    nginx_error(
        upstream,
        "timeout",
        110,
        "upstream timed out (110: Connection timed out)",
        "reading response header from upstream",
        at_ms,
    )
}

pub fn connect_timeout_line(upstream: &str, at_ms: i64) -> NginxErrorRecord {
    nginx_error(
        upstream,
        "timeout",
        110,
        "upstream timed out (110: Connection timed out)",
        "connecting to upstream",
        at_ms,
    )
}

pub fn route(names: &[&str], location: &str, upstream: &str, group: &str) -> NginxRoute {
    NginxRoute {
        server_names: names.iter().map(|n| n.to_string()).collect(),
        location: location.into(),
        upstream: upstream.into(),
        group: group.into(),
        connect_timeout_ms: 60_000,
        read_timeout_ms: 60_000,
    }
}

pub fn listener(upstream: &str, listening: bool, queue: u32, backlog: u32) -> UpstreamStatus {
    let port = upstream.rsplit_once(':').unwrap().1.parse().unwrap();
    UpstreamStatus {
        port,
        listening,
        addr: upstream.into(),
        accept_queue: queue,
        backlog,
        upstream: upstream.into(),
        owner: listening.then(|| owner(4242, "client-portal.service")),
        ..Default::default()
    }
}

pub fn owner(pid: u32, unit: &str) -> ProcessIdentity {
    ProcessIdentity {
        pid,
        comm: "python3".into(),
        cmdline: "python3 app.py".into(),
        unit: unit.into(),
        ..Default::default()
    }
}

/// Nothing listens since `gone_ms`; the last owner exited with status 1 and this stderr.
pub fn crashed(upstream: &str, gone_ms: i64, stderr: &[&str]) -> UpstreamStatus {
    UpstreamStatus {
        gone_since_unix_ms: gone_ms,
        last_owner: Some(owner(4242, "drupal-client4.service")),
        last_exit: Some(ProcessExit {
            pid: 4242,
            comm: "python3".into(),
            unix_ms: gone_ms,
            status: Some(1),
            stderr_tail: stderr.iter().map(|l| l.to_string()).collect(),
            stderr_source: "journal:drupal-client4.service".into(),
            ..Default::default()
        }),
        ..listener(upstream, false, 0, 0)
    }
}

pub fn worker(pid: u32, port: u32, cpu: f64, state: &str, cores: f64) -> ProcessSample {
    ProcessSample {
        pid,
        comm: "gunicorn".into(),
        role: ProcessRole::UpstreamWorker as i32,
        upstream_port: port,
        cpu_ratio: Some(cpu),
        rss_bytes: 50 << 20,
        state: state.into(),
        threads: 1,
        cpu_cores_available: Some(cores),
    }
}

/// A node's evidence after these batches (each observed at its own creation time).
pub fn evidence_of(batches: &[Batch]) -> NodeEvidence {
    let mut node = NodeEvidence::default();
    let mut total = 0;
    for b in batches {
        let mut ctx = Observe {
            gap_ms: GAP_MS,
            wall_ms: b.created_unix_ms,
            upstreams_total: &mut total,
            max_upstreams: 1000,
            dropped: Dropped::default(),
        };
        node.observe(b, &mut ctx);
    }
    node
}

/// What the rules find on `upstream` of that node now.
pub fn findings(node: &NodeEvidence, upstream: &str) -> Vec<Finding> {
    let Some(evidence) = node.upstreams.get(upstream) else {
        return Vec::new();
    };
    diagnose(&UpstreamView {
        node: "web-1",
        upstream,
        now_ms: node.clock_ms,
        gap_ms: GAP_MS,
        evidence,
        node_evidence: node,
        saturated_active: false,
    })
}

pub fn causes(found: &[Finding]) -> Vec<super::model::Cause> {
    found.iter().map(|f| f.cause).collect()
}
