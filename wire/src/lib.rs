//! What agents send to the collector, defined once and used by both sides.
//!
//! A [`Batch`] is prost-encoded, then snappy-compressed (raw block format), and POSTed to
//! `/api/v1/ingest`. `(agent_id, sequence)` identifies a batch: the agent retries the same
//! pair after a failure and the collector drops a pair it has already applied, which makes
//! delivery at-least-once on the wire and exactly-once in the counts.
//!
//! Messages are declared with prost's derive (no protoc at build time); field tags are the
//! compatibility contract: never reuse or renumber one.
pub mod backoff;
pub mod buckets;
mod decode;
pub mod http;
pub mod logging;
mod messages;
pub mod spool;
pub mod time;
pub mod token;

pub use decode::{DecodeLimits, RepeatedCounts, WireError, MAX_ITEM_COST, MAX_ITEM_SIZE};
pub use messages::*;
use prost::Message;

/// Where agents POST batches on the collector.
pub const INGEST_PATH: &str = "/api/v1/ingest";
/// Content type of an ingest request body.
pub const CONTENT_TYPE: &str = "application/x-vigil-batch+snappy";

impl Batch {
    /// prost-encode, then snappy-compress.
    pub fn encode_compressed(&self) -> Vec<u8> {
        let raw = self.encode_to_vec();
        snap::raw::Encoder::new()
            .compress_vec(&raw)
            .expect("snappy compresses any input")
    }

    /// Number of records in the batch (for counters and batch sizing).
    pub fn len(&self) -> usize {
        self.connections.len()
            + self.upstreams.len()
            + self.processes.len()
            + self.nginx_errors.len()
            + self.nginx_access.len()
            + self.routes.len()
            + self.summaries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0 && self.health.is_none()
    }
}
