//! One journal file: its header, and the objects it is read through (DATA, ENTRY,
//! ENTRY_ARRAY, the data hash table), each checked against the arena before use.
use std::{
    fs::File,
    io::Read,
    os::unix::fs::FileExt,
    path::{Path, PathBuf},
};

use tracing::warn;

use super::{
    hash::{jenkins_hash64, siphash24},
    JournalError, JournalLine, Limits,
};

const SIGNATURE: &[u8; 8] = b"LPKSHHRH";
const INCOMPATIBLE_KEYED_HASH: u32 = 1 << 2;
const INCOMPATIBLE_COMPACT: u32 = 1 << 4;
/// XZ, LZ4, keyed hash, ZSTD, compact: anything else changes the layout.
const INCOMPATIBLE_KNOWN: u32 = 0x1f;
pub(super) const OBJECT_DATA: u8 = 1;
const OBJECT_ENTRY: u8 = 3;
const OBJECT_ENTRY_ARRAY: u8 = 6;
const COMPRESSED_ZSTD: u8 = 1 << 2;
const COMPRESSED_MASK: u8 = 0x7;
/// Header fields up to `tail_entry_monotonic`: the oldest header there is.
const MIN_HEADER_SIZE: u64 = 208;
const ENTRY_ITEMS_AT: u64 = 64;
const ENTRY_ARRAY_ITEMS_AT: u64 = 24;
/// Fields of one entry looked at (journald writes a few dozen).
const MAX_ENTRY_ITEMS: u64 = 1024;
const MESSAGE: &[u8] = b"MESSAGE=";

pub(super) struct JournalFile {
    pub(super) file: File,
    pub(super) path: PathBuf,
    /// End of the arena (or of the file, if shorter): nothing past it is read.
    pub(super) end: u64,
    pub(super) header_size: u64,
    pub(super) compact: bool,
    pub(super) keyed: bool,
    pub(super) file_id: [u8; 16],
    pub(super) data_hash_table: (u64, u64),
    pub(super) tail_entry_realtime: u64,
    pub(super) reads_left: usize,
    pub(super) read_limit: usize,
}

