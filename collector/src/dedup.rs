//! Which agent batches were already applied: per agent, every `sequence` up to a contiguous
//! floor plus a bounded window of those seen above it, so a retried or re-routed batch is
//! counted once.
use std::{
    collections::{BTreeSet, HashMap},
    sync::Mutex,
};

/// Batches far ahead of the contiguous floor are remembered up to this many per agent.
const WINDOW: usize = 65_536;

#[derive(Default)]
struct SeenWindow {
    /// Every sequence ≤ floor was applied.
    floor: u64,
    above: BTreeSet<u64>,
}

/// Which `(agent_id, sequence)` pairs were applied.
#[derive(Default)]
pub struct Dedup {
    agents: Mutex<HashMap<String, SeenWindow>>,
}

impl Dedup {
    /// True the first time a pair is seen.
    pub fn first_time(&self, agent: &str, sequence: u64) -> bool {
        let mut agents = self.agents.lock().expect("dedup lock");
        let w = match agents.get_mut(agent) {
            Some(w) => w,
            None => agents.entry(agent.to_owned()).or_default(),
        };
        if sequence <= w.floor || !w.above.insert(sequence) {
            return false;
        }
        while w.above.remove(&(w.floor + 1)) {
            w.floor += 1;
        }
        if w.above.len() > WINDOW {
            // A gap that never fills (a batch the agent dropped): move past it.
            let lowest = w.above.pop_first().expect("non-empty");
            w.floor = lowest;
        }
        true
    }

    pub fn agents(&self) -> usize {
        self.agents.lock().expect("dedup lock").len()
    }
}

#[cfg(test)]
mod tests {
    use super::Dedup;

    #[test]
    fn duplicates_and_out_of_order_batches() {
        let d = Dedup::default();
        assert!(d.first_time("a", 1));
        assert!(!d.first_time("a", 1));
        assert!(d.first_time("a", 3));
        assert!(d.first_time("a", 2));
        assert!(!d.first_time("a", 3));
        assert!(!d.first_time("a", 2));
        assert!(d.first_time("b", 1), "per agent");
        assert_eq!(d.agents(), 2);
    }
}
