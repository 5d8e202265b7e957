//! `AppState`: what the HTTP handlers share — the configuration, the draining flag, the
//! ingest slots, ingest dedup, the metrics recorder and Prometheus handle, and the Loki sink
//! when configured.
use std::sync::atomic::AtomicBool;

use metrics_exporter_prometheus::PrometheusHandle;

use crate::{config::CollectorConfig, dedup::Dedup, loki::LokiSink, metrics::Recorder};

pub struct AppState {
    pub config: CollectorConfig,
    /// Set on SIGTERM: ingest answers 503 (agents keep the batch and retry elsewhere or
    /// later) while /metrics keeps serving for the grace period, so the last values get scraped.
    pub draining: AtomicBool,
    /// One permit per ingest request being read, decoded or applied
    /// (`max_concurrent_ingests`): what bounds ingest memory, and what shutdown waits for.
    pub ingest_slots: tokio::sync::Semaphore,
    pub dedup: std::sync::Arc<Dedup>,
    /// Accepted batches are here before the 200 (`state_dir` set).
    pub wal: Option<std::sync::Arc<crate::wal::Wal>>,
    pub recorder: Recorder,
    pub prometheus: PrometheusHandle,
    pub loki: Option<LokiSink>,
    /// Root-cause alerts: fed every accepted batch, serves `GET /api/v1/alerts`.
    pub alerts: crate::alerts::AlertEngine,
    /// Latest health and upstreams per node: what `GET /` shows.
    pub status: crate::status::StatusBoard,
}
