//! `vigil-agent trace` against real nginx and real kernel events: each case asserts the
//! outcome, the port, and that the connecting process is the nginx worker we started.
use std::time::Duration;

use serde_json::Value;
use vigil_e2e::{
    agent::{records_for, Trace},
    free_port, http_get,
    nft::SynDrop,
    nginx::{Nginx, Route},
    ppid,
    upstreams::{http_ok, silent},
};

fn assert_from_nginx_worker(record: &Value, nginx: &Nginx) {
    assert_eq!(record["comm"], "nginx", "{record}");
    let pid = record["pid"].as_u64().unwrap() as u32;
    assert_eq!(
        ppid(pid),
        Some(nginx.master_pid()),
        "pid {pid} is not our nginx's worker"
    );
}

fn only_record(records: &[Value], port: u16) -> &Value {
    let mine = records_for(records, port);
    assert_eq!(
        mine.len(),
        1,
        "expected one connection to {port}, got {mine:#?}"
    );
    mine[0]
}

/// One `GET /` through `nginx` (answering `status`) while `port` is traced; every record.
fn trace_one_request(nginx: &Nginx, port: u16, status: u16) -> Vec<Value> {
    let trace = Trace::start(&[port]);
    assert_eq!(http_get(nginx.port, "/"), status);
    trace.wait_for(port, 1).stop()
}

#[test]
fn healthy_upstream_is_ok_with_first_byte_time() {
    let upstream = http_ok(Duration::from_millis(200));
    let nginx = Nginx::proxy_to(
        "ok",
        upstream.port,
        "proxy_connect_timeout 5s; proxy_read_timeout 5s;",
    );
    let records = trace_one_request(&nginx, upstream.port, 200);
    let r = only_record(&records, upstream.port);
    assert_eq!(r["result"], "ok");
    assert_from_nginx_worker(r, &nginx);
    let first_byte = r["first_byte_ms"].as_f64().expect("first byte measured");
    assert!(
        (195.0..2000.0).contains(&first_byte),
        "first_byte_ms {first_byte}"
    );
    assert!(r["connect_ms"].as_f64().unwrap() < 1000.0);
    assert_eq!(r["silent_close"], false);
    assert!(r["bytes_sent"].as_u64().unwrap() > 0 && r["bytes_received"].as_u64().unwrap() > 0);
}

#[test]
fn closed_port_is_refused_and_nginx_answers_502() {
    let closed = free_port();
    let nginx = Nginx::proxy_to("refused", closed, "proxy_connect_timeout 5s;");
    let records = trace_one_request(&nginx, closed, 502);
    // nginx may retry the same server once (proxy_next_upstream): every record is a refusal.
    let mine = records_for(&records, closed);
    assert!(!mine.is_empty());
    for r in mine {
        assert_eq!(r["result"], "refused", "{r}");
        assert_eq!(r["errno"], 111);
        assert_from_nginx_worker(r, &nginx);
    }
    assert!(
        nginx.error_log().contains("(111: "),
        "nginx error.log names errno 111"
    );
}

#[test]
fn upstream_that_never_answers_is_a_silent_close_and_504() {
    let upstream = silent();
    let nginx = Nginx::proxy_to(
        "silent",
        upstream.port,
        "proxy_connect_timeout 5s; proxy_read_timeout 1s;",
    );
    let records = trace_one_request(&nginx, upstream.port, 504);
    let r = only_record(&records, upstream.port);
    assert_eq!(r["result"], "ok", "the connect itself worked");
    assert_eq!(r["silent_close"], true);
    assert_eq!(r["first_byte_ms"], Value::Null);
    assert_eq!(r["closed_by"], "client");
    assert_from_nginx_worker(r, &nginx);
    let lived = r["duration_ms"].as_f64().unwrap();
    assert!(
        lived >= 950.0,
        "closed at proxy_read_timeout, lived {lived} ms"
    );
}

#[test]
fn dropped_syns_are_a_connect_timeout_and_504() {
    let port = free_port();
    let _drop = SynDrop::new(port);
    let nginx = Nginx::proxy_to("timeout", port, "proxy_connect_timeout 1500ms;");
    let records = trace_one_request(&nginx, port, 504);
    let r = only_record(&records, port);
    assert_eq!(r["result"], "timeout");
    assert!(
        r["syn_retransmits"].as_u64().unwrap() >= 1,
        "SYN retried before nginx gave up"
    );
    assert_from_nginx_worker(r, &nginx);
    let waited = r["connect_ms"].as_f64().unwrap();
    assert!(
        waited >= 1400.0,
        "nginx gave up at proxy_connect_timeout, waited {waited} ms"
    );
}

