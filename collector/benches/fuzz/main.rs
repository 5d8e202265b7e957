//! `cargo xtask bench fuzz`: the ingest decoder fuzz (see harness.rs), 10 M executions by
//! default (`-- --executions N --seed S`), then the bombs once more at the collector's
//! default limits. Prints executions, execs/s, crashes, the largest allocation and peak
//! live bytes against their bounds; exits non-zero on any failure, saving the failing
//! bodies under target/fuzz-failures/.
mod harness;
mod inputs;

use std::time::Instant;

use vigil_collector::config::{DEFAULT_MAX_DECODED_BYTES, DEFAULT_MAX_RECORDS_PER_BATCH};
use vigil_wire::DecodeLimits;

/// Limits scaled down so that a bomb at the limit costs microseconds: every bound is linear
/// in them, and the defaults get their own pass below.
const FUZZ_LIMITS: DecodeLimits = DecodeLimits {
    max_decoded_bytes: 1 << 20,
    max_records: 2_000,
};
const DEFAULT_LIMITS: DecodeLimits = DecodeLimits {
    max_decoded_bytes: DEFAULT_MAX_DECODED_BYTES,
    max_records: DEFAULT_MAX_RECORDS_PER_BATCH,
};

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| v.replace('_', "").parse().expect("a number"))
        .unwrap_or(default)
}

fn main() {
    let executions = arg("--executions", 10_000_000);
    let seed = arg("--seed", 0x5eed);
    let report = harness::run(executions, seed, FUZZ_LIMITS);
    print(&report, &FUZZ_LIMITS, "fuzz");
    let failed = report.failed() + defaults_pass();
    save(&report);
    if failed > 0 {
        eprintln!("{failed} failing executions");
        std::process::exit(1);
    }
}

fn print(report: &harness::Report, limits: &DecodeLimits, what: &str) {
    let secs = report.elapsed.as_secs_f64();
    println!(
        "{what}: {} executions in {secs:.1} s ({:.0} execs/s), limits {} decoded bytes, {} records",
        report.executions,
        report.executions as f64 / secs,
        limits.max_decoded_bytes,
        limits.max_records
    );
    println!(
        "  crashes {}, over a bound {}, disagreements with prost {}",
        report.crashes, report.over_bound, report.mismatches
    );
    println!(
        "  largest allocation {} bytes (bound {}), peak live {} bytes (bound {})",
        report.largest_allocation,
        limits.largest_allocation_bound(),
        report.peak_live,
        limits.memory_bound()
    );
    let [accepted, too_large, too_many, undecodable] = report.outcomes;
    println!("  outcomes: accepted {accepted}, decoded_too_large {too_large}, too_many_records {too_many}, undecodable {undecodable}");
    let kinds = inputs::KINDS.iter().zip(report.kinds).zip(report.kind_time);
    for ((kind, n), time) in kinds.filter(|((_, n), _)| *n > 0) {
        println!(
            "  {kind:?}: {n} executions, {:.1} µs each",
            time.as_secs_f64() * 1e6 / n as f64
        );
    }
}

/// Every bomb at the collector's default limits, unmutated: the bounds at real sizes.
fn defaults_pass() -> u64 {
    let bodies: Vec<Vec<u8>> = inputs::bombs(&DEFAULT_LIMITS)
        .iter()
        .map(|raw| inputs::snappy(raw))
        .collect();
    let start = Instant::now();
    let report = harness::run_bodies(&bodies, DEFAULT_LIMITS);
    println!(
        "default limits: {} bombs (largest body {} bytes) in {:.1} s",
        bodies.len(),
        bodies.iter().map(Vec::len).max().unwrap_or(0),
        start.elapsed().as_secs_f64()
    );
    print(&report, &DEFAULT_LIMITS, "  bombs");
    save(&report);
    report.failed()
}

fn save(report: &harness::Report) {
    if report.failures.is_empty() {
        return;
    }
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/fuzz-failures");
    std::fs::create_dir_all(&dir).expect("target/fuzz-failures");
    for (i, (what, body)) in report.failures.iter().enumerate() {
        let path = dir.join(format!("{i}.body"));
        std::fs::write(&path, body).expect("write a failing body");
        eprintln!("{what}: {}", path.display());
    }
}
