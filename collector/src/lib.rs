//! vigil-collector: the receiving end of vigil's agents. The data path:
//!
//! - `ingest` takes an agent batch over HTTP (auth, limits, decode, `dedup`), then
//! - `metrics` turns it into Prometheus series (label values capped), and
//! - `loki` turns its failed or abnormal connections and nginx log lines into log entries,
//!   queued, spooled and shipped to Loki by a thread of their own;
//! - `alerts` diagnoses why nginx answers 502/504 and raises alerts by cause.
//!
//! `server` wires them together: it builds the shared `state::AppState` from `config`,
//! routes the endpoints, and drains on shutdown.
pub mod alerts;
pub mod config;
pub mod dedup;
pub mod durable;
pub mod ingest;
pub mod label_cap;
pub mod loki;
pub mod metrics;
pub mod notify;
pub mod server;
pub mod state;
pub mod status;
pub mod tls;
pub mod wal;

pub use server::{router, serve};
pub use state::AppState;
