//! Runs, record times, error.log classification and the bounds of the evidence.
use vigil_wire::{ConnectResult, NginxRoute};

use super::*;
use crate::alerts::testing::*;

#[test]
fn runs_split_at_the_gap_and_take_late_records() {
    let mut r = Run::default();
    r.add(1000, 1, 500);
    r.add(1400, 2, 500);
    assert_eq!(
        r,
        Run {
            first_ms: 1000,
            last_ms: 1400,
            count: 3
        }
    );
    r.add(900, 1, 500);
    assert_eq!(
        (r.first_ms, r.count),
        (900, 4),
        "a late record within the gap joins"
    );
    r.add(100, 1, 500);
    assert_eq!(r.count, 4, "one from an earlier run does not");
    r.add(1900, 1, 500);
    assert_eq!(
        r,
        Run {
            first_ms: 1900,
            last_ms: 1900,
            count: 1
        },
        "a new run"
    );
    assert!(r.alive(2399, 500) && !r.alive(2400, 500));
    assert!(!Run::default().alive(0, 500));
}

fn observed(
    batches: &[vigil_wire::Batch],
    wall_ms: i64,
    max_upstreams: usize,
) -> (NodeEvidence, Dropped) {
    let mut node = NodeEvidence::default();
    let mut total = 0;
    let mut dropped = Dropped::default();
    for b in batches {
        let mut ctx = Observe {
            gap_ms: GAP_MS,
            wall_ms,
            upstreams_total: &mut total,
            max_upstreams,
            dropped,
        };
        node.observe(b, &mut ctx);
        dropped = ctx.dropped;
    }
    (node, dropped)
}

#[test]
fn an_agent_clock_ahead_of_ours_is_shifted_back() {
    let mut b = batch("web-1", T0 + 30_000);
    b.connections
        .push(conn(UP, ConnectResult::Refused, T0 + 29_500));
    let (node, _) = observed(&[b], T0, 100);
    assert_eq!(node.clock_ms, T0);
    assert_eq!(
        node.upstreams[UP].run(Signal::ConnRefused).last_ms,
        T0 - 500
    );
    // Behind ours is delay (a spooled batch), kept as it is.
    let mut b = batch("web-1", T0 - 60_000);
    b.connections
        .push(conn(UP, ConnectResult::Refused, T0 - 60_500));
    let (node, _) = observed(&[b], T0, 100);
    assert_eq!(
        node.upstreams[UP].run(Signal::ConnRefused).last_ms,
        T0 - 60_500
    );
}

#[test]
fn nginx_local_time_is_put_back_in_utc() {
    // nginx on UTC+2 wrote 12:33:58 for 10:33:58Z; the agent read it as UTC.
    let mut e = refused_line(UP, T0 + 2 * 3600 * 1000);
    e.unix_ns = (T0 + 2 * 3600 * 1000) * 1_000_000;
    let mut b = batch("web-1", T0 + 800);
    b.nginx_errors.push(e);
    let (node, _) = observed(&[b], T0 + 800, 100);
    assert_eq!(node.upstreams[UP].run(Signal::LogRefused).last_ms, T0 + 500);
}

#[test]
fn error_lines_are_classified_by_what_nginx_was_doing() {
    let cases = [
        (refused_line(UP, T0), Some(Signal::LogRefused)),
        (read_timeout_line(UP, T0), Some(Signal::LogReadTimeout)),
        (
            connect_timeout_line(UP, T0),
            Some(Signal::LogConnectTimeout),
        ),
        (
            nginx_error(
                UP,
                "timeout",
                110,
                "upstream timed out (110: Connection timed out)",
                "sending request to upstream",
                T0,
            ),
            Some(Signal::LogReadTimeout),
        ),
        (
            nginx_error(
                UP,
                "timeout",
                110,
                "upstream timed out (110: Connection timed out)",
                "reading upstream",
                T0,
            ),
            None,
        ),
        (
            nginx_error(
                UP,
                "unreachable",
                113,
                "connect() failed (113: No route to host)",
                "connecting to upstream",
                T0,
            ),
            Some(Signal::LogUnreachable),
        ),
        (
            nginx_error(
                "backend",
                "no_live_upstreams",
                0,
                "no live upstreams",
                "connecting to upstream",
                T0,
            ),
            Some(Signal::LogNoLive),
        ),
        (
            nginx_error(
                UP,
                "error",
                99,
                "connect() failed (99: Cannot assign requested address)",
                "connecting to upstream",
                T0,
            ),
            None,
        ),
        (
            nginx_error(
                UP,
                "error",
                2,
                "connect() failed (2: No such file or directory)",
                "connecting to upstream",
                T0,
            ),
            None,
        ),
        (
            nginx_error(
                "unix:/run/a.sock",
                "refused",
                111,
                "connect() to unix:/run/a.sock failed (111: Connection refused)",
                "connecting to upstream",
                T0,
            ),
            Some(Signal::LogRefused),
        ),
    ];
    for (record, want) in cases {
        assert_eq!(error_signal(&record), want, "{}", record.line);
    }
    let mut unparsed = refused_line(UP, T0);
    unparsed.parsed = false;
    assert_eq!(error_signal(&unparsed), None);
}

