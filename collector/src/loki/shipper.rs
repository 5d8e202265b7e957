//! Ships log entries to Loki from a thread of its own: batches by bytes and age, spooled
//! batches first. Nothing is lost to a transient error: 429, 5xx, 401/403 and connection
//! errors are retried with backoff, and a batch that keeps getting 429 is halved (it may be
//! over Loki's burst). A 400 never costs a batch: one caused by structured metadata folds it
//! into the line (and remembers this Loki refuses it), any other splits the batch until the
//! bad entry stands alone; that one is dropped, counted and logged. Loki's version
//! (buildinfo, at start and after Loki was away) decides whether structured metadata is sent
//! or folded: before Loki 3 it would be dropped silently.
//!
//! A spooled batch leaves the spool only once Loki has all of it (at-least-once: a crash
//! between Loki's answer and the removal sends it again). At shutdown what the shipper holds
//! from memory goes to the spool.
use std::{
    collections::VecDeque,
    sync::atomic::Ordering,
    time::{Duration, Instant},
};

use metrics::{counter, gauge};
use tracing::{debug, info, warn};
use vigil_wire::backoff::Backoff;

use super::{
    client::{keeps_structured_metadata, Buildinfo, LokiClient, Push, RetryCause},
    config::LokiConfig,
    encode::{decode_spooled, encode_push, LogEntry},
    queue::{batch_len, Queue},
};

/// A batch answered 429 this many times in a row is halved: a push over Loki's burst size
/// is refused however long it waits.
const HALVE_AFTER_429S: u32 = 2;

/// Entries on their way to Loki, with their push body once encoded: a retry or a spooled
/// batch (encoded with metadata when it was spilled) is sent as it is.
struct Outgoing {
    entries: Vec<LogEntry>,
    /// Encoded with structured metadata (`true`) or folded into the lines (`false`).
    body: Option<(bool, Vec<u8>)>,
    /// 429 answers in a row, kept by the halves: a half of a batch over the burst is halved
    /// again at its first 429.
    throttled: u32,
}

impl Outgoing {
    fn new(entries: Vec<LogEntry>) -> Self {
        Outgoing {
            entries,
            body: None,
            throttled: 0,
        }
    }

    fn body(&mut self, with_metadata: bool) -> &[u8] {
        if self.body.as_ref().is_none_or(|(m, _)| *m != with_metadata) {
            self.body = Some((with_metadata, encode_push(&self.entries, with_metadata)));
        }
        &self.body.as_ref().expect("just encoded").1
    }

    /// (older half, newer half).
    fn halves(self) -> (Outgoing, Outgoing) {
        let mut left = self.entries;
        let right = left.split_off(left.len() / 2);
        let half = |entries| Outgoing {
            throttled: self.throttled,
            ..Outgoing::new(entries)
        };
        (half(left), half(right))
    }
}

/// What the shipper sends next, and the spool batch it came from (removed once delivered).
struct Batch {
    outgoing: Outgoing,
    spooled: Option<String>,
}

pub(super) struct Shipper {
    config: LokiConfig,
    client: LokiClient,
    /// Whether pushes carry structured metadata; else it is folded into the lines.
    metadata_ok: bool,
    /// Ask Loki's version before the next push: at start, and after Loki was unreachable or
    /// failing (it may have been replaced by another version).
    check_version: bool,
    /// What the last version check found (a version, or why there was none).
    version_note: Option<String>,
    /// Why the pushes are failing, while they are; a change is logged.
    failing: Option<RetryCause>,
    backoff: Backoff,
}

impl Shipper {
    pub(super) fn new(config: LokiConfig) -> Self {
        Shipper {
            client: LokiClient::new(&config),
            metadata_ok: config.structured_metadata.unwrap_or(true),
            check_version: config.structured_metadata.is_none(),
            version_note: None,
            failing: None,
            backoff: Backoff::new(Duration::from_millis(200), Duration::from_secs(30)),
            config,
        }
    }