#[test]
fn classic_tracepoint_fallbacks_classify_the_same_and_missing_probes_are_reported() {
    // As on a kernel without BTF (no tp_btf programs, no socket offsets for the raw
    // tcp_probe) and without tcp_retransmit_skb: the classic tracepoints take over, the
    // raw programs beside them key sockets as they do, the lost capability is listed.
    let disabled = "inet_sock_set_state_btf,tcp_probe_raw,tcp_retransmit_skb";
    let upstream = http_ok(Duration::from_millis(100));
    let closed = free_port();
    let nginx = Nginx::start(
        "fallback",
        &[
            Route {
                path: "/ok",
                upstream_port: upstream.port,
            },
            Route {
                path: "/down",
                upstream_port: closed,
            },
        ],
        "proxy_connect_timeout 5s; proxy_read_timeout 5s;",
    );
    let trace = Trace::start_with_env(
        &[upstream.port, closed],
        &[("VIGIL_DISABLE_PROBES", disabled)],
    );
    assert_eq!(http_get(nginx.port, "/ok"), 200);
    assert_eq!(http_get(nginx.port, "/down"), 502);
    let records = trace.wait_for(upstream.port, 1).wait_for(closed, 1).stop();
    let ok = only_record(&records, upstream.port);
    assert_eq!(ok["result"], "ok");
    assert!(
        ok["first_byte_ms"].as_f64().unwrap() >= 95.0,
        "classic tcp_probe measured the first byte"
    );
    assert_eq!(ok["dst"], format!("127.0.0.1:{}", upstream.port).as_str());
    assert_from_nginx_worker(ok, &nginx);
    for r in records_for(&records, closed) {
        assert_eq!(r["result"], "refused");
        assert_eq!(r["errno"], 111);
    }

    let lines = vigil_e2e::agent::inspect_with_env(
        &["--ports", &closed.to_string(), "--interval", "200ms"],
        &[("VIGIL_DISABLE_PROBES", disabled)],
    );
    let caps = &lines.last().unwrap()["capabilities"];
    assert_eq!(caps["programs"]["connect_outcomes"], "inet_sock_set_state");
    assert_eq!(caps["programs"]["first_byte"], "tcp_probe");
    let missing = caps["missing"].as_array().unwrap();
    assert!(
        missing.iter().any(|m| m["capability"] == "syn_retransmits"),
        "{caps}"
    );
}

#[test]
fn without_privileges_trace_says_what_it_needs() {
    // A copy nobody can execute wherever the checkout lives.
    let dir = vigil_e2e::scratch_dir("unprivileged");
    let copy = dir.join("vigil-agent");
    std::fs::copy(vigil_e2e::bin("vigil-agent"), &copy).unwrap();
    std::process::Command::new("chmod")
        .args(["-R", "a+rX"])
        .arg(&dir)
        .status()
        .unwrap();
    let out = std::process::Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
        ])
        .arg(&copy)
        .args(["trace", "--ports", "8080"])
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("setpriv (util-linux)");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("needs root (or CAP_BPF + CAP_PERFMON)"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty(), "no records without probes");
}

#[test]
fn many_connections_at_once_are_each_reported_once() {
    // 400 sockets to one watched port, opened from two threads at once and all alive at the
    // same time: each keeps its own state in the probes' socket table (ways claimed
    // concurrently) and is reported exactly once, with its own source port.
    const N: usize = 400;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let trace = Trace::start(&[port]);
    let acceptor = std::thread::spawn(move || {
        (0..N)
            .map(|_| listener.accept().unwrap().0)
            .collect::<Vec<_>>()
    });
    let clients: Vec<_> = (0..2)
        .map(|_| {
            std::thread::spawn(move || {
                (0..N / 2)
                    .map(|_| std::net::TcpStream::connect(("127.0.0.1", port)).unwrap())
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let open: Vec<_> = clients.into_iter().map(|c| c.join().unwrap()).collect();
    let accepted = acceptor.join().unwrap();
    drop((open, accepted));
    // A connection is reported when it reaches CLOSE; on a loaded machine 400 closing
    // handshakes can take a while (a lost FIN waits for its retransmit).
    let records = trace
        .wait_within(port, N, std::time::Duration::from_secs(60))
        .stop();
    let mine = records_for(&records, port);
    // On a miss, say where the other records went (another destination? none at all?).
    let mut by_dst = std::collections::BTreeMap::new();
    for r in &records {
        *by_dst.entry(r["dst"].to_string()).or_insert(0) += 1;
    }
    assert_eq!(
        mine.len(),
        N,
        "one record per connection; all records by destination: {by_dst:?}"
    );
    let sources: std::collections::BTreeSet<&str> =
        mine.iter().map(|r| r["src"].as_str().unwrap()).collect();
    assert_eq!(sources.len(), N, "each record is its own connection");
    for r in mine {
        assert_eq!(r["result"], "ok", "{r}");
        assert_eq!(r["pid"], std::process::id(), "{r}");
    }
}