pub(super) fn le64(buf: &[u8], at: usize) -> u64 {
    buf.get(at..at + 8)
        .map_or(0, |b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
}

pub(super) fn le32(buf: &[u8], at: usize) -> u32 {
    buf.get(at..at + 4)
        .map_or(0, |b| u32::from_le_bytes(b.try_into().expect("4 bytes")))
}

pub(super) struct FileMessages {
    pub(super) lines: Vec<JournalLine>,
    pub(super) skipped: u32,
}

impl JournalFile {
    pub(super) fn open(path: &Path, limits: &Limits) -> Result<Self, JournalError> {
        let io = |source| JournalError::Io {
            path: path.to_owned(),
            source,
        };
        let file = File::open(path).map_err(io)?;
        let size = file.metadata().map_err(io)?.len();
        let mut header = [0u8; 272];
        let want = size.min(header.len() as u64) as usize;
        file.read_exact_at(&mut header[..want], 0).map_err(io)?;
        let not_journal = || JournalError::NotJournal {
            path: path.to_owned(),
        };
        if (want as u64) < MIN_HEADER_SIZE || &header[..8] != SIGNATURE {
            return Err(not_journal());
        }
        let incompatible = le32(&header, 12);
        if incompatible & !INCOMPATIBLE_KNOWN != 0 {
            return Err(JournalError::Unsupported {
                path: path.to_owned(),
                flags: incompatible,
            });
        }
        let header_size = le64(&header, 88);
        if !(MIN_HEADER_SIZE..=size).contains(&header_size) {
            return Err(not_journal());
        }
        Ok(JournalFile {
            end: size.min(header_size.saturating_add(le64(&header, 96))),
            header_size,
            compact: incompatible & INCOMPATIBLE_COMPACT != 0,
            keyed: incompatible & INCOMPATIBLE_KEYED_HASH != 0,
            file_id: header[24..40].try_into().expect("16 bytes"),
            data_hash_table: (le64(&header, 104), le64(&header, 112)),
            tail_entry_realtime: le64(&header, 192),
            reads_left: limits.journal_objects,
            read_limit: limits.journal_objects,
            file,
            path: path.to_owned(),
        })
    }

    fn corrupt(&self, offset: u64, what: &'static str) -> JournalError {
        JournalError::Corrupt {
            path: self.path.clone(),
            offset,
            what,
        }
    }

    /// Up to `len` bytes at `offset`, never past the arena; counts against the read bound.
    fn read(&mut self, offset: u64, len: u64) -> Result<Vec<u8>, JournalError> {
        if self.reads_left == 0 {
            return Err(JournalError::TooManyReads {
                path: self.path.clone(),
                limit: self.read_limit,
            });
        }
        self.reads_left -= 1;
        if offset > self.end {
            return Err(self.corrupt(offset, "offset past the end"));
        }
        let mut buf = vec![0; len.min(self.end - offset) as usize];
        self.file
            .read_exact_at(&mut buf, offset)
            .map_err(|source| JournalError::Io {
                path: self.path.clone(),
                source,
            })?;
        Ok(buf)
    }

    /// The first `prefix` bytes of the object at `offset` (fewer if it is smaller), after
    /// checking its alignment, type and size; and its full size.
    fn object(
        &mut self,
        offset: u64,
        kind: u8,
        prefix: u64,
    ) -> Result<(Vec<u8>, u64), JournalError> {
        if !offset.is_multiple_of(8)
            || offset < self.header_size
            || offset.saturating_add(16) > self.end
        {
            return Err(self.corrupt(offset, "offset outside the arena"));
        }
        let mut buf = self.read(offset, prefix.max(16))?;
        if buf.len() < 16 || buf[0] != kind {
            return Err(self.corrupt(offset, "unexpected object type"));
        }
        let size = le64(&buf, 8);
        if size < 16 || offset.saturating_add(size) > self.end {
            return Err(self.corrupt(offset, "object size outside the arena"));
        }
        buf.truncate(size.min(buf.len() as u64) as usize);
        Ok((buf, size))
    }

    pub(super) fn data_payload_at(&self) -> u64 {
        if self.compact {
            72
        } else {
            64
        }
    }

    pub(super) fn messages(
        &mut self,
        field: &[u8],
        since_us: u64,
        limits: &Limits,
    ) -> Result<FileMessages, JournalError> {
        let mut out = FileMessages {
            lines: Vec::new(),
            skipped: 0,
        };
        if self.tail_entry_realtime != 0 && self.tail_entry_realtime < since_us {
            return Ok(out);
        }
        let Some(data) = self.find_data(field)? else {
            return Ok(out);
        };
        for entry in self.newest_entries(data, limits.max_lines)? {
            match self.message(entry, since_us, limits, &mut out.skipped) {
                Ok(Some(line)) => out.lines.push(line),
                Ok(None) => {}
                // An entry being written as we read, or damage: the others still count.
                Err(JournalError::Corrupt { .. }) => out.skipped += 1,
                Err(e @ JournalError::TooManyReads { .. }) => {
                    warn!(
                        "crash reason: {e}; keeping the {} lines read",
                        out.lines.len()
                    );
                    break;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// The DATA object holding exactly `payload`, through the data hash table.
    pub(super) fn find_data(&mut self, payload: &[u8]) -> Result<Option<u64>, JournalError> {
        let (table, table_size) = self.data_hash_table;
        let buckets = table_size / 16;
        if buckets == 0 || table < self.header_size || table.saturating_add(table_size) > self.end {
            return Err(self.corrupt(table, "data hash table outside the arena"));
        }
        let hash = if self.keyed {
            siphash24(payload, &self.file_id)
        } else {
            jenkins_hash64(payload)
        };
        let mut next = le64(&self.read(table + (hash % buckets) * 16, 8)?, 0);
        let at = self.data_payload_at();
        while next != 0 {
            let offset = next;
            let (obj, size) = self.object(offset, OBJECT_DATA, at + payload.len() as u64)?;
            let same = le64(&obj, 16) == hash
                && obj[1] & COMPRESSED_MASK == 0
                && size == at + payload.len() as u64
                && obj.get(at as usize..) == Some(payload);
            if same {
                return Ok(Some(offset));
            }
            next = le64(&obj, 24);
        }
        Ok(None)
    }

    /// Offsets of the last `count` entries that reference the DATA object, oldest first:
    /// its first entry is inline, the rest fill a chain of entry arrays in order.
    pub(super) fn newest_entries(
        &mut self,
        data: u64,
        count: usize,
    ) -> Result<Vec<u64>, JournalError> {
        let (obj, _) = self.object(data, OBJECT_DATA, 64)?;
        let (first, mut next, n_entries) = (le64(&obj, 40), le64(&obj, 48), le64(&obj, 56));
        if n_entries == 0 || count == 0 {
            return Ok(Vec::new());
        }
        let item = if self.compact { 4 } else { 8 };
        let mut arrays: Vec<(u64, u64)> = Vec::new();
        while next != 0 {
            let (array, size) = self.object(next, OBJECT_ENTRY_ARRAY, ENTRY_ARRAY_ITEMS_AT)?;
            let capacity = size.saturating_sub(ENTRY_ARRAY_ITEMS_AT) / item;
            arrays.push((next, capacity));
            next = le64(&array, 16);
        }
        let mut left = n_entries - 1;
        let filled: Vec<u64> = arrays
            .iter()
            .map(|&(_, capacity)| {
                let f = capacity.min(left);
                left -= f;
                f
            })
            .collect();
        let mut newest_first = Vec::with_capacity(count);
        for (&(array, _), &used) in arrays.iter().zip(&filled).rev() {
            let want = (count - newest_first.len()) as u64;
            if want == 0 {
                break;
            }
            let take = want.min(used);
            let start = array + ENTRY_ARRAY_ITEMS_AT + (used - take) * item;
            let items = self.read(start, take * item)?;
            newest_first.extend(items.chunks_exact(item as usize).rev().filter_map(|c| {
                let offset = if item == 4 {
                    u64::from(le32(c, 0))
                } else {
                    le64(c, 0)
                };
                (offset != 0).then_some(offset)
            }));
        }
        if newest_first.len() < count && first != 0 {
            newest_first.push(first);
        }
        newest_first.reverse();
        Ok(newest_first)
    }

    /// The entry's `MESSAGE=` value, or None if it has none or is older than `since_us`.
    fn message(
        &mut self,
        entry: u64,
        since_us: u64,
        limits: &Limits,
        skipped: &mut u32,
    ) -> Result<Option<JournalLine>, JournalError> {
        let (obj, size) = self.object(entry, OBJECT_ENTRY, ENTRY_ITEMS_AT)?;
        let (seqnum, realtime_us) = (le64(&obj, 16), le64(&obj, 24));
        if realtime_us < since_us || size < ENTRY_ITEMS_AT {
            return Ok(None);
        }
        let item = if self.compact { 4 } else { 16 };
        let n_items = ((size - ENTRY_ITEMS_AT) / item).min(MAX_ENTRY_ITEMS);
        let items = self.read(entry + ENTRY_ITEMS_AT, n_items * item)?;
        for c in items.chunks_exact(item as usize) {
            let data = if item == 4 {
                u64::from(le32(c, 0))
            } else {
                le64(c, 0)
            };
            let Some(payload) = self.field_prefix(data, limits)? else {
                *skipped += 1;
                continue;
            };
            if let Some(message) = payload.strip_prefix(MESSAGE) {
                return Ok(Some(JournalLine {
                    realtime_us,
                    seqnum,
                    message: message.to_vec(),
                }));
            }
        }
        Ok(None)
    }

    /// The start of a DATA object's payload (`FIELD=value`), decompressed if ZSTD; None when it
    /// cannot be decoded here (XZ, LZ4, over the size or window bound, a bad frame). A few
    /// bytes past the line bound are kept so the tail sees a longer line and marks the cut.
    fn field_prefix(
        &mut self,
        data: u64,
        limits: &Limits,
    ) -> Result<Option<Vec<u8>>, JournalError> {
        let at = self.data_payload_at();
        let keep = (MESSAGE.len() + limits.max_line_bytes + 4) as u64;
        let (obj, size) = self.object(data, OBJECT_DATA, at + keep)?;
        if size < at {
            return Err(self.corrupt(data, "DATA object smaller than its header"));
        }
        match obj[1] & COMPRESSED_MASK {
            0 => Ok(Some(obj[at as usize..].to_vec())),
            COMPRESSED_ZSTD if size - at <= limits.max_compressed_bytes => {
                let compressed = self.read(data + at, size - at)?;
                Ok(zstd_prefix(
                    &compressed,
                    keep as usize,
                    limits.max_zstd_window,
                ))
            }
            _ => Ok(None),
        }
    }
}

/// The first `max_out` bytes a ZSTD frame decodes to, decoding no more than that, with its
/// window (the memory it may claim) bounded.
fn zstd_prefix(compressed: &[u8], max_out: usize, max_window: u64) -> Option<Vec<u8>> {
    let mut decoder = ruzstd::decoding::FrameDecoder::new();
    decoder.set_max_window_size(max_window);
    let stream = ruzstd::decoding::StreamingDecoder::new_with_decoder(compressed, decoder).ok()?;
    let mut out = Vec::with_capacity(max_out);
    stream.take(max_out as u64).read_to_end(&mut out).ok()?;
    Some(out)
}
