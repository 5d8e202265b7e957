//! The Loki sink's ingest side: entries queue in memory, the oldest spill to the spool past
//! the queue limit, and at shutdown everything not yet shipped goes to the spool. The
//! shipper thread (`shipper.rs`) sends them.
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

use vigil_wire::spool::{Spool, SpoolError, Spooled};

use super::{
    encode::{encode_push, LogEntry},
    shipper::Shipper,
};

#[derive(Debug, Clone)]
pub enum LokiAuth {
    Basic { user: String, password: String },
    Bearer(String),
}

impl LokiAuth {
    /// The `Authorization` header value.
    pub fn header(&self) -> String {
        use base64::Engine;
        match self {
            LokiAuth::Basic { user, password } => {
                let encoded =
                    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
                format!("Basic {encoded}")
            }
            LokiAuth::Bearer(token) => format!("Bearer {token}"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct LokiConfig {
    /// Base URL; pushes go to `{url}/loki/api/v1/push`.
    pub url: String,
    pub tenant: Option<String>,
    pub auth: Option<LokiAuth>,
    pub batch_bytes: usize,
    pub batch_age: Duration,
    /// Entries waiting in memory; beyond it the oldest spill to `spool_dir`, or without one
    /// are dropped (and counted).
    pub queue_limit: usize,
    pub spool_dir: Option<std::path::PathBuf>,
    /// Disk bound of the spool; past it the oldest spilled batches are dropped (and counted).
    pub spool_disk_bytes: u64,
}

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
const SPILL_CHUNK: usize = 5000;

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
        let queue = Arc::new(Queue {
            entries: Mutex::new(VecDeque::new()),
            spool: Mutex::new(spool),
            wake: Condvar::new(),
            stopping: AtomicBool::new(false),
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
        let mut overflow = Vec::new();
        while q.len() > self.limit {
            let n = SPILL_CHUNK.min(q.len());
            overflow.push(q.drain(..n).collect::<Vec<_>>());
        }
        gauge!("vigil_loki_queue_lines").set(q.len() as f64);
        drop(q);
        // Encoded and written after the queue lock is released: the shipper and other
        // requests need it meanwhile.
        for chunk in overflow {
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
                warn!("a Loki push still in progress at shutdown; its batch may be lost");
            }
        }
        let queued: Vec<LogEntry> = self
            .queue
            .entries
            .lock()
            .expect("loki queue lock")
            .drain(..)
            .collect();
        for chunk in queued.chunks(SPILL_CHUNK) {
            self.queue.spill(chunk);
        }
        if !queued.is_empty() {
            info!(
                lines = queued.len(),
                "Loki lines kept in the spool for the next start"
            );
        }
    }
}

impl Queue {
    /// Encodes `chunk` into the spool; what the spool's bound drops is counted.
    pub(super) fn spill(&self, chunk: &[LogEntry]) {
        let mut spool = self.spool.lock().expect("loki spool lock");
        let dropped = spool.push(Spooled {
            id: format!("{:030}", crate::loki::next_spool_id()),
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

#[cfg(test)]
mod tests {
    use super::LokiAuth;

    #[test]
    fn basic_auth_is_rfc4648_base64() {
        let basic = |user: &str, password: &str| {
            LokiAuth::Basic {
                user: user.into(),
                password: password.into(),
            }
            .header()
        };
        assert_eq!(basic("user", "pass"), "Basic dXNlcjpwYXNz");
        assert_eq!(basic("a", ""), "Basic YTo=");
        assert_eq!(basic("ab", "c"), "Basic YWI6Yw==");
        assert_eq!(LokiAuth::Bearer("t".into()).header(), "Bearer t");
    }
}
