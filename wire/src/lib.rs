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
mod messages;
pub mod spool;
pub mod token;

pub use messages::*;
use prost::Message;

/// Where agents POST batches on the collector.
pub const INGEST_PATH: &str = "/api/v1/ingest";
/// Content type of an ingest request body.
pub const CONTENT_TYPE: &str = "application/x-vigil-batch+snappy";

#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("body is not snappy-compressed (raw block): {0}")]
    Snappy(#[from] snap::Error),
    #[error("body is not a vigil batch: {0}")]
    Decode(#[from] prost::DecodeError),
    #[error("batch decompresses to {size} bytes, over the {limit}-byte limit")]
    TooLarge { size: usize, limit: usize },
}

impl Batch {
    /// prost-encode, then snappy-compress.
    pub fn encode_compressed(&self) -> Vec<u8> {
        let raw = self.encode_to_vec();
        snap::raw::Encoder::new()
            .compress_vec(&raw)
            .expect("snappy compresses any input")
    }

    /// Inverse of [`Batch::encode_compressed`], refusing bodies that would expand past
    /// `max_decompressed` bytes before allocating them.
    pub fn decode_compressed(body: &[u8], max_decompressed: usize) -> Result<Batch, WireError> {
        let size = snap::raw::decompress_len(body)?;
        if size > max_decompressed {
            return Err(WireError::TooLarge {
                size,
                limit: max_decompressed,
            });
        }
        let raw = snap::raw::Decoder::new().decompress_vec(body)?;
        Ok(Batch::decode(raw.as_slice())?)
    }

    /// Number of records in the batch (for counters and batch sizing).
    pub fn len(&self) -> usize {
        self.connections.len()
            + self.upstreams.len()
            + self.processes.len()
            + self.nginx_errors.len()
            + self.nginx_access.len()
            + self.routes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0 && self.health.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Batch {
        Batch {
            agent_id: "node-a/1234".into(),
            sequence: 7,
            node: "node-a".into(),
            connections: vec![ConnectionOutcome {
                unix_ns: 1_795_602_838_000_000_000,
                pid: 42,
                comm: "nginx".into(),
                src: "127.0.0.1:40000".into(),
                dst: "127.0.0.1:8084".into(),
                result: ConnectResult::Refused as i32,
                errno: 111,
                connect_us: 120,
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn round_trips_through_snappy() {
        let batch = sample();
        let body = batch.encode_compressed();
        assert_eq!(Batch::decode_compressed(&body, 1 << 20).unwrap(), batch);
    }

    #[test]
    fn garbage_and_bombs_are_typed_errors() {
        assert!(matches!(
            Batch::decode_compressed(b"\xff\xff\xff\xff\xff", 1 << 20),
            Err(WireError::Snappy(_))
        ));
        let not_proto = snap::raw::Encoder::new().compress_vec(&[0xff; 64]).unwrap();
        assert!(matches!(
            Batch::decode_compressed(&not_proto, 1 << 20),
            Err(WireError::Decode(_))
        ));
        let big = snap::raw::Encoder::new()
            .compress_vec(&vec![0u8; 4096])
            .unwrap();
        assert!(matches!(
            Batch::decode_compressed(&big, 1024),
            Err(WireError::TooLarge { .. })
        ));
    }
}
