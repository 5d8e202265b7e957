//! `cargo xtask bench collector`: ingest decode + aggregate events/s and Loki encode
//! lines/s on one core, each measured in this run and compared with its target.
use std::time::{Duration, Instant};

use std::sync::Arc;

use vigil_collector::{
    loki::{encode::encode_push, LogEntry},
    metrics::{install, Recorder},
    wal::{Wal, WalRecord},
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
    let recorder = Arc::new(Recorder::new(500, 10_000, idle));
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

    durable_ingest(&recorder, &bodies, records);

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

/// CPU seconds this process used so far (utime + stime from /proc/self/stat, at Linux's
/// USER_HZ of 100).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .expect("comm")
        .1
        .split_whitespace()
        .collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    ticks as f64 / 100.0
}

/// Ingest as the collector runs it with `state_dir`: decode + aggregate + an append to the
/// write-ahead log (group commit, fdatasync) before the batch counts, 8 agents at once.
/// Reported per CPU-second (what a core does) and per wall second (what the disk allows).
fn durable_ingest(recorder: &Arc<Recorder>, bodies: &[Vec<u8>], records: usize) {
    let dir = std::env::temp_dir().join(format!("vigil-bench-wal-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (wal, _) = Wal::open(&dir, 1 << 40).expect("wal");
    let wal = Arc::new(wal);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let budget = Duration::from_secs(4);
    let (cpu0, start) = (cpu_seconds(), Instant::now());
    let batches: usize = runtime.block_on(async {
        let tasks: Vec<_> = (0..8u64)
            .map(|agent| {
                let (wal, bodies, recorder) = (wal.clone(), bodies.to_vec(), recorder.clone());
                tokio::spawn(async move {
                    let mut n = 0usize;
                    while start.elapsed() < budget {
                        let body = &bodies[n % bodies.len()];
                        let batch = Batch::decode_compressed(body, &LIMITS).expect("decodes");
                        let record = WalRecord {
                            agent_id: format!("bench-{agent}"),
                            sequence: n as u64 + 1,
                            body: body.clone(),
                        };
                        let segment = wal.append(&record).await.expect("append");
                        recorder.apply(&batch);
                        wal.release(segment);
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        let mut total = 0;
        for t in tasks {
            total += t.await.unwrap();
        }
        total
    });
    let (cpu, wall) = (cpu_seconds() - cpu0, start.elapsed().as_secs_f64());
    let events = (batches * records) as f64;
    let per_core = events / cpu.max(0.01);
    println!(
        "durable ingest (decode+aggregate+WAL group commit, 8 agents): {:.2} M events/s/core (target ≥ 1 M): {}; {:.2} M events/s wall, {batches} batches fsynced in {wall:.1} s",
        per_core / 1e6,
        verdict(per_core, INGEST_TARGET),
        events / wall / 1e6,
    );
    wal.close();
    let _ = std::fs::remove_dir_all(&dir);
}
