//! The collector against real parts: ingest error paths, real nginx traffic through the
//! agent into a real Prometheus, and a collector restart under load that loses nothing.
use std::time::Duration;

use vigil_e2e::{
    agent::AgentRun,
    collector::Collector,
    free_port, http, http_get,
    nft::SynDrop,
    nginx::{Nginx, Route},
    prometheus::Prometheus,
    scratch_dir, wait_for,
};
use vigil_wire::{Batch, ConnectResult, ConnectionOutcome};

fn batch(agent: &str, sequence: u64, upstream: &str) -> Batch {
    Batch {
        agent_id: agent.into(),
        sequence,
        node: "n1".into(),
        connections: vec![ConnectionOutcome {
            comm: "nginx".into(),
            dst: upstream.into(),
            result: ConnectResult::Refused as i32,
            errno: 111,
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// `vigil_upstream_connects_total{result="refused"}` for an upstream on 127.0.0.1:`port`
/// (panics when the collector has no such series).
fn refused(c: &Collector, port: u16) -> f64 {
    refused_so_far(c, port)
        .unwrap_or_else(|| panic!("no refused connects to {port}:\n{}", c.metrics()))
}

/// The same while polling: `None` until the first such connect arrives.
fn refused_so_far(c: &Collector, port: u16) -> Option<f64> {
    let upstream = format!("127.0.0.1:{port}");
    c.sample(
        "vigil_upstream_connects_total",
        &[("upstream", &upstream), ("result", "refused")],
    )
}

#[test]
fn ingest_refuses_bad_requests_and_keeps_serving() {
    let dir = scratch_dir("ingest-token");
    std::fs::write(dir.join("token"), "s3cret\n").unwrap();
    let c = Collector::start(
        "ingest",
        &format!(
            "token_file = \"{}\"\nmax_body_bytes = 4096\n",
            dir.join("token").display()
        ),
    );
    let good = batch("agent-a", 1, "127.0.0.1:9").encode_compressed();

    assert_eq!(c.ingest(&good, None).status, 401);
    assert_eq!(c.ingest(&good, Some("wrong")).status, 401);
    let garbage = c.ingest(b"\x00\x01 not snappy at all", Some("s3cret"));
    assert_eq!(garbage.status, 400);
    assert!(
        garbage.body.contains("snappy"),
        "says why: {}",
        garbage.body
    );
    let not_a_batch = c.ingest(&vigil_e2e_snappy(&[0xff; 100]), Some("s3cret"));
    assert_eq!(not_a_batch.status, 400);
    assert_eq!(c.ingest(&vec![0u8; 5000], Some("s3cret")).status, 413);

    assert_eq!(c.ingest(&good, Some("s3cret")).status, 200);
    let again = c.ingest(&good, Some("s3cret"));
    assert_eq!((again.status, again.body.trim()), (200, "duplicate"));

    assert_eq!(http::get(c.port, "/healthz").unwrap().status, 200);
    assert_eq!(http::get(c.port, "/readyz").unwrap().status, 200);
    let connects = c.value(
        "vigil_upstream_connects_total",
        &[("upstream", "127.0.0.1:9"), ("result", "refused")],
    );
    assert_eq!(connects, 1.0, "the duplicate was not counted twice");
    for (result, n) in [
        ("unauthorized", 2.0),
        ("undecodable", 2.0),
        ("too_large", 1.0),
        ("accepted", 1.0),
        ("duplicate", 1.0),
    ] {
        assert_eq!(
            c.value("vigil_ingest_batches_total", &[("result", result)]),
            n,
            "{result}"
        );
    }
}

/// A valid snappy block whose content is not a batch.
fn vigil_e2e_snappy(raw: &[u8]) -> Vec<u8> {
    snap::raw::Encoder::new().compress_vec(raw).unwrap()
}

#[test]
fn label_values_are_capped_per_family() {
    let c = Collector::start("caps", "label_value_limit = 3\n");
    for (i, port) in (1..=10).enumerate() {
        let body =
            batch("agent-caps", i as u64 + 1, &format!("127.0.0.1:{port}")).encode_compressed();
        assert_eq!(c.ingest(&body, None).status, 200);
    }
    let text = c.metrics();
    let series = text
        .lines()
        .filter(|l| l.starts_with("vigil_upstream_connects_total{"))
        .count();
    assert_eq!(series, 4, "3 upstreams + other:\n{text}");
    assert_eq!(
        c.value("vigil_upstream_connects_total", &[("upstream", "other")]),
        7.0
    );
}

#[test]
fn real_nginx_outcomes_reach_prometheus_through_agent_and_collector() {
    let closed = free_port();
    let dropped = free_port();
    let _drop = SynDrop::new(dropped);
    let nginx = Nginx::start(
        "prom",
        &[
            Route {
                path: "/down",
                upstream_port: closed,
            },
            Route {
                path: "/slow",
                upstream_port: dropped,
            },
        ],
        "proxy_connect_timeout 1s;",
    );
    let c = Collector::start("prom", "");
    let prom = Prometheus::start(c.port);
    let state = scratch_dir("prom-agent");
    let agent = AgentRun::start(&c.url(), &[closed, dropped], &state, &[]);
    for _ in 0..3 {
        assert_eq!(http_get(nginx.port, "/down"), 502);
    }
    assert_eq!(http_get(nginx.port, "/slow"), 504);

    let refused = format!(
        "sum(vigil_upstream_connects_total{{result=\"refused\",upstream=\"127.0.0.1:{closed}\"}})"
    );
    assert_eq!(prom.wait_for(&refused, 3.0), Some(3.0));
    let timeout = format!(
        "sum(vigil_upstream_connects_total{{result=\"timeout\",upstream=\"127.0.0.1:{dropped}\"}})"
    );
    assert_eq!(prom.wait_for(&timeout, 1.0), Some(1.0));
    assert_eq!(
        prom.wait_for("sum(vigil_upstream_listening{node=\"test-node\"})", 0.0),
        Some(0.0)
    );

    // promtool agrees the exposition is well-formed.
    let text = c.metrics();
    let (status, output) = promtool_check_metrics(&text);
    assert!(status.success(), "promtool check metrics: {output}");
    drop(agent);
}

/// `promtool check metrics` on an exposition text: its status and what it printed.
fn promtool_check_metrics(text: &str) -> (std::process::ExitStatus, String) {
    use std::{io::Write, process::Stdio};
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (installed by cargo xtask setup)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let printed =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status, printed)
}

#[test]
fn collector_restart_under_load_counts_every_connect_once() {
    let closed = free_port();
    let nginx = Nginx::proxy_to("restart", closed, "proxy_connect_timeout 1s;");
    let port = free_port();
    let mut first = Collector::start_on("restart-a", port, "shutdown_grace_ms = 1500\n");
    let state = scratch_dir("restart-agent");
    let agent = AgentRun::start(&first.url(), &[closed], &state, &[]);

    let requests = 400;
    let load = std::thread::spawn(move || {
        for _ in 0..requests {
            assert_eq!(http_get(nginx.port, "/"), 502);
            std::thread::sleep(Duration::from_millis(10));
        }
        nginx
    });
    // Mid-load: the first batches (sealed after 1 s) have been delivered by then.
    wait_for(Duration::from_secs(10), || {
        refused_so_far(&first, closed).is_some_and(|n| n > 0.0)
    });
    first.terminate();
    // While draining the count is final: ingest is refused, /metrics still answers.
    std::thread::sleep(Duration::from_millis(300));
    let counted_by_first = refused(&first, closed);
    assert!(first.wait().success());
    std::thread::sleep(Duration::from_millis(700));
    let second = Collector::start_on("restart-b", port, "");
    let _nginx = load.join().unwrap();

    wait_for(Duration::from_secs(30), || {
        refused_so_far(&second, closed).is_some_and(|n| counted_by_first + n >= requests as f64)
    });
    // Anything counted twice would show up after the agent's retries settle.
    std::thread::sleep(Duration::from_millis(1500));
    let counted_by_second = refused(&second, closed);
    assert!(counted_by_first > 0.0, "the first collector counted some");
    assert_eq!(
        counted_by_first + counted_by_second,
        requests as f64,
        "first {counted_by_first} + second {counted_by_second}"
    );
    agent.stop();
}

#[test]
fn agent_spools_while_the_collector_is_away_and_delivers_later() {
    let closed = free_port();
    let nginx = Nginx::proxy_to("spool", closed, "proxy_connect_timeout 1s;");
    let port = free_port();
    let state = scratch_dir("spool-agent");
    // Nothing listens on the collector port yet.
    let agent = AgentRun::start(&format!("http://127.0.0.1:{port}"), &[closed], &state, &[]);
    for _ in 0..20 {
        assert_eq!(http_get(nginx.port, "/"), 502);
    }
    std::thread::sleep(Duration::from_millis(1500));
    let c = Collector::start_on("spool", port, "");
    wait_for(Duration::from_secs(40), || {
        refused_so_far(&c, closed).is_some_and(|n| n >= 20.0)
    });
    assert_eq!(refused(&c, closed), 20.0);
    // Later batches carry the agent's health, retries included.
    wait_for(Duration::from_secs(20), || {
        c.sample("vigil_agent_batches_retried_total", &[])
            .is_some_and(|n| n > 0.0)
    });
    assert!(
        c.value("vigil_agent_batches_retried_total", &[]) > 0.0,
        "the agent reports its retries:\n{}",
        c.metrics()
    );
    agent.stop();
}

#[test]
fn a_stopped_agent_keeps_undelivered_batches_on_disk_and_sends_them_next_time() {
    let closed = free_port();
    let nginx = Nginx::proxy_to("persist", closed, "proxy_connect_timeout 1s;");
    let port = free_port();
    let state = scratch_dir("persist-agent");
    let agent = AgentRun::start(&format!("http://127.0.0.1:{port}"), &[closed], &state, &[]);
    for _ in 0..5 {
        assert_eq!(http_get(nginx.port, "/"), 502);
    }
    std::thread::sleep(Duration::from_millis(1500));
    agent.stop();
    let spooled = std::fs::read_dir(state.join("spool")).unwrap().count();
    assert!(spooled > 0, "undelivered batches are on disk");
    let c = Collector::start_on("persist", port, "");
    let again = AgentRun::start(&c.url(), &[closed], &state, &[]);
    wait_for(Duration::from_secs(20), || {
        refused_so_far(&c, closed).is_some_and(|n| n >= 5.0)
    });
    assert_eq!(refused(&c, closed), 5.0);
    again.stop();
}

/// A batch header, then `n` empty connections (field 5, two bytes each), snappy-compressed.
fn record_bomb(n: usize) -> Vec<u8> {
    use prost::Message;
    let mut raw = batch("bomb", 1, "127.0.0.1:9").encode_to_vec();
    raw.extend([0x2a, 0x00].repeat(n));
    vigil_e2e_snappy(&raw)
}

#[test]
fn collector_refuses_snappy_bombs_and_stays_up() {
    let c = Collector::start("bombs", "");
    // As reported: 6 MB on the wire, 120 MiB decompressed (within the old 8 × body limit),
    // 60 M records, 9 GB decoded; the collector aborted.
    let huge = record_bomb(60 << 20);
    assert!(huge.len() < 8 << 20, "{} bytes", huge.len());
    let r = c.ingest(&huge, None);
    assert_eq!(r.status, 413, "{}", r.body);
    assert!(r.body.contains("decompresses to"), "{}", r.body);
    // Within the decoded size (24 MiB), over the record count (12 M > 50,000).
    let r = c.ingest(&record_bomb(12 << 20), None);
    assert_eq!(r.status, 413, "{}", r.body);
    assert!(r.body.contains("records"), "{}", r.body);

    assert_eq!(http::get(c.port, "/healthz").unwrap().status, 200);
    let good = batch("after-bombs", 1, "127.0.0.1:9").encode_compressed();
    assert_eq!(c.ingest(&good, None).status, 200, "still ingesting");
    for result in ["decoded_too_large", "too_many_records", "accepted"] {
        let n = c.value("vigil_ingest_batches_total", &[("result", result)]);
        assert_eq!(n, 1.0, "{result}");
    }
}

/// Waits until `n` ingest requests hold a slot (stalled uploads in their handlers).
fn wait_for_slots_in_use(c: &Collector, n: f64) {
    let in_flight = || c.sample("vigil_ingest_requests_in_flight", &[]) == Some(n);
    assert!(
        wait_for(Duration::from_secs(10), in_flight),
        "{}",
        c.metrics()
    );
}

#[test]
fn collector_bounds_concurrent_and_slow_ingests() {
    let c = Collector::start(
        "slots",
        "max_concurrent_ingests = 1\ningest_timeout_ms = 1500\n",
    );
    let mut stalled = c.stalled_upload(1000, 10);
    let good = batch("slots", 1, "127.0.0.1:9").encode_compressed();
    wait_for_slots_in_use(&c, 1.0);
    let (status, head, body) = c.ingest_with_head(&good);
    assert_eq!(status, 503, "{head}\n{body}");
    assert!(head.contains("retry-after: 1"), "{head}");
    assert!(body.contains("max_concurrent_ingests"), "{body}");

    let (status, _, body) = vigil_e2e::collector::read_response(&mut stalled);
    assert_eq!(status, 408, "the stalled upload times out: {body}");
    assert_eq!(c.ingest(&good, None).status, 200, "the slot is free again");
    // A client that hangs up mid-body is counted too.
    drop(c.stalled_upload(1000, 10));
    wait_for(Duration::from_secs(5), || {
        c.sample("vigil_ingest_batches_total", &[("result", "aborted")]) == Some(1.0)
    });
    let count = |result| c.value("vigil_ingest_batches_total", &[("result", result)]);
    assert!(count("busy") >= 1.0);
    assert_eq!((count("timeout"), count("aborted")), (1.0, 1.0));
}

#[test]
fn a_stopping_collector_exits_despite_stalled_clients() {
    let mut c = Collector::start(
        "stalled-stop",
        "shutdown_grace_ms = 200\ningest_timeout_ms = 2000\nmax_concurrent_ingests = 1\n",
    );
    let _mid_body = c.stalled_upload(1000, 10);
    let mut mid_head = std::net::TcpStream::connect(("127.0.0.1", c.port)).unwrap();
    std::io::Write::write_all(
        &mut mid_head,
        b"POST /api/v1/ingest HTTP/1.1\r\nHost: x\r\n",
    )
    .unwrap();
    let _silent = std::net::TcpStream::connect(("127.0.0.1", c.port)).unwrap();
    wait_for_slots_in_use(&c, 1.0);
    c.terminate();
    // Bounded by grace + ingest timeout (2.2 s here); without the bound it never exits.
    let status = c.wait_at_most(Duration::from_secs(30));
    assert!(
        status.is_some_and(|s| s.success()),
        "exited: {status:?} (the clients are still connected)"
    );
}
