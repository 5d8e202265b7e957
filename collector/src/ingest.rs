//! `POST /api/v1/ingest`: bearer token (401), body limit (413), snappy+prost decode (400 with
//! the reason), duplicate `(agent_id, sequence)` accepted and ignored, then metrics.
use std::{
    collections::{BTreeSet, HashMap},
    sync::{Arc, Mutex},
};

use axum::{
    body::{Body, Bytes},
    extract::State,
    http::{header, HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use metrics::counter;
use tracing::{debug, warn};
use vigil_wire::Batch;

use crate::AppState;

/// Batches far ahead of the contiguous floor are remembered up to this many per agent.
const WINDOW: usize = 65_536;
/// Decompressed size limit relative to the compressed body limit (snappy bombs).
const EXPANSION_LIMIT: usize = 8;

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

fn reject(status: StatusCode, result: &'static str, message: String) -> Response {
    counter!("vigil_ingest_batches_total", "result" => result).increment(1);
    warn!(%status, "ingest rejected: {message}");
    (status, message + "\n").into_response()
}

fn authorized(state: &AppState, headers: &HeaderMap) -> bool {
    let Some(token) = &state.config.token else {
        return true;
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    // Length-independent comparison: no early exit on the first differing byte.
    given.len() == token.len()
        && given
            .bytes()
            .zip(token.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

pub async fn ingest(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if state.draining.load(std::sync::atomic::Ordering::SeqCst) {
        return reject(
            StatusCode::SERVICE_UNAVAILABLE,
            "draining",
            "collector shutting down; retry".into(),
        );
    }
    if !authorized(&state, &headers) {
        return reject(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or wrong bearer token".into(),
        );
    }
    // Reads at most the limit: an oversized body is refused without buffering it.
    let limit = state.config.max_body_bytes;
    let body: Bytes = match axum::body::to_bytes(body, limit).await {
        Ok(b) => b,
        Err(_) => {
            return reject(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!("body over the {limit}-byte limit (max_body_bytes)"),
            )
        }
    };
    let batch = match Batch::decode_compressed(&body, state.config.max_body_bytes * EXPANSION_LIMIT)
    {
        Ok(b) => b,
        Err(e) => return reject(StatusCode::BAD_REQUEST, "undecodable", e.to_string()),
    };
    if batch.agent_id.is_empty() || batch.sequence == 0 {
        return reject(
            StatusCode::BAD_REQUEST,
            "undecodable",
            "batch without agent_id or sequence".into(),
        );
    }
    if !state.dedup.first_time(&batch.agent_id, batch.sequence) {
        counter!("vigil_ingest_batches_total", "result" => "duplicate").increment(1);
        debug!(agent = %batch.agent_id, seq = batch.sequence, "duplicate batch ignored");
        return (StatusCode::OK, "duplicate\n").into_response();
    }
    state.recorder.apply(&batch);
    counter!("vigil_ingest_batches_total", "result" => "accepted").increment(1);
    counter!("vigil_ingest_records_total").increment(batch.len() as u64);
    if let Some(loki) = &state.loki {
        loki.enqueue(crate::loki::entries_from_batch(batch));
    }
    (StatusCode::OK, "accepted\n").into_response()
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
