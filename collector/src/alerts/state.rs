//! The engine's state behind its lock: every node's evidence and the book of alerts; how
//! one node is evaluated, how silent nodes end their alerts, what is forgotten, and the
//! counting of what the bounds drop.
use std::{collections::HashMap, sync::atomic::Ordering};

use metrics::counter;
use tracing::warn;

use super::{
    evidence::{Dropped, NodeEvidence},
    lifecycle::{Book, Outgoing, Timing},
    model::Cause,
    rules,
    view::UpstreamView,
    wall_now_ms, wording,
};

/// A node silent this long (its agent sends a batch every sample, 5 s by default) has its
/// alerts resolved: nobody can tell whether the cause is still there.
pub const NODE_SILENT_MS: i64 = 5 * 60 * 1000;
/// Evidence of an upstream (node) not heard of for this long, without an active alert, is
/// forgotten.
const UPSTREAM_FORGET_MS: i64 = 15 * 60 * 1000;
const NODE_FORGET_MS: i64 = 60 * 60 * 1000;

#[derive(Default)]
pub struct EngineState {
    pub nodes: HashMap<String, NodeEvidence>,
    pub upstreams_total: usize,
    pub book: Book,
    /// Bumped on every change the state file should have.
    pub generation: u64,
    /// Our clock at the last save for counts and evidence (transitions save at once).
    pub saved_wall_ms: i64,
}

impl EngineState {
    /// One node's rules at its data time, then the lifecycle.
    pub fn evaluate(&mut self, name: &str, wall_ms: i64, t: &Timing) -> Vec<Outgoing> {
        let Some(node) = self.nodes.get(name) else {
            return Vec::new();
        };
        let mut findings = Vec::new();
        for (label, evidence) in &node.upstreams {
            let view = UpstreamView {
                node: name,
                upstream: label,
                now_ms: node.clock_ms,
                gap_ms: t.resolve_after_ms,
                evidence,
                node_evidence: node,
                saturated_active: self.book.is_active(name, label, Cause::UpstreamSaturated),
            };
            findings.extend(rules::diagnose(&view));
        }
        let before = self.book.dropped;
        let out = self.book.apply(name, &findings, node.clock_ms, wall_ms, t);
        if self.book.dropped > before {
            drop_inputs("alerts", self.book.dropped - before, name);
        }
        out
    }

    pub fn end_silent_nodes(&mut self, wall_ms: i64) -> Vec<Outgoing> {
        let mut out = Vec::new();
        for (name, node) in &self.nodes {
            if wall_ms - node.seen_wall_ms >= NODE_SILENT_MS && self.book.has_node(name) {
                let why = wording::evidence(
                    "agent",
                    format!(
                        "no data from the node's agent since {}: resolved without evidence",
                        wording::rfc3339(node.seen_wall_ms)
                    ),
                );
                out.extend(self.book.end_node(name, node.clock_ms, &why));
            }
        }
        out
    }

    pub fn forget(&mut self, wall_ms: i64) {
        let book = &self.book;
        let mut forgotten = 0;
        self.nodes.retain(|name, node| {
            let active = |upstream: &str| {
                book.active
                    .keys()
                    .any(|k| k.node == *name && k.upstream == upstream)
            };
            forgotten += node.prune(node.clock_ms - UPSTREAM_FORGET_MS, active);
            let keep = wall_ms - node.seen_wall_ms < NODE_FORGET_MS || book.has_node(name);
            if !keep {
                forgotten += node.upstreams.len();
            }
            keep
        });
        self.upstreams_total -= forgotten;
    }
}

pub fn drop_inputs(reason: &'static str, n: u64, node: &str) {
    use std::sync::atomic::AtomicI64;
    /// One warning a minute: a node over a bound drops on every batch.
    static WARNED_MS: AtomicI64 = AtomicI64::new(0);
    counter!("vigil_alert_inputs_dropped_total", "reason" => reason).increment(n);
    let now = wall_now_ms();
    let last = WARNED_MS.load(Ordering::Relaxed);
    if now - last >= 60_000
        && WARNED_MS
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    {
        warn!(reason, n, node, "alert engine at its bound: input not kept (counted in vigil_alert_inputs_dropped_total)");
    }
}

pub fn count_drops(d: Dropped, node: &str) {
    for (reason, n) in [
        ("upstreams", d.upstreams),
        ("routes", d.routes),
        ("workers", d.workers),
        ("labels", d.labels),
    ] {
        if n > 0 {
            drop_inputs(reason, n, node);
        }
    }
}
