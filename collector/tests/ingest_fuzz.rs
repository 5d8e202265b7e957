//! A short run of the ingest decoder fuzz (benches/fuzz: `cargo xtask bench fuzz` runs
//! 10 M executions): no panic, no allocation past the bounds, agreement with prost.
#[path = "../benches/fuzz/harness.rs"]
mod harness;
#[path = "../benches/fuzz/inputs.rs"]
mod inputs;

use vigil_wire::DecodeLimits;

const EXECUTIONS: u64 = 200_000;

/// The allocator's counters are process-wide: one measured run at a time.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn ingest_decoder_fuzz_smoke() {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let limits = DecodeLimits {
        max_decoded_bytes: 1 << 20,
        max_records: 2_000,
    };
    // A different seed each run widens what CI covers over time; printed to replay one.
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    println!("seed {seed}");
    let report = harness::run(EXECUTIONS, seed, limits);
    let failures: Vec<&String> = report.failures.iter().map(|(what, _)| what).collect();
    assert_eq!(
        (report.crashes, report.over_bound, report.mismatches),
        (0, 0, 0),
        "seed {seed}: {failures:?}"
    );
    assert!(report.largest_allocation <= limits.largest_allocation_bound());
    assert!(report.peak_live <= limits.memory_bound());
    // Every kind of outcome was reached: the inputs are not all refused at the door.
    assert!(
        report.outcomes.iter().all(|n| *n > 0),
        "{:?}",
        report.outcomes
    );
}

#[test]
fn ingest_decoder_bombs_at_the_default_limits() {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let limits = DecodeLimits {
        max_decoded_bytes: vigil_collector::config::DEFAULT_MAX_DECODED_BYTES,
        max_records: vigil_collector::config::DEFAULT_MAX_RECORDS_PER_BATCH,
    };
    let bodies: Vec<Vec<u8>> = inputs::bombs(&limits)
        .iter()
        .map(|raw| inputs::snappy(raw))
        .collect();
    let report = harness::run_bodies(&bodies, limits);
    let failures: Vec<&String> = report.failures.iter().map(|(what, _)| what).collect();
    assert_eq!(report.failed(), 0, "{failures:?}");
    let [accepted, too_large, too_many, _] = report.outcomes;
    assert!(
        accepted > 0 && too_large > 0 && too_many > 0,
        "{:?}",
        report.outcomes
    );
}
