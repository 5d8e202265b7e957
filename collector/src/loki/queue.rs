//! What the sink's ingest side and the shipper thread share: the in-memory queue of entries
//! and the spool its oldest entries spill to (encoded as pushes, under ids from
//! [`next_spool_id`]) when memory is full or the collector stops.
use std::{
    collections::VecDeque,
    sync::{atomic::AtomicBool, Condvar, Mutex},
};

use metrics::{counter, gauge};
use tracing::warn;
use vigil_wire::spool::{Spool, Spooled};

use super::encode::{encode_push, LogEntry};

/// What the ingest side and the shipper thread share.
pub(super) struct Queue {
    pub(super) entries: Mutex<VecDeque<LogEntry>>,
    /// Older entries that did not fit in memory, as encoded pushes on disk.
    pub(super) spool: Mutex<Spool>,
    pub(super) wake: Condvar,
    /// Set at shutdown: the shipper hands back what it holds and stops.
    pub(super) stopping: AtomicBool,
}

/// How many of the oldest entries move to disk at once when memory is full.
pub(super) const SPILL_CHUNK: usize = 5000;

impl Queue {
    /// Encodes `chunk` into the spool; what the spool's bound drops is counted.
    pub(super) fn spill(&self, chunk: &[LogEntry]) {
        let mut spool = self.spool.lock().expect("loki spool lock");
        let dropped = spool.push(Spooled {
            id: format!("{:030}", next_spool_id()),
            records: chunk.len() as u64,
            body: encode_push(chunk, true),
        });
        if dropped.records > 0 {
            warn!(
                lines = dropped.records,
                "Loki queue and spool full: oldest lines dropped"
            );
            counter!("vigil_loki_lines_dropped_total", "reason" => "queue_full")
                .increment(dropped.records);
        }
        gauge!("vigil_loki_spool_bytes").set(spool.bytes() as f64);
    }
}

/// Spool file ids: ordered across restarts (time-based start), unique within a run.
pub fn next_spool_id() -> u128 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    static START: std::sync::OnceLock<u128> = std::sync::OnceLock::new();
    let start = *START.get_or_init(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros())
            .unwrap_or(0)
    });
    start * 1_000_000 + u128::from(NEXT.fetch_add(1, Ordering::Relaxed))
}
