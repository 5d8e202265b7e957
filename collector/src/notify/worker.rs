//! One thread per notifier: a bounded queue of alert transitions (drop-oldest, counted) that
//! the caller never waits on, a short grouping window, and delivery with retries and backoff.
//! `vigil_notifications_total{notifier,result}` counts deliveries: sent, retried (an attempt
//! failed and another follows), failed (given up).
use std::{
    collections::VecDeque,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Condvar, Mutex, MutexGuard,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use metrics::counter;
use tracing::{debug, info, warn};
use vigil_wire::backoff::Backoff;

use crate::alerts::model::Alert;

use super::config::RetryPolicy;

#[derive(Debug)]
pub enum SendError {
    /// Worth another try: connection failed, timeout, 429, 5xx, SMTP 4xx.
    Transient(String),
    /// The receiver refuses this notification: retrying would not help.
    Permanent(String),
}

pub trait Notifier: Send + 'static {
    /// The `notifier` label: email, alertmanager, webhook.
    fn kind(&self) -> &'static str;
    /// Where it delivers, for logs (no credentials).
    fn target(&self) -> &str;
    /// One drained batch as deliveries: one per node unless the notifier says otherwise.
    fn split(&self, alerts: Vec<Alert>) -> Vec<Vec<Alert>> {
        by_node(alerts)
    }
    /// Delivers one group. Called again with the same group on a retry; with an empty group
    /// when `resend_due` has come.
    fn send(&mut self, alerts: &[Alert]) -> Result<(), SendError>;
    /// When `send(&[])` should run again (Alertmanager's re-send while firing).
    fn resend_due(&self) -> Option<Instant> {
        None
    }
}

/// Groups by node, nodes in order of their first alert, alerts in arrival order.
pub fn by_node(alerts: Vec<Alert>) -> Vec<Vec<Alert>> {
    let mut groups: Vec<Vec<Alert>> = Vec::new();
    for a in alerts {
        match groups.iter_mut().find(|g| g[0].key.node == a.key.node) {
            Some(group) => group.push(a),
            None => groups.push(vec![a]),
        }
    }
    groups
}

pub struct Queue {
    pub kind: &'static str,
    capacity: usize,
    alerts: Mutex<VecDeque<Alert>>,
    wake: Condvar,
    stopping: AtomicBool,
    /// Set at the first drop, cleared when the worker takes a batch: one warning per overflow.
    overflowing: AtomicBool,
}

impl Queue {
    fn lock(&self) -> MutexGuard<'_, VecDeque<Alert>> {
        self.alerts.lock().expect("notify queue lock")
    }

    fn new(kind: &'static str, capacity: usize) -> Queue {
        Queue {
            kind,
            capacity,
            alerts: Mutex::new(VecDeque::new()),
            wake: Condvar::new(),
            stopping: AtomicBool::new(false),
            overflowing: AtomicBool::new(false),
        }
    }

    /// Never waits for the worker. A newer transition of a queued alert takes its place (its
    /// latest state is what receivers need); a full queue loses its oldest alert (counted).
    pub fn push(&self, alert: Alert) {
        let mut q = self.lock();
        if let Some(queued) = q.iter_mut().find(|queued| queued.key == alert.key) {
            *queued = alert;
            return;
        }
        if q.len() >= self.capacity {
            if let Some(old) = q.pop_front() {
                counter!("vigil_notifications_dropped_total", "notifier" => self.kind).increment(1);
                if self.overflowing.swap(true, Ordering::Relaxed) {
                    debug!(notifier = self.kind, alert = ?old.key, state = ?old.state, "oldest transition dropped");
                } else {
                    warn!(notifier = self.kind, capacity = self.capacity, alert = ?old.key, state = ?old.state, "notification queue full (receiver slow or away); dropping the oldest transitions");
                }
            }
        }
        q.push_back(alert);
        drop(q);
        self.wake.notify_one();
    }

    fn stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// Sleeps `wait`, cut short by a stop: whether it slept the whole time.
    fn sleep(&self, wait: Duration) -> bool {
        let deadline = Instant::now() + wait;
        let mut q = self.lock();
        while !self.stopping() {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                return true;
            };
            q = self
                .wake
                .wait_timeout(q, left)
                .expect("notify queue lock")
                .0;
        }
        false
    }

    /// The next batch: transitions (after the grouping window), an empty one when a re-send
    /// is due, `None` on stop.
    fn next(&self, resend_due: Option<Instant>, group_wait: Duration) -> Option<Vec<Alert>> {
        let mut q = self.lock();
        while q.is_empty() {
            if self.stopping() {
                return None;
            }
            q = match resend_due.map(|due| due.checked_duration_since(Instant::now())) {
                Some(None) => return Some(Vec::new()),
                Some(Some(left)) => {
                    self.wake
                        .wait_timeout(q, left)
                        .expect("notify queue lock")
                        .0
                }
                None => self.wake.wait(q).expect("notify queue lock"),
            };
        }
        // Transitions of the next moments join this one (one mail for a node's burst).
        let deadline = Instant::now() + group_wait;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            if self.stopping() {
                break;
            }
            q = self
                .wake
                .wait_timeout(q, left)
                .expect("notify queue lock")
                .0;
        }
        self.overflowing.store(false, Ordering::Relaxed);
        Some(q.drain(..).collect())
    }
}

