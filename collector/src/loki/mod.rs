//! Loki shipping, laid out like Vector's sink: `config` (the `[loki]` settings), `entries`
//! (which batch records become log lines), `encode` and `proto` (the push body), `queue`
//! (memory queue and disk spool), `sink` (the handle ingest enqueues to), `shipper` (the
//! thread that delivers) and `client` (Loki's HTTP answers, its version).
//!
//! Streams: `{job="vigil", node, source, level}` with source ∈ ebpf | nginx_error |
//! nginx_access | alert; everything else is structured metadata. ebpf lines are logfmt;
//! nginx lines are the raw log line.
mod client;
pub mod config;
pub mod encode;
pub mod entries;
pub mod proto;
mod queue;
mod shipper;
pub mod sink;

pub use config::{LokiAuth, LokiConfig, LokiConfigError, LokiFileConfig};
pub use encode::LogEntry;
pub use entries::entries_from_batch;
pub use sink::LokiSink;
