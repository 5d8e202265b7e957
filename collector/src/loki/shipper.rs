//! Ships log entries to Loki from a thread of its own: batches by bytes and age, retries
//! 429/5xx/connection errors with backoff, and never loses a batch to one bad entry — a 400
//! caused by structured metadata folds it into the line (and remembers this Loki refuses
//! it), any other 400 splits the batch until the bad entry stands alone; that one is dropped,
//! counted and logged. At shutdown what it holds goes back to the spool.
use std::{
    collections::VecDeque,
    sync::atomic::Ordering,
    time::{Duration, Instant},
};

use metrics::{counter, gauge};
use tracing::{info, warn};
use vigil_wire::backoff::Backoff;

use super::{
    config::{LokiAuth, LokiConfig},
    encode::{decode_spooled, encode_push, LogEntry},
    queue::Queue,
};

/// Entries on their way to Loki, with their push body once encoded: a retry or a spooled
/// batch (encoded with metadata when it was spilled) is sent as it is.
struct Outgoing {
    entries: Vec<LogEntry>,
    /// Encoded with structured metadata (`true`) or folded into the lines (`false`).
    body: Option<(bool, Vec<u8>)>,
}

impl Outgoing {
    fn new(entries: Vec<LogEntry>) -> Self {
        Outgoing {
            entries,
            body: None,
        }
    }

    fn body(&mut self, with_metadata: bool) -> &[u8] {
        if self.body.as_ref().is_none_or(|(m, _)| *m != with_metadata) {
            self.body = Some((with_metadata, encode_push(&self.entries, with_metadata)));
        }
        &self.body.as_ref().expect("just encoded").1
    }
}

enum Push {
    Sent,
    Retry(String),
    BadRequest(String),
    Refused(u16, String),
}

pub(super) struct Shipper {
    config: LokiConfig,
    http: ureq::Agent,
    push_url: String,
    /// The `Authorization` value, built once.
    authorization: Option<String>,
    /// Cleared when this Loki refuses structured metadata (before Loki 3 / schema v13).
    metadata_ok: bool,
    backoff: Backoff,
}

impl Shipper {
    pub(super) fn new(config: LokiConfig) -> Self {
        let http = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .into();
        let push_url = format!("{}/loki/api/v1/push", config.url);
        let authorization = config.auth.as_ref().map(LokiAuth::header);
        Shipper {
            config,
            http,
            push_url,
            authorization,
            metadata_ok: true,
            backoff: Backoff::new(Duration::from_millis(200), Duration::from_secs(30)),
        }
    }

    pub(super) fn run(mut self, queue: &Queue) {
        while let Some(batch) = self.next_batch(queue) {
            self.deliver(batch, queue);
        }
    }

    /// Spilled entries first (they are older), then memory: waits for entries, then gathers
    /// up to `batch_bytes` or until the oldest is `batch_age` old.
    /// `None` once the sink is shutting down: what is left stays for the spool.
    fn next_batch(&self, queue: &Queue) -> Option<Outgoing> {
        loop {
            if queue.stopping.load(Ordering::SeqCst) {
                return None;
            }
            if let Some(entries) = Self::from_spool(queue) {
                return Some(entries);
            }
            let q = queue.entries.lock().expect("loki queue lock");
            if !q.is_empty() {
                return Some(Outgoing::new(self.gather(queue, q)));
            }
            // Woken by enqueue; the timeout also covers entries that went straight to the spool.
            let _ = queue
                .wake
                .wait_timeout(q, Duration::from_millis(500))
                .expect("loki queue lock");
        }
    }

    fn from_spool(queue: &Queue) -> Option<Outgoing> {
        let mut spool = queue.spool.lock().expect("loki spool lock");
        while let Some(spooled) = spool.front() {
            spool.pop();
            gauge!("vigil_loki_spool_bytes").set(spool.bytes() as f64);
            // Decoded for the line counts and in case Loki wants it split or folded.
            match decode_spooled(&spooled.body) {
                Some(entries) => {
                    return Some(Outgoing {
                        entries,
                        body: Some((true, spooled.body)),
                    })
                }
                None => warn!(file = %spooled.id, "unreadable Loki spool batch skipped"),
            }
        }
        None
    }