pub struct Worker {
    pub queue: Arc<Queue>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

#[derive(Clone)]
pub struct WorkerSettings {
    pub queue_len: usize,
    pub group_wait: Duration,
    pub retry: RetryPolicy,
}

impl Worker {
    pub fn spawn(notifier: impl Notifier, settings: WorkerSettings) -> std::io::Result<Worker> {
        let queue = Arc::new(Queue::new(notifier.kind(), settings.queue_len));
        let thread = std::thread::Builder::new()
            .name(format!("notify-{}", notifier.kind()))
            .spawn({
                let queue = queue.clone();
                move || run(notifier, &queue, &settings)
            })?;
        Ok(Worker {
            queue,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Asks the thread to stop: it gives up retrying, tries what is queued once each.
    pub fn stop(&self) {
        self.queue.stopping.store(true, Ordering::SeqCst);
        self.queue.wake.notify_all();
    }

    pub fn join(&self) {
        let thread = self.thread.lock().expect("notifier thread lock").take();
        if let Some(thread) = thread {
            if thread.join().is_err() {
                warn!(notifier = self.queue.kind, "notifier thread panicked");
            }
        }
    }
}

fn run(mut notifier: impl Notifier, queue: &Queue, settings: &WorkerSettings) {
    while let Some(batch) = queue.next(notifier.resend_due(), settings.group_wait) {
        let groups = if batch.is_empty() {
            vec![Vec::new()]
        } else {
            notifier.split(batch)
        };
        for group in groups {
            deliver(&mut notifier, &group, queue, &settings.retry);
        }
    }
    // Stopping: what is still queued (a RESOLVED that came in last) gets one try.
    // Once one fails the receiver is taken as away: the rest are counted, not tried, so a
    // stop never waits one timeout per group.
    let left: Vec<Alert> = queue.lock().drain(..).collect();
    if left.is_empty() {
        return;
    }
    let once = RetryPolicy {
        attempts: 1,
        ..settings.retry.clone()
    };
    let mut reachable = true;
    for group in notifier.split(left) {
        if reachable {
            reachable = deliver(&mut notifier, &group, queue, &once);
        } else {
            counter!("vigil_notifications_total", "notifier" => notifier.kind(), "result" => "failed").increment(1);
        }
    }
}

/// Sends with retries; whether it was delivered.
fn deliver(
    notifier: &mut impl Notifier,
    alerts: &[Alert],
    queue: &Queue,
    retry: &RetryPolicy,
) -> bool {
    let kind = notifier.kind();
    let count = |result: &'static str| {
        counter!("vigil_notifications_total", "notifier" => kind, "result" => result).increment(1);
    };
    let mut backoff = Backoff::new(retry.first_wait, retry.max_wait);
    for attempt in 1..=retry.attempts {
        let reason = match notifier.send(alerts) {
            Ok(()) => {
                count("sent");
                if attempt > 1 {
                    info!(
                        notifier = kind,
                        target = notifier.target(),
                        attempt,
                        "notification delivered after retries"
                    );
                }
                return true;
            }
            Err(SendError::Permanent(reason)) => {
                count("failed");
                warn!(notifier = kind, target = notifier.target(), %reason, alerts = alerts.len(), "notification refused; dropped");
                return false;
            }
            Err(SendError::Transient(reason)) => reason,
        };
        if attempt == retry.attempts {
            count("failed");
            warn!(notifier = kind, target = notifier.target(), %reason, attempts = attempt, alerts = alerts.len(), "notification failed; giving up");
            return false;
        }
        count("retried");
        if attempt == 1 {
            warn!(notifier = kind, target = notifier.target(), %reason, "notification failed; retrying with backoff");
        } else {
            debug!(notifier = kind, %reason, attempt, "notification retry failed");
        }
        if !queue.sleep(backoff.next_wait()) {
            count("failed");
            warn!(
                notifier = kind,
                target = notifier.target(),
                alerts = alerts.len(),
                "stopping; undelivered notification dropped"
            );
            return false;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::model::{AlertKey, AlertState, Cause};

    fn alert(node: &str, upstream: &str, state: AlertState) -> Alert {
        Alert {
            key: AlertKey {
                node: node.into(),
                upstream: upstream.into(),
                cause: Cause::UpstreamDown,
            },
            state,
            status: 502,
            server_names: vec![],
            locations: vec![],
            failed_requests: Default::default(),
            first_seen_ms: 0,
            last_seen_ms: 0,
            fired_at_ms: None,
            resolved_at_ms: None,
            summary: String::new(),
            evidence: vec![],
            next_step: String::new(),
        }
    }

    fn upstreams(alerts: &[Alert]) -> Vec<(&str, AlertState)> {
        alerts
            .iter()
            .map(|a| (a.key.upstream.as_str(), a.state))
            .collect()
    }

    #[test]
    fn a_newer_transition_replaces_the_queued_one_and_a_full_queue_drops_the_oldest() {
        let queue = Queue::new("test", 2);
        queue.push(alert("n", "a", AlertState::Firing));
        queue.push(alert("n", "b", AlertState::Firing));
        queue.push(alert("n", "a", AlertState::Resolved));
        let batch = queue.next(None, Duration::ZERO).unwrap();
        assert_eq!(
            upstreams(&batch),
            [("a", AlertState::Resolved), ("b", AlertState::Firing)]
        );
        for upstream in ["a", "b", "c"] {
            queue.push(alert("n", upstream, AlertState::Firing));
        }
        let batch = queue.next(None, Duration::ZERO).unwrap();
        assert_eq!(
            upstreams(&batch),
            [("b", AlertState::Firing), ("c", AlertState::Firing)]
        );
    }

    #[test]
    fn next_reports_a_due_resend_and_a_stop() {
        let queue = Queue::new("test", 2);
        let past = Instant::now();
        assert_eq!(
            queue.next(Some(past), Duration::ZERO).map(|b| b.len()),
            Some(0)
        );
        queue.stopping.store(true, Ordering::SeqCst);
        assert!(queue.next(None, Duration::ZERO).is_none());
        assert!(
            !queue.sleep(Duration::from_secs(60)),
            "a stop cuts a backoff sleep short"
        );
    }

    #[test]
    fn groups_by_node_in_arrival_order() {
        let groups = by_node(vec![
            alert("n1", "a", AlertState::Firing),
            alert("n2", "b", AlertState::Firing),
            alert("n1", "c", AlertState::Resolved),
        ]);
        let nodes: Vec<Vec<&str>> = groups
            .iter()
            .map(|g| g.iter().map(|a| a.key.upstream.as_str()).collect())
            .collect();
        assert_eq!(nodes, [vec!["a", "c"], vec!["b"]]);
    }
}
