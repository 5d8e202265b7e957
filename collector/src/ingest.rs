//! `POST /api/v1/ingest`: bearer token (401), body limit (413), snappy+prost decode (400 with
//! the reason), duplicate `(agent_id, sequence)` accepted and ignored (`dedup`), then metrics
//! and, when Loki is configured, its log lines to the Loki sink.
use std::sync::Arc;

use axum::{
    body::{Body, Bytes},
    extract::State,
    http::{header, HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use metrics::counter;
use tracing::{debug, warn};
use vigil_wire::Batch;

use crate::state::AppState;

/// Decompressed size limit relative to the compressed body limit (snappy bombs).
const EXPANSION_LIMIT: usize = 8;

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
    state.alerts.observe(&batch);
    counter!("vigil_ingest_batches_total", "result" => "accepted").increment(1);
    counter!("vigil_ingest_records_total").increment(batch.len() as u64);
    if let Some(loki) = &state.loki {
        loki.enqueue(crate::loki::entries_from_batch(batch));
    }
    (StatusCode::OK, "accepted\n").into_response()
}