#[test]
fn upstreams_past_the_budget_are_dropped_and_counted() {
    let mut b = batch("web-1", T0 + 1000);
    for port in 0..5 {
        b.connections.push(conn(
            &format!("127.0.0.1:{}", 9000 + port),
            ConnectResult::Refused,
            T0,
        ));
    }
    b.connections.push(conn(
        &"x".repeat(MAX_LABEL_BYTES + 1),
        ConnectResult::Refused,
        T0,
    ));
    let (node, dropped) = observed(&[b], T0 + 1000, 3);
    assert_eq!(node.upstreams.len(), 3);
    assert_eq!((dropped.upstreams, dropped.labels), (2, 1));
}

#[test]
fn routes_past_the_bound_are_dropped_and_counted() {
    let mut b = batch("web-1", T0);
    b.routes = vec![NginxRoute::default(); MAX_ROUTES_PER_NODE + 7];
    let (node, dropped) = observed(&[b], T0, 10);
    assert_eq!(
        (node.routes.len(), dropped.routes),
        (MAX_ROUTES_PER_NODE, 7)
    );
}

#[test]
fn each_sample_replaces_the_workers_and_unknown_ports_are_not_kept() {
    let mut first = batch("web-1", T0);
    first.upstreams.push(listener(UP, true, 0, 128));
    first.processes = vec![
        worker(11, 8084, 0.5, "R", 2.0),
        worker(12, 7777, 0.5, "R", 2.0),
    ];
    let mut second = batch("web-1", T0 + 5000);
    second.upstreams.push(listener(UP, false, 0, 0));
    let (node, dropped) = observed(&[first.clone()], T0, 10);
    assert_eq!(node.workers[&8084].0.len(), 1);
    assert_eq!(dropped.workers, 1, "port 7777 is no upstream of this node");
    let (node, _) = observed(&[first, second], T0 + 5000, 10);
    assert!(
        node.workers.is_empty(),
        "the listener went: its workers with it"
    );
}

#[test]
fn access_lines_attribute_by_upstream_addr_or_count_per_node() {
    let access = |status: u32, addr: &str| vigil_wire::NginxAccessRecord {
        unix_ns: T0 * 1_000_000,
        parsed: true,
        status,
        upstream_addr: addr.into(),
        ..Default::default()
    };
    let mut b = batch("web-1", T0 + 1000);
    b.nginx_access = vec![
        access(502, UP),
        access(200, UP),
        access(504, ""),
        access(502, "-"),
        access(200, ""),
    ];
    let (node, _) = observed(&[b], T0 + 1000, 10);
    let u = &node.upstreams[UP];
    assert_eq!(
        (
            u.run(Signal::Access502).count,
            u.run(Signal::AccessOk).count
        ),
        (1, 1)
    );
    assert_eq!(node.unattributed[&504].count, 1);
    assert_eq!(node.unattributed[&502].count, 1);
}

#[test]
fn forgetting_keeps_upstreams_with_alerts() {
    let mut b = batch("web-1", T0);
    b.connections.push(conn(UP, ConnectResult::Refused, T0));
    b.connections
        .push(conn("127.0.0.1:9", ConnectResult::Refused, T0));
    let (mut node, _) = observed(&[b], T0, 10);
    assert_eq!(node.prune(T0 + 1, |u| u == UP), 1);
    assert!(node.upstreams.contains_key(UP));
}

#[test]
fn a_summary_gives_the_runs_of_its_connections_sent_alone() {
    let mut alone = batch("web-1", T0 + 1000);
    let mut summarised = batch("web-1", T0 + 1000);
    let mut summary = vigil_wire::ConnectionSummary {
        comm: "nginx".into(),
        dst: UP.into(),
        result: ConnectResult::Ok as i32,
        first_end_unix_ns: T0 * 1_000_000,
        last_end_unix_ns: (T0 + 900) * 1_000_000,
        ..Default::default()
    };
    for i in 0..10 {
        alone.connections.push(answered(UP, T0 + i * 100));
        summary.count += 1;
    }
    summary.first_byte_us_buckets = vec![0, 10];
    summarised.summaries.push(summary);
    let (want, _) = observed(&[alone], T0 + 1000, 100);
    let (got, _) = observed(&[summarised], T0 + 1000, 100);
    for signal in [Signal::ConnOk, Signal::ConnAnswered] {
        assert_eq!(
            got.upstreams[UP].run(signal),
            want.upstreams[UP].run(signal)
        );
        assert_eq!(got.upstreams[UP].run(signal).count, 10);
    }
    assert_eq!(got.upstreams[UP].touched_ms, want.upstreams[UP].touched_ms);
}

#[test]
fn a_span_longer_than_the_gap_is_one_run() {
    let mut r = Run::default();
    r.add_span(1000, 1800, 50, 500);
    assert_eq!(
        r,
        Run {
            first_ms: 1000,
            last_ms: 1800,
            count: 50
        }
    );
    r.add_span(2000, 2100, 2, 500);
    assert_eq!((r.first_ms, r.last_ms, r.count), (1000, 2100, 52));
    r.add_span(3000, 3000, 1, 500);
    assert_eq!(
        (r.first_ms, r.count),
        (3000, 1),
        "a gap before a span starts a run"
    );
}
