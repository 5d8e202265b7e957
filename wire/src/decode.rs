//! Decoding an ingest body within bounds, before allocating: the snappy header's size is
//! checked against `max_decoded_bytes` before decompressing, and a pre-pass over the
//! protobuf wire format (tags, varints, lengths; no allocation) counts the batch's
//! repeated items before prost decodes them. A two-byte empty record costs a struct of a
//! few hundred bytes once decoded, so without the count a small snappy bomb decodes to
//! gigabytes.
//!
//! Repeated items are the records (Batch fields 5..=9), nginx's routes (11), connection
//! summaries (12) and every repeated field nested in them or in the health (`SHAPES`; they
//! accumulate across repeats of their optional parent, as prost merges those), numbers in
//! repeated numeric fields included (a packed field of n bytes holds up to n of them, 8 bytes
//! each once decoded). Nothing else can grow a decoded batch beyond its wire bytes: a
//! repeated optional message merges into one struct, a repeated string keeps the last value
//! in one buffer.
//!
//! What one decode holds at most, beyond the body: the decompressed protobuf (≤ D =
//! `max_decoded_bytes`); strings, whose capacities sum to ≤ D plus the allocator's 8-byte
//! minimum per string field; one string's old buffer while it grows (≤ D); the records'
//! vectors, reserved at their exact counts; nested repeated strings and numbers, in vectors
//! prost grows by doubling. Hence [`DecodeLimits::memory_bound`].
use prost::Message;

use crate::{
    AgentHealth, Batch, ConnectionOutcome, ConnectionSummary, NginxAccessRecord, NginxErrorRecord,
    NginxRoute, ProcessSample, UpstreamStatus,
};

#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("body is not snappy-compressed (raw block): {0}")]
    Snappy(#[from] snap::Error),
    #[error("body is not a vigil batch: {0}")]
    Decode(#[from] prost::DecodeError),
    #[error("body is not a vigil batch: {what} at byte {offset} of the decompressed batch")]
    Malformed { what: &'static str, offset: usize },
    #[error("batch decompresses to {size} bytes, over the {limit}-byte limit")]
    TooLarge { size: usize, limit: usize },
    #[error("batch holds {items} records and nested repeated items, over the limit of {limit}")]
    TooManyRecords { items: usize, limit: usize },
}

/// How much one batch may decode to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Size of the decompressed protobuf.
    pub max_decoded_bytes: usize,
    /// Repeated items: records plus the repeated items nested in them or in the health.
    pub max_records: usize,
}

/// Heap a decoded item can take besides its strings' bytes: its struct, plus the
/// allocator's 8-byte minimum for every string it can hold (a struct of n bytes holds at
/// most n / 24 `String`s, nested optional messages included).
const fn item_cost(size: usize) -> usize {
    size + 8 * (size / size_of::<String>())
}

const fn max(a: usize, b: usize) -> usize {
    if a > b {
        a
    } else {
        b
    }
}

/// Largest struct among the repeated items.
pub const MAX_ITEM_SIZE: usize = max(
    max(
        max(size_of::<ConnectionOutcome>(), size_of::<UpstreamStatus>()),
        max(size_of::<ProcessSample>(), size_of::<NginxErrorRecord>()),
    ),
    max(
        max(size_of::<NginxAccessRecord>(), size_of::<NginxRoute>()),
        max(size_of::<ConnectionSummary>(), size_of::<String>()),
    ),
);
/// A nested repeated string: its `String`, its 8-byte minimum, and its share of a vector
/// grown by doubling (capacity ≤ 2n, the old buffer live while it moves, at least 4 slots).
const NESTED_ITEM_COST: usize = 4 * size_of::<String>() + 8;
/// A number in a nested repeated numeric field: its share of a vector grown by doubling,
/// the old buffer live while it moves, at least 4 slots of 8 bytes.
const SCALAR_ITEM_COST: usize = 4 * size_of::<u64>();
const _: () = assert!(SCALAR_ITEM_COST <= NESTED_ITEM_COST);
/// Most heap one repeated item can take besides its strings' bytes.
pub const MAX_ITEM_COST: usize = max(item_cost(MAX_ITEM_SIZE), NESTED_ITEM_COST);
/// The batch's own strings and health outside the repeated items.
const BATCH_COST: usize = item_cost(size_of::<Batch>()) + item_cost(size_of::<AgentHealth>());

/// A message's repeated fields, and its message fields that hold repeated fields further
/// down: what the pre-pass walks. Every repeated field in messages.rs must be here (a test
/// reads messages.rs to make sure).
struct Shape {
    /// Read by the test that holds `SHAPES` to messages.rs.
    #[cfg_attr(not(test), allow(dead_code))]
    name: &'static str,
    repeated: &'static [u32],
    /// Repeated numeric fields: each number is an item, packed or not.
    scalars: &'static [u32],
    nested: &'static [(u32, &'static Shape)],
}

