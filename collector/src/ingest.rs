//! `POST /api/v1/ingest`, checked in order of cost: draining (503), bearer token (401), a
//! free ingest slot (503 `busy`, Retry-After), the body within `max_body_bytes` (413) and
//! `ingest_timeout` (408), the decode within the decode limits on a blocking thread (413
//! past the decoded size or record count, 400 with the reason when malformed), duplicate
//! `(agent_id, sequence)` accepted and ignored (`dedup`), the batch appended to the
//! write-ahead log (on disk before the 200; 503 `wal_full` at its bound), then metrics,
//! alerts and, when Loki is configured, its log lines to the Loki sink. Every refusal is counted in
//! `vigil_ingest_batches_total{result}` and logged.
use std::sync::Arc;

use axum::{
    body::{Body, Bytes},
    extract::State,
    http::{header, HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use metrics::{counter, gauge};
use tracing::{debug, warn};
use vigil_wire::{Batch, WireError};

use crate::{
    dedup::valid_agent_id,
    durable::with_ticket,
    state::AppState,
    wal::{WalError, WalRecord},
};

/// Seconds a `busy` agent is told to wait; its own backoff grows from there.
const BUSY_RETRY_AFTER_SECS: &str = "1";

/// An ingest slot, shown in `vigil_ingest_requests_in_flight` while held.
struct Slot<'a> {
    _permit: tokio::sync::SemaphorePermit<'a>,
}

impl<'a> Slot<'a> {
    fn take(state: &'a AppState) -> Option<Self> {
        let permit = state.ingest_slots.try_acquire().ok()?;
        gauge!("vigil_ingest_requests_in_flight").increment(1);
        Some(Slot { _permit: permit })
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        gauge!("vigil_ingest_requests_in_flight").decrement(1);
    }
}

fn reject(status: StatusCode, result: &'static str, message: String) -> Response {
    counter!("vigil_ingest_batches_total", "result" => result).increment(1);
    // Load shedding is routine under a burst (the agents retry): counted, logged at debug,
    // so a busy storm does not also cost a log line per request.
    if matches!(result, "busy" | "draining") {
        debug!(%status, result, "ingest refused: {message}");
    } else {
        warn!(%status, result, "ingest rejected: {message}");
    }
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
    // Taken before the body is read: a refused request costs its headers only. Refused
    // rather than queued: the agent keeps the batch in its spool and retries with backoff,
    // while a queue would hold connections (and their buffers) without bound.
    let Some(_slot) = Slot::take(&state) else {
        let mut busy = reject(
            StatusCode::SERVICE_UNAVAILABLE,
            "busy",
            format!(
                "{} ingest requests already in progress (max_concurrent_ingests); retry",
                state.config.max_concurrent_ingests
            ),
        );
        busy.headers_mut().insert(
            header::RETRY_AFTER,
            header::HeaderValue::from_static(BUSY_RETRY_AFTER_SECS),
        );
        return busy;
    };
    let body = match read_body(&state, body).await {
        Ok(body) => body,
        Err(refused) => return refused,
    };
    let limits = state.config.decode_limits;
    let raw = body.clone();
    // Bounded, but milliseconds of CPU for a full batch: off the async workers.
    let batch =
        match tokio::task::spawn_blocking(move || Batch::decode_compressed(&body, &limits)).await {
            Ok(Ok(batch)) => batch,
            Ok(Err(e)) => return refuse_undecoded(e),
            Err(e) => {
                return reject(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal_error",
                    format!("decoding failed: {e}"),
                )
            }
        };
    apply(&state, batch, raw).await
}

/// The body, within `max_body_bytes` and `ingest_timeout`.
async fn read_body(state: &AppState, body: Body) -> Result<Bytes, Response> {
    let (limit, timeout) = (state.config.max_body_bytes, state.config.ingest_timeout);
    // Reads at most the limit: an oversized body is refused without buffering it.
    match tokio::time::timeout(timeout, axum::body::to_bytes(body, limit)).await {
        Ok(Ok(body)) => Ok(body),
        Ok(Err(e)) if over_length_limit(&e) => Err(reject(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("body over the {limit}-byte limit (max_body_bytes)"),
        )),
        Ok(Err(e)) => Err(reject(
            StatusCode::BAD_REQUEST,
            "aborted",
            format!("body not received: {e}"),
        )),
        Err(_) => Err(reject(
            StatusCode::REQUEST_TIMEOUT,
            "timeout",
            format!("body not received within {timeout:?} (ingest_timeout_ms)"),
        )),
    }
}

fn over_length_limit(e: &axum::Error) -> bool {
    let mut source = std::error::Error::source(e);
    while let Some(e) = source {
        if e.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = e.source();
    }
    false
}

fn refuse_undecoded(e: WireError) -> Response {
    let (status, result) = match e {
        WireError::TooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "decoded_too_large"),
        WireError::TooManyRecords { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "too_many_records"),
        WireError::Snappy(_) | WireError::Decode(_) | WireError::Malformed { .. } => {
            (StatusCode::BAD_REQUEST, "undecodable")
        }
    };
    reject(status, result, e.to_string())
}

