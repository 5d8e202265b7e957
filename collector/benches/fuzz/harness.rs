//! The ingest decoder fuzz: `Batch::decode_compressed` (the function ingest runs) on
//! structure-aware inputs (`inputs`), under a counting global allocator. Per execution it
//! checks: no panic; the largest single allocation and the peak of live bytes within the
//! bounds `DecodeLimits` promises; and, for inputs small enough to decode without bounds,
//! agreement with plain prost (an accepted batch is prost's batch, with the records the
//! pre-pass counted; a refusal as malformed is prost's refusal too).
use std::{
    alloc::{GlobalAlloc, Layout, System},
    panic::{catch_unwind, AssertUnwindSafe},
    sync::atomic::{AtomicUsize, Ordering::Relaxed},
    time::{Duration, Instant},
};

use prost::Message;
use vigil_wire::{Batch, DecodeLimits, RepeatedCounts, WireError};

use crate::inputs::{Inputs, KINDS};

/// The system allocator, counting live bytes, their peak and the largest allocation.
/// A realloc counts as a new allocation before the old one is freed (as it may be).
pub struct CountingAlloc;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
static LARGEST: AtomicUsize = AtomicUsize::new(0);

fn allocated(size: usize) {
    let live = LIVE.fetch_add(size, Relaxed) + size;
    PEAK.fetch_max(live, Relaxed);
    LARGEST.fetch_max(size, Relaxed);
}

// SAFETY: forwards to the system allocator unchanged; the counters are side effects.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        allocated(layout.size());
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        allocated(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        allocated(new_size);
        LIVE.fetch_sub(layout.size(), Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: CountingAlloc = CountingAlloc;

/// Starts measuring one execution: the live bytes now.
fn begin() -> usize {
    let live = LIVE.load(Relaxed);
    PEAK.store(live, Relaxed);
    LARGEST.store(0, Relaxed);
    live
}

/// (peak live bytes above `base`, largest single allocation) since `begin`.
fn end(base: usize) -> (usize, usize) {
    (
        PEAK.load(Relaxed).saturating_sub(base),
        LARGEST.load(Relaxed),
    )
}

/// Bodies of this decompressed size or less are also decoded by plain prost, to compare.
const DIFFERENTIAL_MAX: usize = 64 << 10;

#[derive(Debug, Default)]
pub struct Report {
    pub executions: u64,
    pub elapsed: Duration,
    pub crashes: u64,
    /// Executions whose largest allocation or peak live bytes passed the bound.
    pub over_bound: u64,
    /// Executions where the bounded decode and plain prost disagreed.
    pub mismatches: u64,
    pub largest_allocation: usize,
    pub peak_live: usize,
    /// Outcomes: accepted, decoded_too_large, too_many_records, undecodable.
    pub outcomes: [u64; 4],
    pub kinds: [u64; KINDS.len()],
    /// Time spent decoding (and checking) each kind of input.
    pub kind_time: [Duration; KINDS.len()],
    /// The first failing bodies, with what went wrong.
    pub failures: Vec<(String, Vec<u8>)>,
}

impl Report {
    pub fn failed(&self) -> u64 {
        self.crashes + self.over_bound + self.mismatches
    }

    fn fail(&mut self, what: String, body: &[u8]) {
        if self.failures.len() < 10 {
            self.failures.push((what, body.to_vec()));
        }
    }
}

/// Runs `executions` decodes from `seed` within `limits`.
pub fn run(executions: u64, seed: u64, limits: DecodeLimits) -> Report {
    let mut inputs = Inputs::new(seed, &limits);
    let mut report = Report::default();
    let start = Instant::now();
    for _ in 0..executions {
        let (kind, body) = inputs.next();
        let k = KINDS.iter().position(|k| *k == kind).unwrap();
        let started = Instant::now();
        execute(&body, &limits, &mut report);
        report.kinds[k] += 1;
        report.kind_time[k] += started.elapsed();
    }
    report.executions = executions;
    report.elapsed = start.elapsed();
    report
}

/// Decodes each of `bodies` once within `limits`.
pub fn run_bodies(bodies: &[Vec<u8>], limits: DecodeLimits) -> Report {
    let mut report = Report::default();
    let start = Instant::now();
    for body in bodies {
        execute(body, &limits, &mut report);
    }
    report.executions = bodies.len() as u64;
    report.elapsed = start.elapsed();
    report
}

fn execute(body: &[u8], limits: &DecodeLimits, report: &mut Report) {
    let base = begin();
    let decoded = catch_unwind(AssertUnwindSafe(|| Batch::decode_compressed(body, limits)));
    let (peak, largest) = end(base);
    report.peak_live = report.peak_live.max(peak);
    report.largest_allocation = report.largest_allocation.max(largest);
    if largest > limits.largest_allocation_bound() || peak > limits.memory_bound() {
        report.over_bound += 1;
        report.fail(format!("allocated {largest} at once, {peak} live"), body);
    }
    let Ok(decoded) = decoded else {
        report.crashes += 1;
        report.fail("panicked".into(), body);
        return;
    };
    report.outcomes[match &decoded {
        Ok(_) => 0,
        Err(WireError::TooLarge { .. }) => 1,
        Err(WireError::TooManyRecords { .. }) => 2,
        Err(_) => 3,
    }] += 1;
    if let Some(mismatch) = differential(body, &decoded) {
        report.mismatches += 1;
        report.fail(mismatch, body);
    }
}

/// How the bounded decode disagrees with plain prost on a small body, if it does.
fn differential(body: &[u8], decoded: &Result<Batch, WireError>) -> Option<String> {
    let size = snap::raw::decompress_len(body).ok()?;
    if size > DIFFERENTIAL_MAX {
        return None;
    }
    let raw = snap::raw::Decoder::new().decompress_vec(body).ok()?;
    let plain = Batch::decode(raw.as_slice());
    match (decoded, plain) {
        // Compared encoded: a NaN read from the wire is not equal to itself.
        (Ok(ours), Ok(plain)) if ours.encode_to_vec() != plain.encode_to_vec() => {
            Some("accepted a different batch".into())
        }
        (Ok(_), Err(e)) => Some(format!("accepted what prost refuses: {e}")),
        (Err(WireError::Malformed { what, .. }), Ok(_)) if *what != "group wire type" => {
            Some(format!("refused as {what} what prost accepts"))
        }
        (Err(WireError::Decode(e)), Ok(_)) => Some(format!("refused ({e}) what prost accepts")),
        (Err(WireError::TooManyRecords { .. }), Ok(plain)) => {
            let counts = RepeatedCounts::of(&raw).ok()?;
            let records = [
                plain.connections.len(),
                plain.upstreams.len(),
                plain.processes.len(),
                plain.nginx_errors.len(),
                plain.nginx_access.len(),
            ];
            (counts.records != records)
                .then(|| format!("counted {:?}, prost decoded {records:?}", counts.records))
        }
        _ => None,
    }
}