const PROCESS_EXIT: Shape = Shape {
    name: "ProcessExit",
    repeated: &[6],
    scalars: &[],
    nested: &[],
};
const UPSTREAM_STATUS: Shape = Shape {
    name: "UpstreamStatus",
    repeated: &[],
    scalars: &[],
    nested: &[(9, &PROCESS_EXIT)],
};
const AGENT_HEALTH: Shape = Shape {
    name: "AgentHealth",
    repeated: &[3],
    scalars: &[],
    nested: &[],
};
const NGINX_ROUTE: Shape = Shape {
    name: "NginxRoute",
    repeated: &[1],
    scalars: &[],
    nested: &[],
};
const CONNECTION_SUMMARY: Shape = Shape {
    name: "ConnectionSummary",
    repeated: &[],
    scalars: &[5, 7],
    nested: &[],
};
/// The batch; its repeated fields 5..=9 are the records, 11 nginx's routes, 12 connection
/// summaries.
const BATCH: Shape = Shape {
    name: "Batch",
    repeated: &[5, 6, 7, 8, 9, 11, 12],
    scalars: &[],
    nested: &[
        (6, &UPSTREAM_STATUS),
        (10, &AGENT_HEALTH),
        (11, &NGINX_ROUTE),
        (12, &CONNECTION_SUMMARY),
    ],
};
/// Every shape, for the test that holds them to messages.rs.
#[cfg(test)]
const SHAPES: [&Shape; 6] = [
    &BATCH,
    &UPSTREAM_STATUS,
    &PROCESS_EXIT,
    &AGENT_HEALTH,
    &NGINX_ROUTE,
    &CONNECTION_SUMMARY,
];

impl DecodeLimits {
    /// Most heap bytes one decode within these limits holds at once (see the module docs).
    pub const fn memory_bound(&self) -> usize {
        3 * self.max_decoded_bytes + self.max_records * MAX_ITEM_COST + BATCH_COST
    }

    /// Largest single allocation one decode within these limits makes: the decompressed
    /// buffer, one string (≤ its wire bytes) or one records vector.
    pub const fn largest_allocation_bound(&self) -> usize {
        max(self.max_decoded_bytes, self.max_records * MAX_ITEM_SIZE)
    }
}

impl Batch {
    /// Inverse of [`Batch::encode_compressed`] within `limits`: the decompressed size and the
    /// number of repeated items are checked before anything of that size is allocated.
    pub fn decode_compressed(body: &[u8], limits: &DecodeLimits) -> Result<Batch, WireError> {
        let size = snap::raw::decompress_len(body)?;
        if size > limits.max_decoded_bytes {
            return Err(WireError::TooLarge {
                size,
                limit: limits.max_decoded_bytes,
            });
        }
        let raw = snap::raw::Decoder::new().decompress_vec(body)?;
        let counts = RepeatedCounts::of(&raw)?;
        if counts.items() > limits.max_records {
            return Err(WireError::TooManyRecords {
                items: counts.items(),
                limit: limits.max_records,
            });
        }
        // Exact capacities: prost pushes one record per field, so none grows past them.
        let mut batch = counts.reserved_batch();
        batch.merge(raw.as_slice())?;
        Ok(batch)
    }
}

/// How many repeated items a protobuf-encoded batch holds.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RepeatedCounts {
    /// Batch fields 5..=9 in order: connections, upstreams, processes, nginx errors and
    /// nginx access lines.
    pub records: [usize; 5],
    /// Batch field 11: nginx's routes.
    pub routes: usize,
    /// Batch field 12: connection summaries.
    pub summaries: usize,
    /// Repeated items below them and in the health (capability names, stderr lines,
    /// summaries' bucket counts).
    pub nested: usize,
}

const LEN: u8 = 2;

impl RepeatedCounts {
    /// Walks the fields of `raw` along the shapes above without allocating.
    pub fn of(raw: &[u8]) -> Result<RepeatedCounts, WireError> {
        let mut counts = RepeatedCounts::default();
        let mut fields = Fields::new(raw, 0);
        while let Some(field) = fields.next_field()? {
            if field.wire_type != LEN {
                continue;
            }
            match field.number {
                5..=9 => counts.records[field.number as usize - 5] += 1,
                11 => counts.routes += 1,
                12 => counts.summaries += 1,
                _ => {}
            }
            if let Some(shape) = nested_shape(&BATCH, field.number) {
                counts.nested += count_items(&field, shape)?;
            }
        }
        Ok(counts)
    }

    pub fn items(&self) -> usize {
        self.records.iter().sum::<usize>() + self.routes + self.summaries + self.nested
    }

