//! Loki shipping against the strict Loki stand-in: real nginx lines through agent and
//! collector, outages that lose nothing, a Loki without structured metadata, and one bad
//! line that must not sink its batch.
use std::time::Duration;

use vigil_e2e::{
    agent::AgentRun, collector::Collector, free_port, http, http_get, loki::LokiServer,
    nginx::Nginx, now_ns, scratch_dir, wait_for,
};
use vigil_wire::{Batch, NginxAccessRecord};

// Hardening (delivery) and Loki versions, in files of their own under loki/.
#[path = "loki/delivery.rs"]
mod delivery;
#[path = "loki/versions.rs"]
mod versions;

fn wait_until(what: &str, done: impl FnMut() -> bool) {
    assert!(
        wait_for(Duration::from_secs(30), done),
        "timed out waiting for {what}"
    );
}

/// A batch of access lines `id-<first>` … `id-<first+n-1>`, stamped now.
fn access_batch(sequence: u64, first: usize, n: usize) -> Vec<u8> {
    let now = now_ns();
    Batch {
        agent_id: "loki-test".into(),
        sequence,
        node: "n1".into(),
        nginx_access: (first..first + n)
            .map(|i| NginxAccessRecord {
                unix_ns: now + i as i64,
                line: format!("127.0.0.1 - - \"GET /id-{i} HTTP/1.1\" 200 2"),
                parsed: true,
                status: 200,
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
    .encode_compressed()
}

/// Waits for `n` access lines `id-0` … `id-<n-1>` and checks each arrived exactly once.
fn assert_each_access_line_once(loki: &LokiServer, n: usize) {
    wait_until(&format!("{n} lines"), || {
        loki.lines(&[("source", "nginx_access")]).len() >= n
    });
    // Late duplicates (a retried push that had landed) would show up now.
    std::thread::sleep(Duration::from_millis(500));
    let lines = loki.lines(&[("source", "nginx_access")]);
    let mut ids: Vec<&str> = lines
        .iter()
        .map(|l| l.line.split_whitespace().nth(4).unwrap())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!((lines.len(), ids.len()), (n, n), "each line exactly once");
}

fn post(c: &Collector, body: &[u8]) {
    let r = c.ingest(body, None);
    assert_eq!(r.status, 200, "{}", r.body);
}

fn loki_config(loki: &LokiServer, extra: &str) -> String {
    format!(
        "loki_url = \"{}\"\n[loki]\nbatch_age_ms = 200\n{extra}",
        loki.url()
    )
}

#[test]
fn nginx_and_probe_lines_arrive_with_labels_and_metadata() {
    let loki = LokiServer::start();
    let c = Collector::start("loki-e2e", &loki_config(&loki, "tenant = \"team-a\"\n"));
    let closed = free_port();
    let nginx = Nginx::proxy_to("loki", closed, "proxy_connect_timeout 2s;");
    let state = scratch_dir("loki-agent");
    let d = nginx.dir.display();
    let agent = AgentRun::start(
        &c.url(),
        &[closed],
        &state,
        &[
            "--nginx-error-log",
            &format!("{d}/error.log"),
            "--nginx-access-log",
            &format!("{d}/access.log"),
        ],
    );
    assert_eq!(http_get(nginx.port, "/"), 502);

    let upstream = format!("127.0.0.1:{closed}");
    wait_until("the nginx error line", || {
        !loki.lines(&[("source", "nginx_error")]).is_empty()
    });
    let errors = loki.lines(&[
        ("job", "vigil"),
        ("node", "test-node"),
        ("source", "nginx_error"),
        ("level", "error"),
    ]);
    let line = errors
        .iter()
        .find(|e| e.line.contains("(111: "))
        .expect("the connect() failed line, raw");
    assert_eq!(
        line.metadata["upstream"], upstream,
        "the destination, not nginx's URL"
    );
    assert_eq!(line.metadata["upstream_error"], "refused");
    assert_eq!(line.metadata["errno"], "111");

    wait_until("the probe's line", || {
        !loki.lines(&[("source", "ebpf")]).is_empty()
    });
    let probe = &loki.lines(&[("source", "ebpf")])[0];
    assert!(
        probe.line.contains("result=refused") && probe.line.contains("errno=111"),
        "{}",
        probe.line
    );
    assert_eq!(probe.metadata["upstream"], upstream);

    wait_until("the access line", || {
        !loki.lines(&[("source", "nginx_access")]).is_empty()
    });
    assert_eq!(
        loki.lines(&[("source", "nginx_access")])[0].metadata["status"],
        "502"
    );

    // The documented LogQL answers through query_range.
    let q = http::encode(r#"{job="vigil", source="nginx_error"} |= "111""#);
    let r = http::get(
        loki.port,
        &format!("/loki/api/v1/query_range?query={q}&limit=10"),
    )
    .unwrap();
    assert!(r.body.contains("connect() failed (111"), "{}", r.body);
    assert!(
        loki.state
            .lock()
            .unwrap()
            .pushes
            .iter()
            .all(|(_, t)| t.as_deref() == Some("team-a")),
        "tenant header sent"
    );
    agent.stop();
}

#[test]
fn every_line_arrives_once_after_a_loki_outage() {
    let loki = LokiServer::start();
    loki.state
        .lock()
        .unwrap()
        .fail_next
        .extend([500, 429, 500, 503, 429]);
    let c = Collector::start("loki-outage", &loki_config(&loki, ""));
    for (seq, first) in (1..=10).zip((0..).step_by(50)) {
        post(&c, &access_batch(seq, first, 50));
    }
    assert_each_access_line_once(&loki, 500);
    let pushes = loki.state.lock().unwrap().pushes.clone();
    assert_eq!(
        pushes.iter().filter(|(s, _)| *s >= 429).count(),
        5,
        "the outage was seen"
    );
    assert_eq!(c.value("vigil_loki_lines_sent_total", &[]), 500.0);
    assert!(c.value("vigil_loki_lines_retried_total", &[]) > 0.0);
}

#[test]
fn a_loki_without_structured_metadata_gets_it_in_the_line() {
    let loki = LokiServer::start();
    loki.state.lock().unwrap().allow_structured_metadata = false;
    let c = Collector::start("loki-nometa", &loki_config(&loki, ""));
    post(&c, &access_batch(1, 0, 20));
    wait_until("20 lines", || {
        loki.lines(&[("source", "nginx_access")]).len() == 20
    });
    for l in loki.lines(&[("source", "nginx_access")]) {
        assert!(l.metadata.is_empty());
        assert!(l.line.ends_with("status=200"), "folded: {}", l.line);
    }
    post(&c, &access_batch(2, 20, 5));
    wait_until("25 lines", || {
        loki.lines(&[("source", "nginx_access")]).len() == 25
    });
    let refused = loki
        .state
        .lock()
        .unwrap()
        .pushes
        .iter()
        .filter(|(s, _)| *s == 400)
        .count();
    assert_eq!(refused, 1, "the refusal is remembered, not met again");
    assert_eq!(
        c.sample("vigil_loki_lines_failed_total", &[]),
        None,
        "no line failed"
    );
}

#[test]
fn one_bad_line_does_not_sink_its_batch() {
    let loki = LokiServer::start();
    loki.state.lock().unwrap().max_line_bytes = 1000;
    let c = Collector::start("loki-bad", &loki_config(&loki, ""));
    let now = now_ns();
    let mut records: Vec<NginxAccessRecord> = (0..9)
        .map(|i| NginxAccessRecord {
            unix_ns: now + i,
            line: format!("ok line {i}"),
            ..Default::default()
        })
        .collect();
    records.insert(
        4,
        NginxAccessRecord {
            unix_ns: now + 100,
            line: "x".repeat(5000),
            ..Default::default()
        },
    );
    let batch = Batch {
        agent_id: "bad".into(),
        sequence: 1,
        node: "n1".into(),
        nginx_access: records,
        ..Default::default()
    };
    post(&c, &batch.encode_compressed());
    wait_until("9 good lines", || {
        loki.lines(&[("source", "nginx_access")]).len() == 9
    });
    wait_until("the drop counted", || {
        c.sample("vigil_loki_lines_failed_total", &[("reason", "rejected")]) == Some(1.0)
    });
    // What vigil did with Loki's 400 for the whole batch: split it until the bad line stood
    // alone, so each good line arrived exactly once, as sent, and nothing else was dropped.
    let mut arrived: Vec<(i64, String)> = loki
        .lines(&[("source", "nginx_access")])
        .into_iter()
        .map(|l| (l.ts_ns, l.line))
        .collect();
    arrived.sort();
    let sent: Vec<(i64, String)> = (0..9).map(|i| (now + i, format!("ok line {i}"))).collect();
    assert_eq!(arrived, sent, "the nine good lines, once each");
    let refusals = loki
        .state
        .lock()
        .unwrap()
        .pushes
        .iter()
        .filter(|(s, _)| *s == 400)
        .count();
    assert!(
        refusals >= 2,
        "the whole batch, then the bad line alone, were refused: {refusals}"
    );
    assert_eq!(c.value("vigil_loki_lines_sent_total", &[]), 9.0);
}

/// The stand-in is only useful if it is as strict as Loki: check its refusals directly.
#[test]
fn the_loki_stand_in_refuses_what_loki_refuses() {
    let loki = LokiServer::start();
    let now = now_ns();
    let push = |stream: &str, ts: i64, line: &str| {
        let body = format!(r#"{{"streams":[{{"stream":{stream},"values":[["{ts}","{line}"]]}}]}}"#);
        http::request(
            "POST",
            loki.port,
            "/loki/api/v1/push",
            &[("Content-Type", "application/json")],
            body.as_bytes(),
        )
        .unwrap()
    };
    assert_eq!(push(r#"{"job":"a","node":"n"}"#, now, "fine").status, 204);
    assert_eq!(
        push(r#"{"job":"a","2bad":"n"}"#, now, "x").status,
        400,
        "label name syntax"
    );
    assert_eq!(push("{}", now, "x").status, 400, "no labels at all");
    assert_eq!(
        push(r#"{"job":1}"#, now, "x").status,
        400,
        "a label value that is not a string"
    );
    assert_eq!(
        push(r#"{"job":"b","node":"say \"hi\" \\ bye"}"#, now, "quoted").status,
        204,
        "quotes and backslashes in label values are fine"
    );
    assert_eq!(
        loki.lines(&[("node", r#"say "hi" \ bye"#)]).len(),
        1,
        "and stored as sent"
    );
    assert_eq!(
        push(r#"{"job":"a"}"#, now - 8 * 24 * 3600 * 1_000_000_000, "x").status,
        400,
        "too old"
    );
    assert_eq!(
        push(r#"{"job":"a"}"#, now + 3600 * 1_000_000_000, "x").status,
        400,
        "too far in the future"
    );
    loki.state.lock().unwrap().max_line_bytes = 10;
    assert_eq!(
        push(r#"{"job":"a"}"#, now, "a line longer than ten bytes").status,
        400
    );
    let with_meta = format!(
        r#"{{"streams":[{{"stream":{{"job":"a"}},"values":[["{now}","m",{{"trace_id":"1"}}]]}}]}}"#
    );
    loki.state.lock().unwrap().allow_structured_metadata = false;
    let r = http::request(
        "POST",
        loki.port,
        "/loki/api/v1/push",
        &[("Content-Type", "application/json")],
        with_meta.as_bytes(),
    )
    .unwrap();
    assert_eq!(r.status, 400);
    assert!(r.body.contains("structured metadata"));
    // Unsorted or duplicate labels in a protobuf push are refused too.
    let unsorted = LokiServer::raw_protobuf_push(&loki, r#"{node="n", job="a"}"#, now);
    assert_eq!(unsorted.status, 400);
    assert_eq!(
        loki.lines(&[("job", "a")]).len(),
        1,
        "only the valid push was stored"
    );
    let q = http::encode(r#"{job="a"} |= "fine""#);
    let r = http::get(loki.port, &format!("/loki/api/v1/query_range?query={q}")).unwrap();
    assert!(r.body.contains(r#""fine""#), "{}", r.body);
}

#[test]
fn lines_spill_to_disk_while_loki_is_down_and_all_arrive_later() {
    let port = free_port();
    let spool = scratch_dir("loki-spool");
    let c = Collector::start(
        "loki-spill",
        &format!("loki_url = \"http://127.0.0.1:{port}\"\n[loki]\nbatch_age_ms = 200\nqueue_limit = 100\nspool_dir = \"{}\"\n", spool.display()),
    );
    for (seq, first) in (1..=4).zip((0..).step_by(2500)) {
        post(&c, &access_batch(seq, first, 2500));
    }
    wait_until("batches on disk", || {
        std::fs::read_dir(&spool).unwrap().count() > 0
    });
    assert!(c.value("vigil_loki_spool_bytes", &[]) > 0.0);
    let loki = LokiServer::start_on(port);
    assert_each_access_line_once(&loki, 10_000);
    assert_eq!(
        c.sample("vigil_loki_lines_dropped_total", &[]),
        None,
        "no line dropped"
    );
    assert_eq!(
        std::fs::read_dir(&spool).unwrap().count(),
        0,
        "spool emptied"
    );
}

#[test]
fn lines_queued_for_an_absent_loki_survive_a_collector_restart() {
    // Loki is down; the lines wait in the collector's memory queue (well under its limit).
    // A graceful stop keeps them in the spool, and the next start delivers each once.
    let port = free_port();
    let spool = scratch_dir("loki-restart");
    let config = format!(
        "loki_url = \"http://127.0.0.1:{port}\"\nshutdown_grace_ms = 300\n[loki]\nbatch_age_ms = 200\nspool_dir = \"{}\"\n",
        spool.display()
    );
    let mut first = Collector::start("loki-restart-a", &config);
    post(&first, &access_batch(1, 0, 300));
    post(&first, &access_batch(2, 300, 300));
    first.terminate();
    assert!(first.wait().success());
    assert!(
        std::fs::read_dir(&spool).unwrap().count() > 0,
        "queued lines kept on disk at shutdown"
    );
    let loki = LokiServer::start_on(port);
    let _second = Collector::start("loki-restart-b", &config);
    assert_each_access_line_once(&loki, 600);
}
