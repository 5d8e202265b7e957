//! `GET /`: a status page for people without Grafana — the agents seen (last batch, missing
//! capabilities, lost events), each node's upstreams, and the active and recent alerts with
//! their evidence. `StatusBoard` keeps the latest of each node's batches; `page` renders it.
mod page;

use std::{collections::HashMap, sync::Mutex};

use metrics::counter;
use tracing::warn;
use vigil_wire::{AgentHealth, Batch, UpstreamStatus};

pub use page::{escape, page, render};

/// Nodes kept; beyond it the one heard from longest ago is dropped (and counted).
pub const MAX_NODES: usize = 10_000;
/// Upstreams kept per node; the rest of a batch's list is dropped (and counted).
pub const MAX_UPSTREAMS_PER_NODE: usize = 256;

/// What the page shows of one node: from its latest batch.
#[derive(Debug, Clone, Default)]
pub struct NodeStatus {
    /// The latest batch's `created_unix_ms`.
    pub last_batch_ms: i64,
    /// When the collector accepted it (Unix ms): ordering for eviction, and a fallback when
    /// the agent's clock is off.
    pub arrived_ms: i64,
    pub health: Option<AgentHealth>,
    /// The latest non-empty list: upstreams travel with samples, not with every batch.
    pub upstreams: Vec<UpstreamStatus>,
}

#[derive(Debug)]
pub struct StatusBoard {
    nodes: Mutex<HashMap<String, NodeStatus>>,
    max_nodes: usize,
}

impl Default for StatusBoard {
    fn default() -> Self {
        StatusBoard::new(MAX_NODES)
    }
}

impl StatusBoard {
    pub fn new(max_nodes: usize) -> StatusBoard {
        StatusBoard {
            nodes: Mutex::new(HashMap::new()),
            max_nodes: max_nodes.max(1),
        }
    }

    /// Records an accepted batch.
    pub fn observe(&self, batch: &Batch) {
        self.observe_at(batch, crate::alerts::wall_now_ms());
    }

    pub fn observe_at(&self, batch: &Batch, wall_ms: i64) {
        let mut nodes = self.nodes.lock().unwrap_or_else(|e| e.into_inner());
        if !nodes.contains_key(&batch.node) && nodes.len() >= self.max_nodes {
            evict_oldest(&mut nodes);
        }
        let node = nodes.entry(batch.node.clone()).or_default();
        node.last_batch_ms = node.last_batch_ms.max(batch.created_unix_ms);
        node.arrived_ms = wall_ms;
        if let Some(health) = &batch.health {
            node.health = Some(health.clone());
        }
        if !batch.upstreams.is_empty() {
            let keep = batch.upstreams.len().min(MAX_UPSTREAMS_PER_NODE);
            if keep < batch.upstreams.len() {
                let dropped = batch.upstreams.len() - keep;
                counter!("vigil_status_upstreams_dropped_total").increment(dropped as u64);
                warn!(node = %batch.node, dropped, "status page keeps {MAX_UPSTREAMS_PER_NODE} upstreams per node");
            }
            node.upstreams = batch.upstreams[..keep].to_vec();
        }
    }

    /// Every node, sorted by name.
    pub fn nodes(&self) -> Vec<(String, NodeStatus)> {
        let nodes = self.nodes.lock().unwrap_or_else(|e| e.into_inner());
        let mut list: Vec<_> = nodes.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        list.sort_by(|a, b| a.0.cmp(&b.0));
        list
    }
}

fn evict_oldest(nodes: &mut HashMap<String, NodeStatus>) {
    let oldest = nodes
        .iter()
        .min_by_key(|(_, n)| n.arrived_ms)
        .map(|(name, _)| name.clone());
    if let Some(name) = oldest {
        nodes.remove(&name);
        counter!("vigil_status_nodes_dropped_total").increment(1);
        warn!(node = %name, "status page forgets the node heard from longest ago (at its node limit, max_nodes)");
    }
}

#[cfg(test)]
mod tests;
