//! What the synthetic agents send: each second, the batch a busy node's agent seals
//! (node.rs says what is in it), in three variants: plain, with the agent's sample (every
//! 5th second per agent), with a failure (once a minute per agent).
//!
//! The records of a second are built and snappy-compressed once and shared by every agent;
//! each agent's body is its own header (agent id, sequence, node, time) compressed and
//! spliced in front. prost writes fields in tag order and the header's tags (1-4) come
//! before the records' (5-11), so the decompressed body is byte for byte the prost encoding
//! of the whole batch; a snappy raw block is a length preamble and a stream of elements whose
//! copies only reach back within the block, so two element streams joined under the summed
//! length are a valid block. `check_splice` proves it with the collector's own decoder. This
//! keeps the generator's CPU (it shares the 2 cores with the collector) to a memcpy per send.
use vigil_wire::{Batch, ConnectResult, DecodeLimits};

use super::node::{add_sample, traffic, Shape, XorShift};

/// Batches between two samples of upstreams and processes (the agent's `--interval 5s`).
pub const SAMPLE_EVERY: u64 = 5;
/// Batches between two failures of a node.
pub const FAIL_EVERY: u64 = 60;

/// Records of one second, compressed: the element stream of a snappy block without its
/// length preamble, the length it decompresses to, and what it holds.
pub struct Records {
    elements: Vec<u8>,
    raw_len: usize,
    pub records: u64,
    /// Lines the collector ships to Loki for it: failed or abnormal connections and every
    /// nginx line (the rule of the collector's `loki::entries_from_batch`).
    pub loki_lines: u64,
}

/// One second's records: plain, with the sample, with a failure.
pub struct Second {
    pub plain: Records,
    pub sampled: Records,
    pub failing: Records,
}

impl Second {
    /// The records of the second starting at `unix_ns`; `tick` counts seconds since start.
    pub fn build(unix_ns: i64, tick: u64, shape: Shape) -> Second {
        let (plain, sampled, failing) = Self::batches(unix_ns, tick, shape);
        Second {
            plain: Records::compress(&plain),
            sampled: Records::compress(&sampled),
            failing: Records::compress(&failing),
        }
    }

    fn batches(unix_ns: i64, tick: u64, shape: Shape) -> (Batch, Batch, Batch) {
        let mut rng = XorShift(tick.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let plain = traffic(unix_ns, &mut rng, false, shape);
        let mut sampled = plain.clone();
        add_sample(&mut sampled, tick);
        let failing = traffic(unix_ns, &mut rng, true, shape);
        (plain, sampled, failing)
    }

    /// What agent `index` sends as its batch `sequence`.
    pub fn pick(&self, index: usize, sequence: u64) -> &Records {
        let turn = sequence + index as u64;
        if turn.is_multiple_of(SAMPLE_EVERY) {
            &self.sampled
        } else if turn % FAIL_EVERY == 1 {
            &self.failing
        } else {
            &self.plain
        }
    }
}

impl Records {
    fn compress(batch: &Batch) -> Records {
        let block = batch.encode_compressed();
        let (raw_len, start) = preamble(&block);
        let failed = batch
            .connections
            .iter()
            .filter(|c| c.result() != ConnectResult::Ok || c.silent_close || c.reset)
            .count();
        Records {
            elements: block[start..].to_vec(),
            raw_len,
            records: batch.len() as u64,
            loki_lines: (failed + batch.nginx_errors.len() + batch.nginx_access.len()) as u64,
        }
    }
}

/// The header of one agent's batch.
pub struct Header<'a> {
    pub agent_id: &'a str,
    pub node: &'a str,
    pub sequence: u64,
    pub created_unix_ms: i64,
}

impl Header<'_> {
    fn batch(&self) -> Batch {
        Batch {
            agent_id: self.agent_id.to_owned(),
            sequence: self.sequence,
            node: self.node.to_owned(),
            created_unix_ms: self.created_unix_ms,
            ..Default::default()
        }
    }
}

