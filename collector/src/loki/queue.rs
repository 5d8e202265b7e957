//! What the sink's ingest side and the shipper thread share: the in-memory queue of entries
//! and the spool its oldest entries spill to (encoded as pushes) when memory is full or the
//! collector stops. Spilled chunks are batches: at most `batch_bytes` each, so a spooled
//! chunk is never bigger than what Loki takes in one push.
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
    /// The size of one push, and of one spilled chunk.
    pub(super) batch_bytes: usize,
}

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

    /// Spills `entries` (oldest first) in chunks of at most `batch_bytes`.
    pub(super) fn spill_all(&self, mut entries: VecDeque<LogEntry>) {
        while !entries.is_empty() {
            let (n, _) = batch_len(&entries, self.batch_bytes);
            let chunk: Vec<LogEntry> = entries.drain(..n).collect();
            self.spill(&chunk);
        }
    }
}

/// Takes the oldest entries out of `queue` until it holds at most `limit`, in whole chunks of
/// up to `batch_bytes` (one disk write per chunk, not per line).
pub(super) fn overflow(
    queue: &mut VecDeque<LogEntry>,
    limit: usize,
    batch_bytes: usize,
) -> Vec<Vec<LogEntry>> {
    let mut chunks = Vec::new();
    while queue.len() > limit {
        let (n, _) = batch_len(queue, batch_bytes);
        chunks.push(queue.drain(..n).collect());
    }
    chunks
}

/// How many of the oldest entries make one batch of at most `limit` bytes (at least one
/// entry, however big), and whether that batch is full. Walks only as far as one batch: the
/// queue may hold far more, and ingest waits on its lock.
pub(super) fn batch_len(queue: &VecDeque<LogEntry>, limit: usize) -> (usize, bool) {
    let mut bytes = 0;
    for (i, e) in queue.iter().enumerate() {
        bytes += e.size();
        if bytes > limit {
            return (i.max(1), true);
        }
        if bytes == limit {
            return (i + 1, true);
        }
    }
    (queue.len(), false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(n: usize, line_bytes: usize) -> VecDeque<LogEntry> {
        (0..n)
            .map(|i| LogEntry {
                release: None,
                unix_ns: i as i64,
                node: "n".into(),
                source: "nginx_access",
                level: "info",
                line: "x".repeat(line_bytes),
                metadata: vec![("status", "200".into())],
            })
            .collect()
    }

    #[test]
    fn spilled_chunks_respect_batch_bytes() {
        // 5000 long lines (the old fixed chunk) are far over one push.
        let mut q = entries(5100, 2000);
        let size = q[0].size();
        let per_chunk = 64 * 1024 / size;
        let chunks = overflow(&mut q, 100, 64 * 1024);
        assert!(
            q.len() <= 100 && q.len() > 100 - per_chunk,
            "to the limit, in whole chunks"
        );
        assert_eq!(chunks.iter().map(Vec::len).sum::<usize>(), 5100 - q.len());
        for chunk in &chunks {
            let bytes: usize = chunk.iter().map(LogEntry::size).sum();
            assert!(bytes <= 64 * 1024, "{bytes}");
            assert_eq!(chunk.len(), per_chunk);
        }
    }

    #[test]
    fn a_line_bigger_than_a_batch_is_a_batch_of_its_own() {
        let q = entries(3, 5000);
        assert_eq!(batch_len(&q, 1000), (1, true));
        let exact = q[0].size() * 2;
        assert_eq!(batch_len(&q, exact), (2, true));
        assert_eq!(batch_len(&q, exact + 1), (2, true));
        assert_eq!(batch_len(&q, exact * 10), (3, false));
        assert_eq!(batch_len(&VecDeque::new(), 10), (0, false));
    }
}
