//! vigil-collector: receives agent batches, serves Prometheus metrics.
use std::sync::{
    atomic::{AtomicBool, Ordering},
    Arc,
};

use anyhow::Context;
use axum::{
    extract::{DefaultBodyLimit, State},
    routing::{get, post},
    Router,
};
use clap::Parser;
use metrics_exporter_prometheus::PrometheusHandle;
use tracing::info;

mod config;
mod ingest;
mod loki;
mod metrics;

use config::{CollectorConfig, Overrides};

pub struct AppState {
    pub config: CollectorConfig,
    /// Set on SIGTERM: ingest answers 503 (agents keep the batch and retry elsewhere or
    /// later) while /metrics keeps serving for the grace period, so the last values get scraped.
    pub draining: AtomicBool,
    pub dedup: ingest::Dedup,
    pub recorder: metrics::Recorder,
    pub prometheus: PrometheusHandle,
    pub loki: Option<loki::LokiSink>,
}

#[derive(Parser)]
#[command(name = "vigil-collector", version, about = "vigil's collector")]
struct Cli {
    #[command(flatten)]
    overrides: Overrides,
}

async fn render_metrics(State(state): State<Arc<AppState>>) -> String {
    state.prometheus.render()
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
        .route("/api/v1/ingest", post(ingest::ingest).layer(DefaultBodyLimit::disable()))
        .route("/metrics", get(render_metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(state)
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("VIGIL_LOG").unwrap_or_else(|_| "info".into()),
        )
        .init();
    let cli = Cli::parse();
    let config = CollectorConfig::load(&cli.overrides).context("invalid configuration")?;
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(serve(config))
}

async fn serve(config: CollectorConfig) -> anyhow::Result<()> {
    let prometheus = metrics::install()?;
    let upkeep = prometheus.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(5));
        loop {
            tick.tick().await;
            upkeep.run_upkeep();
        }
    });
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    info!(listen = %config.listen, auth = config.token.is_some(), loki = ?config.loki.as_ref().map(|l| &l.url), "vigil-collector serving");
    let state = Arc::new(AppState {
        recorder: metrics::Recorder::new(config.label_value_limit),
        dedup: ingest::Dedup::default(),
        prometheus,
        loki: config.loki.clone().map(loki::LokiSink::start),
        draining: AtomicBool::new(false),
        config,
    });
    let draining = state.clone();
    axum::serve(listener, router(state))
        .with_graceful_shutdown(async move {
            shutdown_signal().await;
            draining.draining.store(true, Ordering::SeqCst);
            info!(grace = ?draining.config.shutdown_grace, "draining: ingest refused, /metrics still served");
            tokio::time::sleep(draining.config.shutdown_grace).await;
        })
        .await
        .context("server failed")
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
