//! vigil-collector: receives agent batches, serves Prometheus metrics.
use std::sync::Arc;

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
mod metrics;

use config::{CollectorConfig, Overrides};

pub struct AppState {
    pub config: CollectorConfig,
    pub dedup: ingest::Dedup,
    pub recorder: metrics::Recorder,
    pub prometheus: PrometheusHandle,
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

pub fn router(state: Arc<AppState>) -> Router {
    // axum's own limit sits above ours so that we answer 413 with our message.
    let limit = state.config.max_body_bytes + 1;
    Router::new()
        .route("/api/v1/ingest", post(ingest::ingest).layer(DefaultBodyLimit::max(limit)))
        .route("/metrics", get(render_metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(|| async { "ready\n" }))
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
    info!(listen = %config.listen, auth = config.token.is_some(), "vigil-collector serving");
    let state = Arc::new(AppState {
        recorder: metrics::Recorder::new(config.label_value_limit),
        dedup: ingest::Dedup::default(),
        prometheus,
        config,
    });
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown_signal())
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