    fn reserved_batch(&self) -> Batch {
        let [connections, upstreams, processes, errors, access] = self.records;
        Batch {
            connections: Vec::with_capacity(connections),
            upstreams: Vec::with_capacity(upstreams),
            processes: Vec::with_capacity(processes),
            nginx_errors: Vec::with_capacity(errors),
            nginx_access: Vec::with_capacity(access),
            routes: Vec::with_capacity(self.routes),
            summaries: Vec::with_capacity(self.summaries),
            ..Default::default()
        }
    }
}

fn nested_shape(shape: &Shape, number: u32) -> Option<&'static Shape> {
    shape
        .nested
        .iter()
        .find_map(|&(n, nested)| (n == number).then_some(nested))
}

/// The repeated items inside one field of `shape`, at any depth (shapes nest a few levels,
/// statically: no recursion limit needed).
fn count_items(field: &Field, shape: &Shape) -> Result<usize, WireError> {
    let mut items = 0;
    let mut fields = Fields::new(field.payload, field.offset);
    while let Some(f) = fields.next_field()? {
        if shape.scalars.contains(&f.number) {
            items += scalars_in(&f);
            continue;
        }
        if f.wire_type != LEN {
            continue;
        }
        if shape.repeated.contains(&f.number) {
            items += 1;
        }
        if let Some(nested) = nested_shape(shape, f.number) {
            items += count_items(&f, nested)?;
        }
    }
    Ok(items)
}

/// Numbers one field of a repeated numeric field adds: one unpacked; packed, one per byte
/// that ends a varint (an upper bound for fixed-width numbers, which vigil does not use).
fn scalars_in(field: &Field) -> usize {
    match field.wire_type {
        LEN => field.payload.iter().filter(|&&b| b < 0x80).count(),
        _ => 1,
    }
}

/// One field as it sits on the wire; `payload` is its bytes when length-delimited.
struct Field<'a> {
    number: u32,
    wire_type: u8,
    payload: &'a [u8],
    /// Where the payload starts in the decompressed batch (for error messages).
    offset: usize,
}

/// The fields of one message, read the way prost reads them; what prost refuses is refused
/// here too (with the offset), and group wire types, which vigil's messages never use.
struct Fields<'a> {
    buf: &'a [u8],
    pos: usize,
    /// Offset of `buf` in the decompressed batch.
    base: usize,
}

impl<'a> Fields<'a> {
    fn new(buf: &'a [u8], base: usize) -> Self {
        Fields { buf, pos: 0, base }
    }

    fn malformed(&self, what: &'static str) -> WireError {
        WireError::Malformed {
            what,
            offset: self.base + self.pos,
        }
    }

    fn varint(&mut self) -> Result<u64, WireError> {
        let mut value = 0u64;
        for i in 0..10 {
            let Some(&byte) = self.buf.get(self.pos) else {
                return Err(self.malformed("truncated varint"));
            };
            // The tenth byte holds bit 63 only.
            if i == 9 && byte > 1 {
                return Err(self.malformed("varint over 64 bits"));
            }
            self.pos += 1;
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte < 0x80 {
                return Ok(value);
            }
        }
        unreachable!("the tenth byte either ends the varint or is refused")
    }

    fn take(&mut self, len: u64) -> Result<&'a [u8], WireError> {
        let rest = self.buf.len() - self.pos;
        if len > rest as u64 {
            return Err(self.malformed("length past the end of its message"));
        }
        let start = self.pos;
        self.pos += len as usize;
        Ok(&self.buf[start..self.pos])
    }

    fn next_field(&mut self) -> Result<Option<Field<'a>>, WireError> {
        if self.pos == self.buf.len() {
            return Ok(None);
        }
        let key_at = self.pos;
        let key = self.varint()?;
        let bad_key = |what| WireError::Malformed {
            what,
            offset: self.base + key_at,
        };
        let number = u32::try_from(key >> 3)
            .ok()
            .filter(|n| *n > 0 && key <= u64::from(u32::MAX))
            .ok_or_else(|| bad_key("invalid field key"))?;
        let wire_type = (key & 7) as u8;
        let payload = match wire_type {
            0 => self.varint().map(|_| &[][..])?,
            1 => self.take(8)?,
            LEN => {
                let len = self.varint()?;
                self.take(len)?
            }
            5 => self.take(4)?,
            3 | 4 => return Err(bad_key("group wire type")),
            _ => return Err(bad_key("invalid wire type")),
        };
        Ok(Some(Field {
            number,
            wire_type,
            offset: self.base + self.pos - payload.len(),
            payload,
        }))
    }
}

#[cfg(test)]
#[path = "decode_tests.rs"]
mod tests;