/// A node name usable as a label and a Loki stream label: a host or Kubernetes node name.
pub fn valid_node(node: &str) -> bool {
    !node.is_empty()
        && node.len() <= 253
        && node
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b':'))
}

/// Checks what identifies the batch, logs it durably (when `state_dir` is set), then applies
/// it: the 200 is only sent once the batch is on disk.
async fn apply(state: &Arc<AppState>, batch: Batch, raw: Bytes) -> Response {
    if batch.sequence == 0 || !valid_agent_id(&batch.agent_id) {
        return reject(
            StatusCode::BAD_REQUEST,
            "undecodable",
            "batch without a sequence, or an agent_id that is empty, over 256 bytes or not printable ASCII".into(),
        );
    }
    if !valid_node(&batch.node) {
        return reject(
            StatusCode::BAD_REQUEST,
            "invalid_node",
            format!(
                "node {:?} is not a host name (1-253 of A-Z a-z 0-9 - . _ :)",
                batch.node.chars().take(64).collect::<String>()
            ),
        );
    }
    if state.dedup.seen(&batch.agent_id, batch.sequence) {
        return duplicate(&batch);
    }
    let ticket = match &state.wal {
        Some(wal) => {
            let record = WalRecord {
                agent_id: batch.agent_id.clone(),
                sequence: batch.sequence,
                body: raw.to_vec(),
            };
            match wal.append(&record).await {
                Ok(segment) => Some(wal.ticket(segment)),
                Err(e @ WalError::Full { .. }) => {
                    return reject(StatusCode::SERVICE_UNAVAILABLE, "wal_full", e.to_string())
                }
                Err(e) => {
                    return reject(StatusCode::SERVICE_UNAVAILABLE, "wal_error", e.to_string())
                }
            }
        }
        None => None,
    };
    // Two copies of one batch may race past `seen`: the log replays each pair once.
    if !state.dedup.first_time(&batch.agent_id, batch.sequence) {
        return duplicate(&batch);
    }
    state.recorder.apply(&batch);
    state.alerts.observe(&batch);
    state.status.observe(&batch);
    counter!("vigil_ingest_batches_total", "result" => "accepted").increment(1);
    counter!("vigil_ingest_records_total").increment(batch.len() as u64);
    if let Some(loki) = state.loki.clone() {
        let entries = crate::loki::entries_from_batch(batch);
        let entries = match &ticket {
            Some(ticket) => with_ticket(entries, ticket),
            None => entries,
        };
        // A spill to the Loki spool fsyncs: off the async workers.
        let _ = tokio::task::spawn_blocking(move || loki.enqueue(entries)).await;
    }
    (StatusCode::OK, "accepted\n").into_response()
}

fn duplicate(batch: &Batch) -> Response {
    counter!("vigil_ingest_batches_total", "result" => "duplicate").increment(1);
    debug!(agent = %batch.agent_id, seq = batch.sequence, "duplicate batch ignored");
    (StatusCode::OK, "duplicate\n").into_response()
}

#[cfg(test)]
mod tests {
    #[test]
    fn node_names() {
        assert!(super::valid_node("node-1.example.com"));
        assert!(super::valid_node("ip-10-0-0-1"));
        for bad in ["", "a b", "n\"}", "x{y}", &"n".repeat(254)] {
            assert!(!super::valid_node(bad), "{bad:?}");
        }
    }
}
