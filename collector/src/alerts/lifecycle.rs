//! An alert's life, per (node, upstream, cause), in the node's data time:
//!
//! - a finding opens it `pending` (first seen = the episode's first failure);
//! - it fires once its failures have lasted `for`: the latest failing request at least
//!   `for` after the first (a restart that serves again sooner, or traffic that stops
//!   sooner, never fires; a pending alert whose finding goes away is dropped silently);
//! - it resolves once its cause has had no failure for `resolve_after` (hysteresis: failures
//!   closer together than that are one incident, so a restart does not flap it);
//! - while firing, notifiers get it again every `repeat_interval` (our clock).
//!
//! Resolved alerts stay listed (the most recent `MAX_RESOLVED`) for `GET /api/v1/alerts`.
use std::collections::{BTreeMap, BTreeSet, VecDeque};

use serde::{Deserialize, Serialize};

use super::{
    model::{Alert, AlertKey, AlertState, Cause, Evidence},
    rules::Finding,
};

/// Resolved alerts kept for listing.
pub const MAX_RESOLVED: usize = 200;
/// Alerts pending or firing at once; past it new ones are dropped (counted).
pub const MAX_ACTIVE: usize = 10_000;

#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub for_ms: i64,
    pub resolve_after_ms: i64,
    /// 0: never repeat.
    pub repeat_ms: i64,
}

/// An active alert and what the engine needs besides it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tracked {
    pub alert: Alert,
    /// Failed requests counted before a collector restart (the evidence starts empty).
    pub base_counts: BTreeMap<String, u64>,
    /// Our clock when the notifiers last got it.
    pub notified_wall_ms: i64,
}

/// What goes out: Loki and the gauge take fired and resolved, notifiers all three.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice {
    Fired,
    Repeat,
    Resolved,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Outgoing {
    pub notice: Notice,
    pub alert: Alert,
}

#[derive(Debug, Default)]
pub struct Book {
    pub active: BTreeMap<AlertKey, Tracked>,
    /// Newest first.
    pub resolved: VecDeque<Alert>,
    /// Alerts not opened because `MAX_ACTIVE` were.
    pub dropped: u64,
}

impl Tracked {
    fn open(key: AlertKey, f: &Finding) -> Tracked {
        Tracked {
            alert: Alert {
                status: key.cause.status(),
                key,
                state: AlertState::Pending,
                server_names: Vec::new(),
                locations: Vec::new(),
                failed_requests: BTreeMap::new(),
                first_seen_ms: f.episode.first_ms,
                last_seen_ms: f.episode.last_ms,
                fired_at_ms: None,
                resolved_at_ms: None,
                summary: String::new(),
                evidence: Vec::new(),
                next_step: String::new(),
            },
            base_counts: BTreeMap::new(),
            notified_wall_ms: 0,
        }
    }

    /// The latest finding's facts; counts add to what came before a restart.
    fn update(&mut self, f: &Finding) {
        let a = &mut self.alert;
        // The texts say what decided the cause while it failed: once failures stop, later
        // evidence (the listener back, say) does not rewrite them.
        let newer = a.state == AlertState::Pending || f.episode.last_ms > a.last_seen_ms;
        a.first_seen_ms = a.first_seen_ms.min(f.episode.first_ms);
        a.last_seen_ms = a.last_seen_ms.max(f.episode.last_ms);
        if let Some((status, _)) = f.episode.by_status.iter().max_by_key(|(_, n)| **n) {
            a.status = *status;
        }
        a.failed_requests = self.base_counts.clone();
        for (status, n) in &f.episode.by_status {
            *a.failed_requests.entry(status.to_string()).or_default() += n;
        }
        if newer {
            a.server_names = f.server_names.clone();
            a.locations = f.locations.clone();
            a.summary = f.verdict.summary.clone();
            a.evidence = f.verdict.evidence.clone();
            a.next_step = f.verdict.next_step.clone();
        }
    }
}