    pub(super) fn run(mut self, queue: &Queue) {
        while let Some(Batch { outgoing, spooled }) = self.next_batch(queue) {
            match (self.deliver(outgoing, queue), spooled) {
                (Ok(()), Some(id)) => {
                    let mut spool = queue.spool.lock().expect("loki spool lock");
                    spool.remove(&id);
                    gauge!("vigil_loki_spool_bytes").set(spool.bytes() as f64);
                }
                (Ok(()), None) => {}
                // Still on disk, whole: the next start sends it again.
                (Err(_), Some(_)) => {}
                (Err(pending), None) => {
                    for outgoing in pending.iter().rev() {
                        queue.spill(&outgoing.entries);
                    }
                }
            }
        }
    }

    /// Spilled entries first (they are older), then memory: waits for entries, then gathers
    /// up to `batch_bytes` or until the oldest is `batch_age` old.
    /// `None` once the sink is shutting down: what is left stays for the spool.
    fn next_batch(&self, queue: &Queue) -> Option<Batch> {
        loop {
            if queue.stopping.load(Ordering::SeqCst) {
                return None;
            }
            if let Some(batch) = Self::from_spool(queue) {
                return Some(batch);
            }
            let q = queue.entries.lock().expect("loki queue lock");
            if !q.is_empty() {
                return Some(Batch {
                    outgoing: Outgoing::new(self.gather(queue, q)),
                    spooled: None,
                });
            }
            // Woken by enqueue; the timeout also covers entries that went straight to the spool.
            let _ = queue
                .wake
                .wait_timeout(q, Duration::from_millis(500))
                .expect("loki queue lock");
        }
    }

