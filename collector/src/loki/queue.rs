//! What the sink's ingest side and the shipper thread share: the in-memory queue of entries
//! and the spool its oldest entries spill to (encoded as pushes) when memory is full or the
//! collector stops.
use std::{
    collections::VecDeque,
    sync::{atomic::AtomicBool, Condvar, Mutex},
};

use metrics::{counter, gauge};
use tracing::warn;
use vigil_wire::spool::Spool;

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
        let dropped = spool.push(chunk.len() as u64, encode_push(chunk, true));
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
