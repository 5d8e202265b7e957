//! `vigil-agent run --listen-health`: /healthz answers while the agent runs, /metrics shows
//! its own counters, and they move with what happens (connects seen, deliveries retried
//! while the collector is away, the spool filling).
use std::{net::TcpListener, time::Duration};

use vigil_e2e::{agent::AgentRun, free_port, http, scratch_dir, wait_for};

/// `name value` lines of a Prometheus text body → the value of `name` (no labels).
fn value(body: &str, name: &str) -> Option<f64> {
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

fn metrics(port: u16) -> String {
    let response = http::request("GET", port, "/metrics", &[], b"").expect("GET /metrics");
    assert_eq!(response.status, 200);
    response.body
}

#[test]
fn agent_health_endpoints_answer_and_counters_move() {
    let state = scratch_dir("agent-health");
    let health_port = free_port();
    // A collector address nothing listens on: every delivery is retried, batches spool.
    let collector = format!("http://127.0.0.1:{}", free_port());
    let upstream = TcpListener::bind("127.0.0.1:0").unwrap();
    let upstream_port = upstream.local_addr().unwrap().port();
    let listen = format!("127.0.0.1:{health_port}");
    let agent = AgentRun::start(
        &collector,
        &[upstream_port],
        &state,
        &["--listen-health", &listen],
    );

    let healthz = http::request("GET", health_port, "/healthz", &[], b"").expect("GET /healthz");
    assert_eq!((healthz.status, healthz.body.as_str()), (200, "ok\n"));
    let published = wait_for(Duration::from_secs(10), || {
        value(&metrics(health_port), "vigil_agent_probes_loaded") == Some(1.0)
    });
    let before = metrics(health_port);
    assert!(published, "the first sample is published:\n{before}");
    assert_eq!(value(&before, "vigil_agent_watched_ports"), Some(1.0));
    assert!(
        value(&before, "vigil_agent_net_namespaces") >= Some(1.0),
        "{before}"
    );
    let seen_before =
        value(&before, "vigil_agent_probe_connects_seen_total").expect("connects seen");

    for _ in 0..3 {
        let conn = std::net::TcpStream::connect(("127.0.0.1", upstream_port)).unwrap();
        let (accepted, _) = upstream.accept().unwrap();
        drop((conn, accepted));
    }
    let mut after = String::new();
    let moved = wait_for(Duration::from_secs(20), || {
        after = metrics(health_port);
        let at_least = |name: &str, n: f64| value(&after, name).is_some_and(|v| v >= n);
        at_least("vigil_agent_probe_connects_seen_total", seen_before + 3.0)
            && at_least("vigil_agent_connections_reported_total", 3.0)
            && at_least("vigil_agent_batches_retried_total", 1.0)
            && at_least("vigil_agent_spool_queued_bytes", 1.0)
    });
    assert!(moved, "counters did not move:\n{after}");
    assert_eq!(value(&after, "vigil_agent_batches_sent_total"), Some(0.0));
    assert!(after.contains("vigil_agent_info{version=\""), "{after}");
    assert!(after.contains("node=\"test-node\""), "{after}");

    let unknown = http::request("GET", health_port, "/nope", &[], b"").unwrap();
    assert_eq!(unknown.status, 404);
    agent.stop();
    let gone = std::net::TcpStream::connect(("127.0.0.1", health_port));
    assert!(gone.is_err(), "the endpoint ends with the agent");
}