    /// The oldest spooled batch, left in the spool until delivered. One that does not decode
    /// is set aside as corrupt and counted.
    fn from_spool(queue: &Queue) -> Option<Batch> {
        let mut spool = queue.spool.lock().expect("loki spool lock");
        let found = loop {
            let Some(spooled) = spool.front() else {
                break None;
            };
            // Decoded for the line counts and in case Loki wants it split or folded.
            match decode_spooled(&spooled.body) {
                Some(entries) => {
                    let outgoing = Outgoing {
                        body: Some((true, spooled.body)),
                        ..Outgoing::new(entries)
                    };
                    break Some(Batch {
                        outgoing,
                        spooled: Some(spooled.id),
                    });
                }
                None => {
                    warn!(file = %spooled.id, lines = spooled.records, "undecodable Loki spool batch; set aside");
                    spool.set_aside(&spooled.id);
                }
            }
        };
        counter!("vigil_loki_spool_corrupt_total").absolute(spool.corrupt.batches);
        gauge!("vigil_loki_spool_bytes").set(spool.bytes() as f64);
        found
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

    /// Sends until Loki has all of it, or what it refuses is dropped and counted. Interrupted
    /// by a shutdown, it returns what is still pending, oldest last.
    fn deliver(&mut self, batch: Outgoing, queue: &Queue) -> Result<(), Vec<Outgoing>> {
        let mut pending = vec![batch];
        while let Some(mut outgoing) = pending.pop() {
            self.check_version();
            let push = self.client.push(outgoing.body(self.metadata_ok));
            let lines = outgoing.entries.len();
            match push {
                Push::Sent => {
                    counter!("vigil_loki_lines_sent_total").increment(lines as u64);
                    if let Some(cause) = self.failing.take() {
                        info!(after = cause.label(), "Loki takes pushes again");
                    }
                    self.backoff.reset();
                }
                Push::Retry(cause, detail) => {
                    self.retry(cause, &detail, &mut outgoing);
                    if cause == RetryCause::RateLimited
                        && outgoing.throttled >= HALVE_AFTER_429S
                        && lines > 1
                    {
                        let bytes: usize = outgoing.entries.iter().map(LogEntry::size).sum();
                        warn!(lines, bytes, "Loki keeps answering 429 to this batch; halving it (if this repeats, lower [loki] batch_bytes below Loki's ingestion burst size)");
                        let (older, newer) = outgoing.halves();
                        pending.extend([newer, older]);
                    } else {
                        pending.push(outgoing);
                    }
                    if !sleep_unless_stopping(queue, self.backoff.next_wait()) {
                        return Err(pending);
                    }
                }
                Push::BadRequest(message)
                    if self.metadata_ok && message.contains("structured metadata") =>
                {
                    warn!("Loki refuses structured metadata; folding it into the log line from now on");
                    self.metadata_ok = false;
                    pending.push(outgoing);
                }
                Push::BadRequest(message) if lines > 1 => {
                    // Find the bad entry without losing the good ones.
                    warn!(%message, "Loki rejected a batch; splitting it to isolate the bad entry");
                    let (older, newer) = outgoing.halves();
                    pending.extend([newer, older]);
                }
                Push::BadRequest(message) => {
                    counter!("vigil_loki_lines_failed_total", "reason" => "rejected").increment(1);
                    warn!(%message, line = %outgoing.entries[0].line.chars().take(200).collect::<String>(), "Loki rejected a log line; dropped");
                }
                Push::Refused(status, message) => {
                    counter!("vigil_loki_lines_failed_total", "reason" => status.to_string())
                        .increment(lines as u64);
                    warn!(status, %message, lines, "Loki refused the batch (check the URL and tenant); dropped");
                }
            }
        }
        Ok(())
    }

    /// Counts a retry, logs when the cause changes, and notes what it implies.
    fn retry(&mut self, cause: RetryCause, detail: &str, outgoing: &mut Outgoing) {
        counter!("vigil_loki_lines_retried_total", "reason" => cause.label())
            .increment(outgoing.entries.len() as u64);
        if self.failing != Some(cause) {
            match cause {
                RetryCause::Auth => {
                    warn!(%detail, "Loki refuses our credentials; retrying with backoff, nothing dropped (check [loki] credentials and tenant)")
                }
                _ => {
                    warn!(reason = cause.label(), %detail, "Loki push failed; retrying with backoff")
                }
            }
            self.failing = Some(cause);
        }
        match cause {
            RetryCause::RateLimited => outgoing.throttled += 1,
            RetryCause::Connection | RetryCause::ServerError => {
                outgoing.throttled = 0;
                self.check_version |= self.config.structured_metadata.is_none();
            }
            RetryCause::Auth => outgoing.throttled = 0,
        }
    }

    /// Asks Loki's version when due: before Loki 3 structured metadata is folded into the
    /// line. Without an answer the current choice stays (a 400 still folds).
    fn check_version(&mut self) {
        if !self.check_version {
            return;
        }
        let current = if self.metadata_ok {
            "sent"
        } else {
            "folded into the line"
        };
        let answer = self.client.buildinfo();
        let (note, keeps) = match &answer {
            // The push will fail too, and the version is asked again before the next one.
            Buildinfo::Unreachable(detail) => {
                debug!(%detail, "Loki's buildinfo unreachable");
                return;
            }
            Buildinfo::Version(version) => (version.clone(), keeps_structured_metadata(version)),
            Buildinfo::Unknown(detail) => (detail.clone(), None),
        };
        self.check_version = false;
        // Logged when it changes: Loki failing with 5xx has it asked again at every retry.
        let changed = self.version_note.as_ref() != Some(&note);
        if let Some(keeps) = keeps {
            self.metadata_ok = keeps;
        }
        if !changed {
            return;
        }
        match (&answer, keeps) {
            (Buildinfo::Version(version), Some(true)) => {
                info!(%version, "Loki version checked: structured metadata sent")
            }
            (Buildinfo::Version(version), Some(false)) => {
                info!(%version, "Loki version checked: structured metadata folded into the line (this Loki would drop it silently)")
            }
            (Buildinfo::Version(version), None) => {
                warn!(%version, "unrecognised Loki version; structured metadata stays {current}")
            }
            (_, _) => {
                warn!(detail = %note, "cannot tell Loki's version from buildinfo; structured metadata stays {current} (a Loki before 3.0 drops it silently: set [loki] structured_metadata = false for one)")
            }
        }
        self.version_note = Some(note);
    }
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
