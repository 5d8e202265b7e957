//! `CrashReader`: reads an exited owner's stderr tail on a worker thread, once per exit, so
//! the agent's loop never waits on a disk. Results are collected on the slow path.
use std::{
    collections::HashMap,
    sync::mpsc::{channel, Receiver, Sender},
    thread,
    time::{Duration, Instant},
};

use serde::Serialize;
use tracing::{info, warn};

use super::{Limits, StderrPlan, StderrTail};

/// Reads running at once; an exit beyond that is not read (counted).
const MAX_IN_FLIGHT: usize = 4;
/// How long a change waits for a read before going out without it.
const READ_BUDGET: Duration = Duration::from_secs(2);

#[derive(Debug, Default, Clone, Serialize)]
pub struct CrashStats {
    pub reads: u64,
    pub reads_failed: u64,
    /// Exits not read because `MAX_IN_FLIGHT` reads were running.
    pub reads_skipped_busy: u64,
    pub lines_dropped: u64,
    pub lines_cut: u64,
    pub objects_skipped: u64,
}

pub struct CrashReader {
    limits: Limits,
    /// Time journald or containerd get after the exit to copy the last lines.
    settle: Duration,
    tx: Sender<(u32, Option<StderrTail>)>,
    rx: Receiver<(u32, Option<StderrTail>)>,
    /// pid → when its read is given up on.
    in_flight: HashMap<u32, Instant>,
    pub stats: CrashStats,
}

impl Default for CrashReader {
    fn default() -> Self {
        Self::new(Limits::default(), Duration::from_millis(300))
    }
}

impl CrashReader {
    pub fn new(limits: Limits, settle: Duration) -> Self {
        let (tx, rx) = channel();
        CrashReader {
            limits,
            settle,
            tx,
            rx,
            in_flight: HashMap::new(),
            stats: CrashStats::default(),
        }
    }

    /// Start reading `pid`'s tail (its plan is consumed: one read per exit).
    pub fn start(&mut self, pid: u32, plan: StderrPlan) {
        let now = Instant::now();
        self.in_flight.retain(|_, deadline| *deadline > now);
        if self.in_flight.len() >= MAX_IN_FLIGHT {
            self.stats.reads_skipped_busy += 1;
            warn!(pid, source = %plan.label(), "crash reason not read: {MAX_IN_FLIGHT} reads already running");
            return;
        }
        let settle = if plan.needs_settling() {
            self.settle
        } else {
            Duration::ZERO
        };
        let (tx, limits) = (self.tx.clone(), self.limits.clone());
        let spawned = thread::Builder::new()
            .name("vigil-crash-reason".into())
            .spawn(move || {
                thread::sleep(settle);
                let tail = plan
                    .read(&limits)
                    .inspect_err(|e| warn!(pid, "crash reason from {}: {e}", plan.label()))
                    .ok();
                // The receiver is gone only when the agent stops.
                let _ = tx.send((pid, tail));
            });
        match spawned {
            Ok(_) => {
                self.in_flight.insert(pid, now + settle + READ_BUDGET);
            }
            Err(e) => {
                self.stats.reads_failed += 1;
                warn!(pid, "crash reason not read: no thread: {e}");
            }
        }
    }

    /// Whether `pid`'s read runs and is still worth waiting for.
    pub fn pending(&self, pid: u32) -> bool {
        self.in_flight
            .get(&pid)
            .is_some_and(|deadline| *deadline > Instant::now())
    }

    /// Reads done since the last call (a failed read yields nothing).
    pub fn finished(&mut self) -> Vec<(u32, StderrTail)> {
        let mut done = Vec::new();
        while let Ok((pid, tail)) = self.rx.try_recv() {
            self.in_flight.remove(&pid);
            let Some(tail) = tail else {
                self.stats.reads_failed += 1;
                continue;
            };
            self.stats.reads += 1;
            self.stats.lines_dropped += u64::from(tail.lines_dropped);
            self.stats.lines_cut += u64::from(tail.lines_cut);
            self.stats.objects_skipped += u64::from(tail.objects_skipped);
            if tail.lines_cut > 0 || tail.objects_skipped > 0 {
                warn!(pid, source = %tail.source, cut = tail.lines_cut, skipped = tail.objects_skipped, "crash reason: bounds cut lines or skipped journal fields");
            }
            info!(pid, source = %tail.source, lines = tail.lines.len(), last = ?tail.lines.last(), "crash reason read");
            done.push((pid, tail));
        }
        done
    }
}
