//! Inputs for the ingest decoder fuzz, structure-aware: valid batches, the same mutated at
//! the protobuf layer (bit flips, interesting bytes, inserted keys and varints, deletions,
//! repeated ranges, truncations, crossovers) or at the snappy layer (including a lying
//! length header), random bytes, and snappy bombs sized around the limits (records, nested
//! repeated fields, growing strings, merged optional messages, bodies just over the
//! decoded size), themselves mutated now and then.
use prost::Message;
use vigil_wire::{
    AgentHealth, Batch, ConnectionOutcome, DecodeLimits, NginxAccessRecord, NginxErrorRecord,
    ProcessExit, ProcessIdentity, ProcessSample, UpstreamStatus,
};

/// splitmix64: fast, seedable, good enough to pick mutations.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn text(&mut self, max: usize) -> String {
        const CHARS: &[char] = &['a', 'Z', '0', ' ', ':', '/', '"', '\\', 'é', '字', '🦀'];
        let n = self.below(max + 1);
        (0..n).map(|_| CHARS[self.below(CHARS.len())]).collect()
    }
}

/// What kind of input an execution got (for the report).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Valid,
    MutatedProtobuf,
    MutatedSnappy,
    Random,
    Bomb,
    MutatedBomb,
}

pub const KINDS: [Kind; 6] = [
    Kind::Valid,
    Kind::MutatedProtobuf,
    Kind::MutatedSnappy,
    Kind::Random,
    Kind::Bomb,
    Kind::MutatedBomb,
];

/// Mutated inputs stay below this, so that an execution costs microseconds.
const MAX_MUTATED: usize = 256 << 10;
/// Bytes a mutation likes: varint edges, wire types, the batch's field keys.
const INTERESTING: &[u8] = &[
    0x00, 0x01, 0x7f, 0x80, 0xff, 0x08, 0x0a, 0x1a, 0x2a, 0x32, 0x3a, 0x42, 0x4a, 0x52, 0x0b, 0x0c,
    0x0e, 0x0f,
];

pub struct Inputs {
    rng: Rng,
    /// Encoded (not compressed) valid batches to mutate.
    seeds: Vec<Vec<u8>>,
    /// Compressed bombs.
    bombs: Vec<Vec<u8>>,
}

impl Inputs {
    pub fn new(seed: u64, limits: &DecodeLimits) -> Self {
        let mut rng = Rng::new(seed);
        let seeds = (0..64)
            .map(|_| valid_batch(&mut rng).encode_to_vec())
            .collect();
        Inputs {
            rng,
            seeds,
            bombs: bombs(limits).iter().map(|raw| snappy(raw)).collect(),
        }
    }

    /// The next body to decode.
    pub fn next(&mut self) -> (Kind, Vec<u8>) {
        let kind = match self.rng.below(100) {
            0..=14 => Kind::Valid,
            15..=64 => Kind::MutatedProtobuf,
            65..=79 => Kind::MutatedSnappy,
            80..=89 => Kind::Random,
            // The bombs are few and each costs a decode at the limit: mostly mutated.
            90 => Kind::Bomb,
            _ => Kind::MutatedBomb,
        };
        let body = match kind {
            Kind::Valid => snappy(&valid_batch(&mut self.rng).encode_to_vec()),
            Kind::MutatedProtobuf => {
                let mut raw = self.seeds[self.rng.below(self.seeds.len())].clone();
                self.mutate(&mut raw);
                snappy(&raw)
            }
            Kind::MutatedSnappy => {
                let mut body = snappy(&self.seeds[self.rng.below(self.seeds.len())]);
                self.mutate_snappy(&mut body);
                body
            }
            Kind::Random => {
                let n = self.rng.below(512);
                (0..n).map(|_| self.rng.next() as u8).collect()
            }
            Kind::Bomb => self.bombs[self.rng.below(self.bombs.len())].clone(),
            Kind::MutatedBomb => {
                let mut body = self.bombs[self.rng.below(self.bombs.len())].clone();
                self.mutate_snappy(&mut body);
                body
            }
        };
        (kind, body)
    }

