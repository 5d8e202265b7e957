//! The HTTP side: `router` maps `/api/v1/ingest`, `/metrics`, `/healthz` and `/readyz` to
//! their handlers; `serve` installs the metrics recorder, starts the Loki sink, serves until
//! SIGTERM or Ctrl-C, drains for the grace period, and leaves unshipped Loki lines in the
//! spool. Shutdown is bounded even with stalled clients: after the grace period connections
//! get `ingest_timeout` to finish (an ingest body read ends by then), then are dropped.
use std::{
    future::IntoFuture,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
};

use anyhow::Context;
use axum::{
    extract::{DefaultBodyLimit, State},
    routing::{get, post},
    Router,
};
use tracing::{info, warn};

use crate::{config::CollectorConfig, durable, ingest, loki, metrics, state::AppState};

/// Rendering takes about a second at 250k series: off the async workers, so ingest (and
/// its slots) does not stall behind a scrape.
async fn render_metrics(State(state): State<Arc<AppState>>) -> String {
    tokio::task::spawn_blocking(move || state.prometheus.render())
        .await
        .unwrap_or_default()
}

async fn readyz(State(state): State<Arc<AppState>>) -> (axum::http::StatusCode, &'static str) {
    if state.draining.load(Ordering::SeqCst) {
        (axum::http::StatusCode::SERVICE_UNAVAILABLE, "draining\n")
    } else {
        (axum::http::StatusCode::OK, "ready\n")
    }
}

pub fn router(state: Arc<AppState>) -> Router {
    // The ingest handler enforces (and counts) its own limit.
    Router::new()
        .route(
            vigil_wire::INGEST_PATH,
            post(ingest::ingest).layer(DefaultBodyLimit::disable()),
        )
        .route("/metrics", get(render_metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/api/v1/alerts", get(crate::alerts::api::list))
        .route("/", get(crate::status::page))
        .with_state(state)
}

pub async fn serve(config: CollectorConfig) -> anyhow::Result<()> {
    let prometheus = metrics::install(config.series_idle)?;
    let upkeep = prometheus.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(5));
        loop {
            tick.tick().await;
            upkeep.run_upkeep();
        }
    });
    let tls = match (&config.tls_cert_file, &config.tls_key_file) {
        (Some(cert), Some(key)) => Some(crate::tls::acceptor(cert, key).context("TLS listener")?),
        _ => None,
    };
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    info!(listen = %config.listen, auth = config.token.is_some(), loki = ?config.loki.as_ref().map(|l| &l.url), "vigil-collector serving");
    let loki = config
        .loki
        .clone()
        .map(loki::LokiSink::start)
        .transpose()
        .context("Loki spool directory")?;
    let alerts = crate::alerts::AlertEngine::start(config.alerts.clone(), loki.clone())
        .context("alert engine")?;
    let notifiers = Arc::new(crate::notify::Notifiers::start(&config.notify).context("notifiers")?);
    if !notifiers.is_empty() {
        alerts.add_sink(notifiers.clone());
    }
    let durable = durable::open(&config).context("state directory (state_dir)")?;
    let dedup = Arc::new(durable.dedup);
    if let Some(wal) = &durable.wal {
        durable::replay(
            wal,
            durable.replay,
            &dedup,
            loki.as_ref(),
            &config.decode_limits,
        );
        let dir = config.state_dir.clone().expect("a WAL has a state dir");
        tokio::spawn(durable::checkpoints(wal.clone(), dedup.clone(), dir));
    }
    let state = Arc::new(AppState {
        recorder: metrics::Recorder::new(
            config.label_value_limit,
            config.max_nodes,
            config.series_idle,
        ),
        dedup: dedup.clone(),
        wal: durable.wal.clone(),
        prometheus,
        loki,
        alerts,
        status: crate::status::StatusBoard::new(config.max_nodes),
        draining: AtomicBool::new(false),
        ingest_slots: tokio::sync::Semaphore::new(config.max_concurrent_ingests),
        config,
    });
    let loki = state.loki.clone();
    let grace = state.config.shutdown_grace;
    let drained = Arc::new(tokio::sync::Notify::new());
    let incoming = crate::tls::Incoming::new(listener, tls).context("listener")?;
    let server = axum::serve(incoming, router(state.clone()))
        .with_graceful_shutdown(drain(state.clone(), drained.clone()));
    tokio::select! {
        served = server.into_future() => served.context("server failed")?,
        () = connections_overdue(&drained, state.config.ingest_timeout) => {}
    }
    ingests_finished(&state).await;
    let alerts = state.alerts.clone();
    tokio::task::spawn_blocking(move || alerts.shutdown())
        .await
        .context("alert engine shutdown")?;
    if let Some(loki) = loki {
        // What Loki has not got yet waits in the spool for the next start.
        tokio::task::spawn_blocking(move || loki.shutdown(grace))
            .await
            .context("Loki shutdown")?;
    }
    // Notifiers get their last tries; each is bounded by its timeout.
    tokio::task::spawn_blocking(move || notifiers.shutdown())
        .await
        .context("notifiers shutdown")?;
    if let (Some(wal), Some(dir)) = (&state.wal, &state.config.state_dir) {
        // Lines now in the spool release their batches: the log keeps only what is unsafe.
        durable::checkpoint(wal, &state.dedup, dir).await;
        wal.close();
    }
    Ok(())
}

/// The graceful-shutdown signal: on SIGTERM ingest is refused while /metrics serves for the
/// grace period; then connections are asked to close, and `drained` is notified.
async fn drain(state: Arc<AppState>, drained: Arc<tokio::sync::Notify>) {
    shutdown_signal().await;
    state.draining.store(true, Ordering::SeqCst);
    info!(grace = ?state.config.shutdown_grace, "draining: ingest refused, /metrics still served");
    tokio::time::sleep(state.config.shutdown_grace).await;
    drained.notify_one();
}

/// Resolves `limit` after the drain: connections still open then (a stalled client, an
/// unfinished request head) are dropped rather than keeping the process alive.
async fn connections_overdue(drained: &tokio::sync::Notify, limit: std::time::Duration) {
    drained.notified().await;
    tokio::time::sleep(limit).await;
    warn!(
        ?limit,
        "connections still open after the grace period; closing them"
    );
}

/// Waits until no ingest holds a slot, so none enqueues to Loki after its shutdown. Body
/// reads have timed out by now (ingest_timeout after the drain); decoding is bounded.
async fn ingests_finished(state: &AppState) {
    let slots = state.config.max_concurrent_ingests as u32;
    let wait = state.ingest_slots.acquire_many(slots);
    if tokio::time::timeout(state.config.ingest_timeout, wait)
        .await
        .is_err()
    {
        warn!("ingest requests still running at shutdown; their batches may be lost");
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    info!("shutting down");
}