    fn gather<'a>(
        &self,
        queue: &'a Queue,
        mut q: std::sync::MutexGuard<'a, VecDeque<LogEntry>>,
    ) -> Vec<LogEntry> {
        let opened = Instant::now();
        loop {
            let (take, full) = batch_len(&q, self.config.batch_bytes);
            let age = opened.elapsed();
            if full || age >= self.config.batch_age || queue.stopping.load(Ordering::SeqCst) {
                let batch: Vec<LogEntry> = q.drain(..take).collect();
                gauge!("vigil_loki_queue_lines").set(q.len() as f64);
                return batch;
            }
            q = queue
                .wake
                .wait_timeout(q, self.config.batch_age - age)
                .expect("loki queue lock")
                .0;
        }
    }

    /// Sends until Loki has it, or what it refuses is dropped and counted. Interrupted by a
    /// shutdown, it hands what is still pending to the spool.
    fn deliver(&mut self, batch: Outgoing, queue: &Queue) {
        let mut pending = vec![batch];
        while let Some(mut outgoing) = pending.pop() {
            let body = outgoing.body(self.metadata_ok);
            let push = self.push(body);
            let entries = &outgoing.entries;
            match push {
                Push::Sent => {
                    counter!("vigil_loki_lines_sent_total").increment(entries.len() as u64);
                    if self.backoff.failing() {
                        info!("Loki reachable again");
                    }
                    self.backoff.reset();
                }
                Push::Retry(reason) => {
                    counter!("vigil_loki_lines_retried_total").increment(entries.len() as u64);
                    if !self.backoff.failing() {
                        warn!(%reason, "Loki push failed; retrying with backoff");
                    }
                    pending.push(outgoing);
                    if !sleep_unless_stopping(queue, self.backoff.next_wait()) {
                        for outgoing in pending.iter().rev() {
                            queue.spill(&outgoing.entries);
                        }
                        return;
                    }
                }
                Push::BadRequest(message)
                    if self.metadata_ok && message.contains("structured metadata") =>
                {
                    warn!("Loki refuses structured metadata; folding it into the log line from now on");
                    self.metadata_ok = false;
                    pending.push(outgoing);
                }
                Push::BadRequest(message) if entries.len() > 1 => {
                    // Find the bad entry without losing the good ones.
                    let mut left = outgoing.entries;
                    let right = left.split_off(left.len() / 2);
                    warn!(%message, "Loki rejected a batch; splitting it to isolate the bad entry");
                    pending.push(Outgoing::new(right));
                    pending.push(Outgoing::new(left));
                }
                Push::BadRequest(message) => {
                    counter!("vigil_loki_lines_failed_total", "reason" => "rejected").increment(1);
                    warn!(%message, line = %entries[0].line.chars().take(200).collect::<String>(), "Loki rejected a log line; dropped");
                }
                Push::Refused(status, message) => {
                    counter!("vigil_loki_lines_failed_total", "reason" => status.to_string())
                        .increment(entries.len() as u64);
                    warn!(status, %message, lines = entries.len(), "Loki refused the batch (check URL, tenant and credentials); dropped");
                }
            }
        }
    }

    fn push(&self, body: &[u8]) -> Push {
        let mut request = self
            .http
            .post(&self.push_url)
            .header("Content-Type", "application/x-protobuf");
        if let Some(tenant) = &self.config.tenant {
            request = request.header("X-Scope-OrgID", tenant);
        }
        if let Some(authorization) = &self.authorization {
            request = request.header("Authorization", authorization);
        }
        match request.send(body) {
            Ok(mut response) => {
                let status = response.status().as_u16();
                let message = response.body_mut().read_to_string().unwrap_or_default();
                match status {
                    200..=299 => Push::Sent,
                    429 | 500..=599 => Push::Retry(format!("{status} {}", message.trim())),
                    400 => Push::BadRequest(message.trim().to_owned()),
                    _ => Push::Refused(status, message.trim().to_owned()),
                }
            }
            Err(e) => Push::Retry(e.to_string()),
        }
    }
}

/// How many queued entries make a batch of `limit` bytes, and whether they reach it. Walks
/// only as far as one batch: the queue may hold far more, and ingest waits on its lock.
fn batch_len(queue: &VecDeque<LogEntry>, limit: usize) -> (usize, bool) {
    let mut bytes = 0;
    for (i, e) in queue.iter().enumerate() {
        bytes += e.size();
        if bytes >= limit {
            return (i + 1, true);
        }
    }
    (queue.len(), false)
}

/// Sleeps for `wait`, cut short by a shutdown: whether it slept the whole time.
fn sleep_unless_stopping(queue: &Queue, wait: Duration) -> bool {
    let deadline = Instant::now() + wait;
    let mut q = queue.entries.lock().expect("loki queue lock");
    while !queue.stopping.load(Ordering::SeqCst) {
        let Some(left) = deadline.checked_duration_since(Instant::now()) else {
            return true;
        };
        q = queue.wake.wait_timeout(q, left).expect("loki queue lock").0;
    }
    false
}