    fn mutate(&mut self, data: &mut Vec<u8>) {
        for _ in 0..1 + self.rng.below(6) {
            let at = self.rng.below(data.len() + 1);
            match self.rng.below(8) {
                0 if at < data.len() => data[at] ^= 1 << self.rng.below(8),
                1 if at < data.len() => data[at] = INTERESTING[self.rng.below(INTERESTING.len())],
                2 => {
                    let n = 1 + self.rng.below(8);
                    let bytes: Vec<u8> = (0..n).map(|_| self.rng.next() as u8).collect();
                    data.splice(at..at, bytes);
                }
                3 => {
                    let end = (at + 1 + self.rng.below(32)).min(data.len());
                    data.drain(at.min(end)..end);
                }
                4 => self.repeat_range(data, at),
                5 => data.truncate(at),
                6 => {
                    // A field key then a varint: a length that lies, a huge count, a wire type.
                    let key = INTERESTING[self.rng.below(INTERESTING.len())];
                    let mut bytes = vec![key];
                    varint(self.rng.next() >> self.rng.below(64), &mut bytes);
                    data.splice(at..at, bytes);
                }
                _ => {
                    let other = &self.seeds[self.rng.below(self.seeds.len())];
                    let from = self.rng.below(other.len() + 1);
                    let end = (from + self.rng.below(64)).min(other.len());
                    data.splice(at..at, other[from..end].to_vec());
                }
            }
        }
        data.truncate(MAX_MUTATED);
    }

    /// Repeats a short range many times: records, keys or nested fields multiplied.
    fn repeat_range(&mut self, data: &mut Vec<u8>, at: usize) {
        let end = (at + 1 + self.rng.below(16)).min(data.len());
        let piece = data[at.min(end)..end].to_vec();
        let scale = 1 << self.rng.below(12);
        let times = 1 + self.rng.below(scale);
        if piece.len() * times < MAX_MUTATED {
            data.splice(end..end, piece.repeat(times));
        }
    }

    fn mutate_snappy(&mut self, body: &mut Vec<u8>) {
        if self.rng.below(4) == 0 {
            // Rewrite the length header: smaller, larger, or up to 2^32.
            let (_, header_len) = read_varint(body);
            let mut header = Vec::new();
            varint(self.rng.next() >> (31 + self.rng.below(33)), &mut header);
            body.splice(..header_len, header);
        } else {
            self.mutate(body);
        }
    }
}

