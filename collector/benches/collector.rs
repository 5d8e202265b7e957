//! `cargo xtask bench collector`: ingest decode + aggregate events/s and Loki encode
//! lines/s on one core, each measured in this run and compared with its target.
use std::time::{Duration, Instant};

use vigil_collector::{
    loki::{encode::encode_push, LogEntry},
    metrics::{install, Recorder},
};
use vigil_wire::{Batch, ConnectResult, ConnectionOutcome, DecodeLimits, NginxErrorRecord};

const INGEST_TARGET: f64 = 1_000_000.0;
const LOKI_TARGET: f64 = 200_000.0;
/// The collector's defaults: the bench measures the decode ingest runs.
const LIMITS: DecodeLimits = DecodeLimits {
    max_decoded_bytes: vigil_collector::config::DEFAULT_MAX_DECODED_BYTES,
    max_records: vigil_collector::config::DEFAULT_MAX_RECORDS_PER_BATCH,
};

fn batch(sequence: u64) -> Batch {
    let results = [
        ConnectResult::Ok,
        ConnectResult::Ok,
        ConnectResult::Ok,
        ConnectResult::Refused,
        ConnectResult::Timeout,
    ];
    Batch {
        agent_id: "bench".into(),
        sequence,
        node: "node-1".into(),
        connections: (0..5000u32)
            .map(|i| ConnectionOutcome {
                unix_ns: 1_795_600_000_000_000_000 + i64::from(i),
                pid: 4000 + i % 4,
                comm: "nginx".into(),
                src: format!("127.0.0.1:{}", 40000 + i % 20000),
                dst: format!("127.0.0.1:{}", 8080 + i % 20),
                result: results[i as usize % results.len()] as i32,
                errno: if i % 5 == 3 { 111 } else { 0 },
                connect_us: 50 + u64::from(i % 100),
                first_byte_us: (i % 5 < 3).then_some(2000 + u64::from(i % 1000)),
                bytes_sent: 420,
                bytes_received: 2048,
                duration_us: 3000,
                ..Default::default()
            })
            .collect(),
        nginx_errors: vec![NginxErrorRecord {
            line: "x".into(),
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// Runs `f` repeatedly for about `budget`; returns items per second.
fn rate(budget: Duration, items_per_call: usize, mut f: impl FnMut()) -> f64 {
    f(); // warm-up
    let start = Instant::now();
    let mut calls = 0usize;
    while start.elapsed() < budget {
        f();
        calls += 1;
    }
    (calls * items_per_call) as f64 / start.elapsed().as_secs_f64()
}

fn verdict(rate: f64, target: f64) -> &'static str {
    if rate >= target {
        "MET"
    } else {
        "NOT MET"
    }
}

fn main() {
    let idle = Duration::from_secs(600);
    let _handle = install(idle).expect("recorder");
    let recorder = Recorder::new(500, 10_000, idle);
    let bodies: Vec<Vec<u8>> = (1..=8).map(|s| batch(s).encode_compressed()).collect();
    let records = batch(1).len();
    let mut i = 0;
    let ingest = rate(Duration::from_secs(3), records, || {
        let decoded =
            Batch::decode_compressed(&bodies[i % bodies.len()], &LIMITS).expect("decodes");
        recorder.apply(&decoded);
        i += 1;
    });
    println!(
        "ingest decode+aggregate: {:.2} M events/s/core (target ≥ 1 M): {}",
        ingest / 1e6,
        verdict(ingest, INGEST_TARGET)
    );

    let entries: Vec<LogEntry> = (0..10_000)
        .map(|i| LogEntry {
            release: None,
            unix_ns: 1_795_600_000_000_000_000 + i,
            node: "node-1".into(),
            source: if i % 2 == 0 { "nginx_error" } else { "nginx_access" },
            level: "error",
            line: format!("2026/11/25 10:13:58 [error] 4242#4242: *{i} connect() failed (111: Connection refused) while connecting to upstream, client: 127.0.0.1, server: _, request: \"GET / HTTP/1.1\", upstream: \"http://127.0.0.1:8084/\", host: \"localhost\""),
            metadata: vec![("upstream", "http://127.0.0.1:8084/".into()), ("upstream_error", "refused".into()), ("errno", "111".into())],
        })
        .collect();
    let loki = rate(Duration::from_secs(3), entries.len(), || {
        std::hint::black_box(encode_push(&entries, true));
    });
    println!(
        "Loki encode (protobuf + snappy, 3 metadata pairs): {:.0} k lines/s/core (target ≥ 200 k): {}",
        loki / 1e3,
        verdict(loki, LOKI_TARGET)
    );
}