impl Book {
    /// Applies one node's findings at its data time `now_ms`; what changed state.
    pub fn apply(
        &mut self,
        node: &str,
        findings: &[Finding],
        now_ms: i64,
        wall_ms: i64,
        t: &Timing,
    ) -> Vec<Outgoing> {
        let mut out = Vec::new();
        let mut found = BTreeSet::new();
        for f in findings {
            let key = AlertKey {
                node: node.to_owned(),
                upstream: f.upstream.clone(),
                cause: f.cause,
            };
            found.insert(key.clone());
            if !self.active.contains_key(&key) {
                if self.active.len() >= MAX_ACTIVE {
                    self.dropped += 1;
                    continue;
                }
                self.active
                    .insert(key.clone(), Tracked::open(key.clone(), f));
            }
            let tracked = self.active.get_mut(&key).expect("inserted above");
            tracked.update(f);
            let a = &mut tracked.alert;
            if a.state == AlertState::Pending && a.last_seen_ms - a.first_seen_ms >= t.for_ms {
                a.state = AlertState::Firing;
                a.fired_at_ms = Some(now_ms);
                tracked.notified_wall_ms = wall_ms;
                out.push(Outgoing {
                    notice: Notice::Fired,
                    alert: a.clone(),
                });
            }
        }
        let quiet: Vec<AlertKey> = self
            .active
            .iter()
            .filter(|(k, _)| k.node == node && !found.contains(*k))
            .map(|(k, _)| k.clone())
            .collect();
        for key in quiet {
            let tracked = &self.active[&key];
            match tracked.alert.state {
                AlertState::Pending => {
                    self.active.remove(&key);
                }
                _ if now_ms - tracked.alert.last_seen_ms >= t.resolve_after_ms => {
                    out.extend(self.resolve(&key, now_ms, None));
                }
                _ => {}
            }
        }
        out
    }

    /// Firing alerts due for another notification.
    pub fn repeats(&mut self, wall_ms: i64, t: &Timing) -> Vec<Outgoing> {
        if t.repeat_ms <= 0 {
            return Vec::new();
        }
        let mut out = Vec::new();
        for tracked in self.active.values_mut() {
            if tracked.alert.state == AlertState::Firing
                && wall_ms - tracked.notified_wall_ms >= t.repeat_ms
            {
                tracked.notified_wall_ms = wall_ms;
                out.push(Outgoing {
                    notice: Notice::Repeat,
                    alert: tracked.alert.clone(),
                });
            }
        }
        out
    }

    /// Ends every alert of a node whose agent went silent: pending ones are dropped,
    /// firing ones resolve with `why` added to their evidence.
    pub fn end_node(&mut self, node: &str, now_ms: i64, why: &Evidence) -> Vec<Outgoing> {
        let keys: Vec<AlertKey> = self
            .active
            .keys()
            .filter(|k| k.node == node)
            .cloned()
            .collect();
        let mut out = Vec::new();
        for key in keys {
            if self.active[&key].alert.state == AlertState::Pending {
                self.active.remove(&key);
            } else {
                out.extend(self.resolve(&key, now_ms, Some(why.clone())));
            }
        }
        out
    }

    fn resolve(&mut self, key: &AlertKey, now_ms: i64, why: Option<Evidence>) -> Option<Outgoing> {
        let mut alert = self.active.remove(key)?.alert;
        alert.state = AlertState::Resolved;
        alert.resolved_at_ms = Some(now_ms);
        alert.evidence.extend(why);
        self.resolved.push_front(alert.clone());
        self.resolved.truncate(MAX_RESOLVED);
        Some(Outgoing {
            notice: Notice::Resolved,
            alert,
        })
    }

    pub fn is_active(&self, node: &str, upstream: &str, cause: Cause) -> bool {
        self.active.contains_key(&AlertKey {
            node: node.to_owned(),
            upstream: upstream.to_owned(),
            cause,
        })
    }

    pub fn has_node(&self, node: &str) -> bool {
        self.active.keys().any(|k| k.node == node)
    }

    /// Firing first, then pending, then the resolved ones, newest first.
    pub fn list(&self) -> Vec<Alert> {
        let by_state = |state| {
            self.active
                .values()
                .filter(move |t| t.alert.state == state)
                .map(|t| t.alert.clone())
        };
        by_state(AlertState::Firing)
            .chain(by_state(AlertState::Pending))
            .chain(self.resolved.iter().cloned())
            .collect()
    }

    pub fn firing(&self) -> impl Iterator<Item = &Alert> {
        self.active
            .values()
            .map(|t| &t.alert)
            .filter(|a| a.state == AlertState::Firing)
    }

    /// What the state file keeps.
    pub fn saved(&self) -> Saved {
        Saved {
            version: Saved::VERSION,
            active: self.active.values().cloned().collect(),
            resolved: self.resolved.iter().cloned().collect(),
        }
    }

    /// Back from the state file: counts so far become the base that new evidence adds to.
    pub fn restore(saved: Saved) -> Book {
        let mut book = Book::default();
        for mut t in saved.active.into_iter().take(MAX_ACTIVE) {
            t.base_counts = t.alert.failed_requests.clone();
            book.active.insert(t.alert.key.clone(), t);
        }
        book.resolved = saved.resolved.into_iter().take(MAX_RESOLVED).collect();
        book
    }
}

/// The state file's content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Saved {
    pub version: u32,
    pub active: Vec<Tracked>,
    pub resolved: Vec<Alert>,
}

impl Saved {
    pub const VERSION: u32 = 1;
}

#[cfg(test)]
mod tests;
