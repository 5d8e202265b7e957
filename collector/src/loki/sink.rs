//! `LokiSink`, the handle the collector holds: `start` opens the spool and spawns the
//! shipper thread (`shipper.rs`), `enqueue` adds a batch's entries to the queue (the oldest
//! spill to the spool past the queue limit, `queue.rs`), and `shutdown` stops the shipper and
//! moves everything not yet shipped to the spool for the next start.
use std::{
    collections::VecDeque,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Condvar, Mutex,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use metrics::{counter, gauge};
use tracing::{info, warn};
use vigil_wire::spool::{Spool, SpoolError};

use super::{
    config::LokiConfig,
    encode::LogEntry,
    queue::{overflow, Queue},
    shipper::Shipper,
};

#[derive(Clone)]
pub struct LokiSink {
    queue: Arc<Queue>,
    limit: usize,
    shipper: Arc<Mutex<Option<JoinHandle<()>>>>,
}

impl LokiSink {
    pub fn start(config: LokiConfig) -> Result<LokiSink, SpoolError> {
        let spool = Spool::open(config.spool_dir.clone(), 0, config.spool_disk_bytes)?;
        if !spool.is_empty() {
            info!(
                batches = spool.len(),
                "resending Loki batches spooled by an earlier run"
            );
        }
        // Present from the start: an absent counter reads as "not exported", not as zero.
        counter!("vigil_loki_spool_corrupt_total").absolute(spool.corrupt.batches);
        let queue = Arc::new(Queue {
            entries: Mutex::new(VecDeque::new()),
            spool: Mutex::new(spool),
            wake: Condvar::new(),
            stopping: AtomicBool::new(false),
            batch_bytes: config.batch_bytes,
        });
        let limit = config.queue_limit;
        let shared = queue.clone();
        let shipper = std::thread::Builder::new()
            .name("vigil-loki".into())
            .spawn(move || Shipper::new(config).run(&shared))
            .expect("spawn loki thread");
        Ok(LokiSink {
            queue,
            limit,
            shipper: Arc::new(Mutex::new(Some(shipper))),
        })
    }

    pub fn enqueue(&self, entries: Vec<LogEntry>) {
        if entries.is_empty() {
            return;
        }
        let mut q = self.queue.entries.lock().expect("loki queue lock");
        q.extend(entries);
        let spilled = overflow(&mut q, self.limit, self.queue.batch_bytes);
        gauge!("vigil_loki_queue_lines").set(q.len() as f64);
        drop(q);
        // Encoded and written after the queue lock is released: the shipper and other
        // requests need it meanwhile.
        for chunk in spilled {
            self.queue.spill(&chunk);
        }
        self.queue.wake.notify_one();
    }

    /// At shutdown: the shipper hands back the batch it holds, and that and everything
    /// still queued go to the spool, so the next start sends them (nothing is lost to a
    /// restart while Loki is away). Waits up to `grace` for a push in progress.
    pub fn shutdown(&self, grace: Duration) {
        self.queue.stopping.store(true, Ordering::SeqCst);
        self.queue.wake.notify_all();
        if let Some(shipper) = self.shipper.lock().expect("shipper lock").take() {
            let deadline = Instant::now() + grace;
            while !shipper.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            if !shipper.is_finished() {
                // A spooled batch stays on disk until Loki acknowledges it; one taken from
                // memory is only in the shipper's hands.
                warn!("a Loki push still in progress at shutdown; if its lines came from memory, they may be lost");
            }
        }
        let queued = std::mem::take(&mut *self.queue.entries.lock().expect("loki queue lock"));
        let lines = queued.len();
        self.queue.spill_all(queued);
        if lines > 0 {
            info!(lines, "Loki lines kept in the spool for the next start");
        }
    }
}