/// The ingest body: `header` spliced in front of `records` (see the module comment).
pub fn body(header: &Header, records: &Records) -> Vec<u8> {
    let head = header.batch().encode_compressed();
    let (head_len, start) = preamble(&head);
    let mut out = Vec::with_capacity(10 + head.len() + records.elements.len());
    let mut len = head_len + records.raw_len;
    while len >= 0x80 {
        out.push((len as u8) | 0x80);
        len >>= 7;
    }
    out.push(len as u8);
    out.extend_from_slice(&head[start..]);
    out.extend_from_slice(&records.elements);
    out
}

/// A snappy raw block's decompressed length (its varint preamble) and where elements start.
fn preamble(block: &[u8]) -> (usize, usize) {
    let mut len = 0usize;
    for (i, b) in block.iter().enumerate().take(5) {
        len |= usize::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return (len, i + 1);
        }
    }
    unreachable!("snap writes a preamble of at most 5 bytes")
}

/// Decodes spliced bodies with the collector's decoder and compares them with the batches
/// encoded whole: the bench must send exactly what an agent sends.
pub fn check_splice(limits: &DecodeLimits, shape: Shape) -> anyhow::Result<()> {
    let (tick, unix_ns) = (SAMPLE_EVERY, 1_795_600_000_000_000_000);
    let (plain, sampled, failing) = Second::batches(unix_ns, tick, shape);
    let second = Second::build(unix_ns, tick, shape);
    let header = Header {
        agent_id: "fleet-node-00001/1795600000000-1",
        node: "fleet-node-00001",
        sequence: 300,
        created_unix_ms: 1_795_600_000_999,
    };
    let variants = [
        (plain, &second.plain),
        (sampled, &second.sampled),
        (failing, &second.failing),
    ];
    for (whole, records) in variants {
        let decoded = Batch::decode_compressed(&body(&header, records), limits)
            .map_err(|e| anyhow::anyhow!("a spliced batch does not decode: {e}"))?;
        let h = header.batch();
        let whole = Batch {
            agent_id: h.agent_id,
            sequence: h.sequence,
            node: h.node,
            created_unix_ms: h.created_unix_ms,
            ..whole
        };
        anyhow::ensure!(
            decoded == whole,
            "a spliced batch decodes to something else than the batch encoded whole"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: DecodeLimits = DecodeLimits {
        max_decoded_bytes: 32 << 20,
        max_records: 50_000,
    };
    use crate::bench::fleet::node::ConnectionRecords;

    const SHAPES: [Shape; 2] = [
        Shape {
            connections: ConnectionRecords::Failures,
            access_lines: 200,
        },
        Shape {
            connections: ConnectionRecords::All,
            access_lines: 200,
        },
    ];

    #[test]
    fn a_spliced_body_is_the_batch_encoded_whole() {
        for shape in SHAPES {
            check_splice(&LIMITS, shape).unwrap();
        }
    }

    /// The Loki lines the bench expects are the ones the collector makes of the batch, and
    /// summaries count every healthy connection.
    #[test]
    fn loki_lines_follow_the_collectors_rule() {
        let header = Header {
            agent_id: "fleet-node-00001/1-1",
            node: "fleet-node-00001",
            sequence: 1,
            created_unix_ms: 1,
        };
        for shape in SHAPES {
            let second = Second::build(1_795_600_000_000_000_000, 7, shape);
            for records in [&second.plain, &second.sampled, &second.failing] {
                let batch = Batch::decode_compressed(&body(&header, records), &LIMITS).unwrap();
                assert_eq!(batch.len() as u64, records.records);
                let summarised: u64 = batch.summaries.iter().map(|s| s.count).sum();
                let failed = u64::from(std::ptr::eq(records, &second.failing));
                assert_eq!(batch.connections.len() as u64 + summarised, 100 + failed);
                let lines = vigil_collector::loki::entries_from_batch(batch).len();
                assert_eq!(lines as u64, records.loki_lines);
            }
            // 2 resets, 3 other errors, 200 access lines; the failure adds 3.
            assert_eq!(second.plain.loki_lines, 205);
            assert_eq!(second.failing.loki_lines, 208);
            assert_eq!(second.sampled.records, second.plain.records + 35);
        }
    }
}
