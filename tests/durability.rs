//! Nothing acknowledged is lost through SIGKILL: a collector killed again and again while
//! agents keep sending (Loki up, and Loki away) still delivers every line it answered 200 for
//! (at-least-once; duplicates are counted and reported); an agent killed with batches in its
//! spool sends them after it restarts.
use std::{
    collections::BTreeSet,
    io::Write,
    path::Path,
    time::{Duration, Instant},
};

use vigil_e2e::{
    agent::AgentRun, collector::Collector, free_port, loki::LokiServer, now_ns, scratch_dir,
    wait_for,
};
use vigil_wire::{Batch, NginxAccessRecord};

/// Lines per batch: a few hundred, like a busy node's second.
const LINES: u64 = 200;

fn batch(agent: &str, sequence: u64) -> Vec<u8> {
    let now = now_ns();
    let first = (sequence - 1) * LINES;
    Batch {
        agent_id: agent.into(),
        sequence,
        node: "durable-node".into(),
        nginx_access: (first..first + LINES)
            .map(|id| NginxAccessRecord {
                unix_ns: now + id as i64,
                line: format!("127.0.0.1 - - \"GET /line-{id} HTTP/1.1\" 200 2"),
                parsed: true,
                status: 200,
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
    .encode_compressed()
}

/// The `/line-N` ids in Loki, and how many lines arrived in all.
fn arrived(loki: &LokiServer) -> (BTreeSet<u64>, usize) {
    let lines = loki.lines(&[("source", "nginx_access")]);
    let ids = lines
        .iter()
        .filter_map(|l| {
            l.line
                .split("/line-")
                .nth(1)?
                .split(' ')
                .next()?
                .parse()
                .ok()
        })
        .collect();
    (ids, lines.len())
}

fn config(state: &Path, loki_port: u16) -> String {
    format!(
        "state_dir = \"{}\"\nloki_url = \"http://127.0.0.1:{loki_port}\"\n[loki]\nbatch_age_ms = 300\nspool_dir = \"{}\"\n",
        state.display(),
        state.join("loki-spool").display()
    )
}

/// Posts `sequence` like an agent: until the collector answers 200, restarting the collector
/// when it is dead. Returns the (possibly new) collector.
fn deliver(mut c: Collector, sequence: u64, start: &dyn Fn() -> Collector) -> Collector {
    let body = batch("durable-agent", sequence);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(Instant::now() < deadline, "batch {sequence} never accepted");
        match vigil_e2e::http::request(
            "POST",
            c.port,
            vigil_wire::INGEST_PATH,
            &[("Content-Type", vigil_wire::CONTENT_TYPE)],
            &body,
        ) {
            Ok(r) if r.status == 200 => return c,
            Ok(_) => std::thread::sleep(Duration::from_millis(100)),
            Err(_) => {
                drop(c);
                c = start();
            }
        }
    }
}

/// Sends `batches` batches, SIGKILLing the collector right after every `kill_every`-th 200
/// (lines then sit in its memory queue, Loki has not got them), and restarting it.
fn send_through_kills(state: &Path, loki_port: u16, port: u16, batches: u64, kill_every: u64) {
    let start = || Collector::start_on("durable", port, &config(state, loki_port));
    let mut c = start();
    for sequence in 1..=batches {
        c = deliver(c, sequence, &start);
        if sequence % kill_every == 0 {
            drop(c); // SIGKILL: no shutdown, no spool hand-off
            c = start();
        }
    }
    drop(c);
}

fn assert_every_line_arrives(loki: &LokiServer, state: &Path, port: u16, batches: u64) {
    let _c = Collector::start_on("durable-last", port, &config(state, loki.port));
    let all = batches * LINES;
    let complete = wait_for(Duration::from_secs(60), || {
        arrived(loki).0.len() as u64 >= all
    });
    let (ids, lines) = arrived(loki);
    let missing: Vec<u64> = (0..all).filter(|id| !ids.contains(id)).take(10).collect();
    assert!(
        complete && missing.is_empty(),
        "{} of {all} lines arrived; missing e.g. {missing:?}",
        ids.len()
    );
    eprintln!(
        "durability: {all} lines acknowledged, {lines} arrived ({} duplicates, at-least-once)",
        loki.duplicates()
    );
}

#[test]
fn durability_collector_killed_under_load_with_loki_up_loses_no_acknowledged_line() {
    let loki = LokiServer::start();
    let state = scratch_dir("durable-up");
    let port = free_port();
    send_through_kills(&state, loki.port, port, 24, 4);
    assert_every_line_arrives(&loki, &state, port, 24);
}

#[test]
fn durability_collector_killed_while_loki_is_away_loses_no_acknowledged_line() {
    let loki_port = free_port();
    let state = scratch_dir("durable-away");
    let port = free_port();
    send_through_kills(&state, loki_port, port, 18, 3);
    let loki = LokiServer::start_on(loki_port);
    assert_every_line_arrives(&loki, &state, port, 18);
}

/// Records the agent spooled, from its spool files' names (`{id}.{records}.batch`).
fn spooled_records(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| {
                    let name = e.file_name().into_string().ok()?;
                    name.strip_suffix(".batch")?
                        .rsplit_once('.')?
                        .1
                        .parse::<u64>()
                        .ok()
                })
                .sum()
        })
        .unwrap_or(0)
}

#[test]
fn durability_agent_killed_with_batches_in_its_spool_sends_them_after_a_restart() {
    let dir = scratch_dir("durable-agent");
    let log = dir.join("access.log");
    std::fs::write(&log, "").unwrap();
    let (collector_port, watched) = (free_port(), free_port());
    let url = format!("http://127.0.0.1:{collector_port}");
    let state = dir.join("agent-state");
    let args = ["--nginx-access-log", log.to_str().unwrap()];
    let agent = AgentRun::start(&url, &[watched], &state, &args);
    let n = 500;
    let mut file = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
    for id in 0..n {
        writeln!(file, "127.0.0.1 - - [29/Nov/2026:10:00:00 +0000] \"GET /line-{id} HTTP/1.1\" 502 2 \"-\" \"t\"").unwrap();
    }
    drop(file);
    // Sealed each second and on disk at once (the collector is away).
    let spool = state.join("spool");
    assert!(
        wait_for(Duration::from_secs(20), || spooled_records(&spool) >= n),
        "the agent spooled {} records",
        spooled_records(&spool)
    );
    drop(agent); // SIGKILL with everything in the spool
    let loki = LokiServer::start();
    let _c = Collector::start_on(
        "durable-agent",
        collector_port,
        &config(&dir.join("collector-state"), loki.port),
    );
    let _again = AgentRun::start(&url, &[watched], &state, &args);
    let delivered = wait_for(Duration::from_secs(30), || {
        arrived(&loki).0.len() as u64 >= n
    });
    let (ids, _) = arrived(&loki);
    assert!(delivered, "{} of {n} spooled lines reached Loki", ids.len());
}
