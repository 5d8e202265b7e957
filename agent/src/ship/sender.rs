//! Sends spooled batches to the collector from a thread of its own: oldest first, retried
//! with exponential backoff and jitter while the collector is away, so at-least-once delivery
//! holds within the spool bound (the collector drops duplicates by agent id + sequence).
use std::{
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Condvar, Mutex,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use tracing::{info, warn};

use vigil_wire::{backoff::Backoff, spool::Spool};

#[derive(Default)]
pub struct ShipStats {
    pub sent: AtomicU64,
    pub retried: AtomicU64,
    /// Refused for good by the collector (400/413): retrying cannot help.
    pub rejected: AtomicU64,
}

struct Shared {
    spool: Mutex<Spool>,
    wake: Condvar,
    stopping: AtomicBool,
}

pub struct BatchSender {
    shared: Arc<Shared>,
    pub stats: Arc<ShipStats>,
    thread: Option<JoinHandle<()>>,
}

enum Outcome {
    Delivered,
    Refused(u16),
    Retry(String),
}

impl BatchSender {
    pub fn start(
        http: ureq::Agent,
        collector: &str,
        token: Option<String>,
        spool: Spool,
    ) -> BatchSender {
        let shared = Arc::new(Shared {
            spool: Mutex::new(spool),
            wake: Condvar::new(),
            stopping: AtomicBool::new(false),
        });
        let stats = Arc::new(ShipStats::default());
        let url = format!(
            "{}{}",
            collector.trim_end_matches('/'),
            vigil_wire::INGEST_PATH
        );
        let (s, st) = (shared.clone(), stats.clone());
        let thread = std::thread::Builder::new()
            .name("vigil-ship".into())
            .spawn(move || send_loop(&http, &url, token.as_deref(), &s, &st))
            .expect("spawn shipper thread");
        BatchSender {
            shared,
            stats,
            thread: Some(thread),
        }
    }

    pub fn enqueue(&self, records: u64, body: Vec<u8>) {
        // Drops are counted by the spool and reported once per interval by the caller.
        let _ = self
            .shared
            .spool
            .lock()
            .expect("spool lock")
            .push(records, body);
        self.shared.wake.notify_one();
    }

    /// (spooled bytes, batches dropped by the bound).
    pub fn spool_state(&self) -> (u64, u64) {
        let spool = self.shared.spool.lock().expect("spool lock");
        (spool.bytes(), spool.dropped.batches)
    }

    /// Try to deliver what is queued for up to `grace`, then keep the rest on disk.
    pub fn shutdown(mut self, grace: Duration) {
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline && !self.shared.spool.lock().expect("spool lock").is_empty()
        {
            std::thread::sleep(Duration::from_millis(50));
        }
        self.shared.stopping.store(true, Ordering::SeqCst);
        self.shared.wake.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let mut spool = self.shared.spool.lock().expect("spool lock");
        if !spool.is_empty() {
            info!(
                batches = spool.len(),
                "collector unreachable at shutdown; batches kept in the spool"
            );
        }
        let _ = spool.persist();
    }
}

fn send_loop(
    http: &ureq::Agent,
    url: &str,
    token: Option<&str>,
    shared: &Shared,
    stats: &ShipStats,
) {
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(30));
    let mut failing_since: Option<Instant> = None;
    loop {
        let batch = {
            let mut spool = shared.spool.lock().expect("spool lock");
            while spool.is_empty() && !shared.stopping.load(Ordering::SeqCst) {
                spool = shared
                    .wake
                    .wait_timeout(spool, Duration::from_secs(1))
                    .expect("spool lock")
                    .0;
            }
            if shared.stopping.load(Ordering::SeqCst) {
                return;
            }
            spool.front()
        };
        let Some(batch) = batch else { continue };
        match post(http, url, token, &batch.body) {
            Outcome::Delivered => {
                shared.spool.lock().expect("spool lock").pop();
                stats.sent.fetch_add(1, Ordering::Relaxed);
                if let Some(since) = failing_since.take() {
                    info!(after = ?since.elapsed(), "collector reachable again");
                }
                backoff.reset();
            }
            Outcome::Refused(status) => {
                warn!(status, batch = %batch.id, "collector refused the batch; dropped (it cannot succeed on retry)");
                shared.spool.lock().expect("spool lock").pop();
                stats.rejected.fetch_add(1, Ordering::Relaxed);
            }
            Outcome::Retry(reason) => {
                stats.retried.fetch_add(1, Ordering::Relaxed);
                if failing_since.is_none() {
                    warn!(%reason, "cannot deliver to the collector; spooling and retrying with backoff");
                    failing_since = Some(Instant::now());
                }
                let wait = backoff.next_wait();
                let spool = shared.spool.lock().expect("spool lock");
                // Interruptible by shutdown.
                let _ = shared.wake.wait_timeout(spool, wait);
            }
        }
    }
}

fn post(http: &ureq::Agent, url: &str, token: Option<&str>, body: &[u8]) -> Outcome {
    let mut request = http
        .post(url)
        .header("Content-Type", vigil_wire::CONTENT_TYPE);
    if let Some(token) = token {
        request = request.header("Authorization", &format!("Bearer {token}"));
    }
    match request.send(body) {
        Ok(response) => match response.status().as_u16() {
            200..=299 => Outcome::Delivered,
            401 | 403 => Outcome::Retry(format!(
                "collector says {} (check --token-file)",
                response.status()
            )),
            408 | 429 => Outcome::Retry(format!("collector says {}", response.status())),
            status @ 400..=499 => Outcome::Refused(status),
            status => Outcome::Retry(format!("collector says {status}")),
        },
        Err(e) => Outcome::Retry(e.to_string()),
    }
}