/// A random valid batch: a few records of every kind, sometimes a health.
fn valid_batch(rng: &mut Rng) -> Batch {
    let n = |rng: &mut Rng| rng.below(6);
    Batch {
        agent_id: rng.text(24),
        sequence: rng.next() >> rng.below(64),
        node: rng.text(12),
        created_unix_ms: rng.next() as i64,
        connections: (0..n(rng))
            .map(|_| ConnectionOutcome {
                unix_ns: rng.next() as i64,
                comm: rng.text(15),
                src: rng.text(21),
                dst: rng.text(21),
                result: rng.below(9) as i32 - 1,
                errno: rng.below(120) as i32,
                first_byte_us: (rng.below(2) == 0).then(|| rng.next() >> 20),
                ..Default::default()
            })
            .collect(),
        upstreams: (0..n(rng)).map(|_| upstream(rng)).collect(),
        processes: (0..n(rng))
            .map(|_| ProcessSample {
                pid: rng.next() as u32,
                comm: rng.text(15),
                cpu_ratio: Some(rng.below(1000) as f64 / 100.0),
                state: rng.text(1),
                ..Default::default()
            })
            .collect(),
        nginx_errors: (0..n(rng))
            .map(|_| NginxErrorRecord {
                line: rng.text(300),
                level: rng.text(6),
                request: rng.text(40),
                ..Default::default()
            })
            .collect(),
        nginx_access: (0..n(rng))
            .map(|_| NginxAccessRecord {
                line: rng.text(200),
                status: rng.below(600) as u32,
                request_time: Some(0.25),
                ..Default::default()
            })
            .collect(),
        health: (rng.below(3) == 0).then(|| AgentHealth {
            probe_events_lost: rng.next() >> 40,
            capabilities_missing: (0..n(rng)).map(|_| rng.text(12)).collect(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn upstream(rng: &mut Rng) -> UpstreamStatus {
    let identity = |rng: &mut Rng| ProcessIdentity {
        pid: rng.next() as u32,
        comm: rng.text(15),
        cmdline: rng.text(60),
        unit: rng.text(20),
        ..Default::default()
    };
    UpstreamStatus {
        port: rng.below(65536) as u32,
        listening: rng.below(2) == 0,
        addr: rng.text(21),
        owner: Some(identity(rng)),
        last_owner: (rng.below(2) == 0).then(|| identity(rng)),
        last_exit: (rng.below(2) == 0).then(|| ProcessExit {
            pid: rng.next() as u32,
            comm: rng.text(15),
            signal: Some(9),
            stderr_tail: (0..rng.below(4)).map(|_| rng.text(80)).collect(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Raw protobuf bombs around the limits: each costs little on the wire and, decoded
/// without bounds, far more than its size.
pub fn bombs(limits: &DecodeLimits) -> Vec<Vec<u8>> {
    let (d, r) = (limits.max_decoded_bytes, limits.max_records);
    let mut out = Vec::new();
    for key in [0x2a, 0x32, 0x3a, 0x42, 0x4a, 0x5a] {
        for n in [r, r + 1, 8 * r] {
            out.push(header_then(&[key, 0x00], n));
        }
    }
    // Every other field number, empty and length-delimited, many times over.
    for number in (1..=4).chain(10..=15) {
        out.push(header_then(&[(number << 3) | 2, 0x00], r + 1));
    }
    // Server names in routes (11 > 1).
    out.push(header_then(&field(0x5a, &[0x0a, 0x00].repeat(r + 1)), 1));
    // Capability names in one health, and spread over many.
    out.push(header_then(&field(0x52, &[0x1a, 0x00].repeat(r + 1)), 1));
    out.push(header_then(
        &field(0x52, &[0x1a, 0x00, 0x1a, 0x00]),
        r / 2 + 1,
    ));
    // Stderr lines in an upstream's last exit, repeated exits merging into one.
    let exit = field(0x4a, &[0x32, 0x00].repeat(r / 4 + 1));
    out.push(header_then(&field(0x32, &exit.repeat(4)), 1));
    // An optional message repeated: merges, no growth.
    out.push(header_then(
        &field(0x32, &field(0x32, &[0x08, 0x01]).repeat(r)),
        1,
    ));
    // One string growing by doubling across repeats, to about the decoded limit.
    let mut grow = Vec::new();
    let mut len = 9;
    while grow.len() + len + 16 < d {
        grow.extend(field(0x1a, &vec![b'x'; len]));
        len = len * 2 + 1;
    }
    out.push(header_then(&grow, 1));
    // Exactly at the decoded limit (one long node name), and one byte over.
    let header = header_then(&[], 0);
    let room = d - header.len() - 1 - 5;
    let mut at_limit = header.clone();
    at_limit.extend(field(0x1a, &vec![b'n'; room]));
    out.push(at_limit.clone());
    at_limit.push(0);
    out.push(at_limit);
    out
}

fn header_then(item: &[u8], n: usize) -> Vec<u8> {
    let mut raw = Batch {
        agent_id: "bomb".into(),
        sequence: 1,
        ..Default::default()
    }
    .encode_to_vec();
    raw.reserve(item.len() * n);
    for _ in 0..n {
        raw.extend_from_slice(item);
    }
    raw
}

/// `key`, then `payload` length-delimited (the length padded to 5 bytes: sizes stay exact).
fn field(key: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![key];
    let len = payload.len() as u64;
    for i in 0..5 {
        let byte = ((len >> (7 * i)) & 0x7f) as u8;
        out.push(if i < 4 { byte | 0x80 } else { byte });
    }
    out.extend(payload);
    out
}

fn varint(mut value: u64, out: &mut Vec<u8>) {
    while value >= 0x80 {
        out.push(value as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// A varint at the start of `data` and its length in bytes (0 when there is none).
fn read_varint(data: &[u8]) -> (u64, usize) {
    let mut value = 0;
    for (i, &b) in data.iter().take(10).enumerate() {
        value |= u64::from(b & 0x7f) << (7 * i);
        if b < 0x80 {
            return (value, i + 1);
        }
    }
    (value, 0)
}

pub fn snappy(raw: &[u8]) -> Vec<u8> {
    snap::raw::Encoder::new()
        .compress_vec(raw)
        .expect("snappy compresses any input")
}
