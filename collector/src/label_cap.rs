//! Bounds on label values, so no agent — a busy one or a hostile one — can grow the series
//! set without limit:
//! - every value is cut to `MAX_VALUE_BYTES` (at a character boundary);
//! - nodes are capped fleet-wide (`max_nodes`); past it new nodes report as `other`;
//! - each (family, label) has a budget of distinct values *per node*, so one node's 500
//!   processes never push another node's into `other`;
//! - a value not used for `idle` is forgotten (its series expired from /metrics too), so the
//!   budget serves the values that exist now, not every value ever seen.
//!
//! Whatever a bound replaces with `other` is counted in `vigil_label_values_capped_total`.
use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use metrics::counter;

/// Longest label value kept, in bytes.
pub const MAX_VALUE_BYTES: usize = 128;
/// How often the forgetting pass runs at most.
const PRUNE_EVERY: Duration = Duration::from_secs(30);
/// What a value past a bound becomes.
pub const OTHER: &str = "other";

type Budget = HashMap<String, Instant>;

pub struct LabelCap {
    per_node: usize,
    max_nodes: usize,
    idle: Duration,
    state: Mutex<CapState>,
}

struct CapState {
    nodes: Budget,
    /// (family, label, node) → values with when they were last used.
    values: HashMap<(&'static str, &'static str, String), Budget>,
    pruned: Instant,
}

/// `value` cut to [`MAX_VALUE_BYTES`] at a character boundary.
pub fn bounded(value: &str) -> &str {
    if value.len() <= MAX_VALUE_BYTES {
        return value;
    }
    let mut end = MAX_VALUE_BYTES;
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    &value[..end]
}

/// Admits `value` into `budget` (refreshing its time) unless the budget is full.
fn admit(budget: &mut Budget, value: &str, limit: usize, now: Instant) -> bool {
    if let Some(seen) = budget.get_mut(value) {
        *seen = now;
        return true;
    }
    if budget.len() >= limit {
        return false;
    }
    budget.insert(value.to_owned(), now);
    true
}

impl LabelCap {
    /// `per_node` distinct values per (family, label, node); `max_nodes` nodes in all; values
    /// unused for `idle` are forgotten.
    pub fn new(per_node: usize, max_nodes: usize, idle: Duration) -> Self {
        LabelCap {
            per_node,
            max_nodes,
            idle,
            state: Mutex::new(CapState {
                nodes: HashMap::new(),
                values: HashMap::new(),
                pruned: Instant::now(),
            }),
        }
    }

    /// The `node` label for a batch's node name.
    pub fn node(&self, node: &str) -> String {
        let node = bounded(node);
        let now = Instant::now();
        let mut s = self.state.lock().expect("label cap lock");
        self.prune(&mut s, now);
        if admit(&mut s.nodes, node, self.max_nodes, now) {
            return node.to_owned();
        }
        counter!("vigil_label_values_capped_total", "family" => "node").increment(1);
        OTHER.to_owned()
    }

    /// The value to use for `label` of `family` on `node` (already a capped node label).
    pub fn value(
        &self,
        family: &'static str,
        label: &'static str,
        node: &str,
        value: &str,
    ) -> String {
        let value = bounded(value);
        let now = Instant::now();
        let mut s = self.state.lock().expect("label cap lock");
        let budget = match s.values.get_mut(&(family, label, node.to_owned())) {
            Some(b) => b,
            None => s
                .values
                .entry((family, label, node.to_owned()))
                .or_default(),
        };
        if admit(budget, value, self.per_node, now) {
            return value.to_owned();
        }
        counter!("vigil_label_values_capped_total", "family" => family).increment(1);
        OTHER.to_owned()
    }

    /// Forgets values (and nodes) unused for `idle`; at most every [`PRUNE_EVERY`].
    fn prune(&self, s: &mut CapState, now: Instant) {
        if now.duration_since(s.pruned) < PRUNE_EVERY.min(self.idle) {
            return;
        }
        s.pruned = now;
        let fresh = |seen: &Instant| now.duration_since(*seen) < self.idle;
        s.nodes.retain(|_, seen| fresh(seen));
        for budget in s.values.values_mut() {
            budget.retain(|_, seen| fresh(seen));
        }
        s.values.retain(|_, budget| !budget.is_empty());
    }

    /// Distinct values held, all budgets together (for tests and self-metrics).
    pub fn held(&self) -> usize {
        let s = self.state.lock().expect("label cap lock");
        s.nodes.len() + s.values.values().map(HashMap::len).sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets_are_per_node_and_label() {
        let cap = LabelCap::new(2, 10, Duration::from_secs(3600));
        assert_eq!(cap.value("f", "l", "n1", "a"), "a");
        assert_eq!(cap.value("f", "l", "n1", "b"), "b");
        assert_eq!(cap.value("f", "l", "n1", "c"), OTHER);
        assert_eq!(cap.value("f", "l", "n1", "a"), "a", "known values stay");
        assert_eq!(
            cap.value("f", "l", "n2", "c"),
            "c",
            "another node has its own budget"
        );
        assert_eq!(
            cap.value("g", "l", "n1", "c"),
            "c",
            "budgets are per family"
        );
    }

    #[test]
    fn nodes_are_capped_and_values_cut() {
        let cap = LabelCap::new(5, 2, Duration::from_secs(3600));
        assert_eq!(cap.node("n1"), "n1");
        assert_eq!(cap.node("n2"), "n2");
        assert_eq!(cap.node("n3"), OTHER);
        let long = "é".repeat(100);
        let cut = cap.value("f", "l", "n1", &long);
        assert!(
            cut.len() <= MAX_VALUE_BYTES && long.starts_with(&cut),
            "{}",
            cut.len()
        );
    }

    #[test]
    fn idle_values_are_forgotten_and_free_their_place() {
        let cap = LabelCap::new(1, 10, Duration::from_millis(50));
        let n = cap.node("n1");
        assert_eq!(cap.value("f", "pid", &n, "100"), "100");
        assert_eq!(cap.value("f", "pid", &n, "101"), OTHER);
        std::thread::sleep(Duration::from_millis(80));
        // The prune runs on the next node lookup: the old pid's series expired meanwhile.
        let n = cap.node("n1");
        assert_eq!(cap.value("f", "pid", &n, "101"), "101");
        assert_eq!(cap.held(), 2);
    }
}
