//! The ingest write-ahead log: an accepted batch is on disk before the agent hears 200.
//!
//! Records (agent id, sequence, the batch body as received) are appended to segment files by
//! one writer thread that commits in groups: it takes every record waiting, writes them, calls
//! `fdatasync` once, then acknowledges them all, so concurrent agents share one sync. A segment
//! is deleted only when everything its batches yielded is safe elsewhere (Loki acknowledged it
//! or it sits in the Loki spool) — the caller says so with [`Wal::release`] — and at the next
//! [`Wal::checkpoint`], after the caller saved what it must remember of those batches (the
//! dedup state), so a batch re-sent after a crash is still known. At start,
//! [`Wal::open`] hands back every record still on disk for replay; a torn tail (a crash in
//! the middle of a write) ends the replay of its segment and is cut off.
//!
//! Record layout: `len: u32 LE | crc32(payload): u32 LE | payload`, payload =
//! `id_len: u16 LE | agent_id | sequence: u64 LE | body`.
use std::{
    collections::BTreeMap,
    fs::{self, File, OpenOptions},
    io::{self, Read, Write},
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
    sync::{mpsc, Arc, Mutex},
    thread::JoinHandle,
};

use tokio::sync::oneshot;
use tracing::{info, warn};

/// A segment is closed and a new one started past this size.
const SEGMENT_BYTES: u64 = 64 << 20;
/// Records taken into one group commit at most.
const GROUP_RECORDS: usize = 1024;
/// Largest record accepted (a batch body is bounded far below by `max_body_bytes`).
const MAX_RECORD: usize = 256 << 20;

#[derive(Debug, thiserror::Error)]
pub enum WalError {
    #[error("write-ahead log {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("write-ahead log is full ({bytes} bytes on disk, limit {limit}): Loki is behind; retry later")]
    Full { bytes: u64, limit: u64 },
    #[error("write-ahead log writer stopped")]
    Stopped,
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> WalError + '_ {
    move |source| WalError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Where a record lives: its segment. Segments are numbered in write order.
pub type SegmentId = u64;

/// One batch as it was accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalRecord {
    pub agent_id: String,
    pub sequence: u64,
    pub body: Vec<u8>,
}

struct Append {
    payload: Vec<u8>,
    done: oneshot::Sender<Result<SegmentId, WalError>>,
}

/// Segments on disk with their sizes, and how many records of each are not yet released.
#[derive(Default)]
struct Segments {
    sizes: BTreeMap<SegmentId, u64>,
    pending: BTreeMap<SegmentId, u64>,
    /// Fully released, deleted at the next checkpoint.
    released: Vec<SegmentId>,
    current: SegmentId,
}

impl Segments {
    fn bytes(&self) -> u64 {
        self.sizes.values().sum()
    }
}

pub struct Wal {
    dir: PathBuf,
    limit: u64,
    segments: Arc<Mutex<Segments>>,
    sender: Mutex<Option<mpsc::Sender<Append>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

fn segment_path(dir: &Path, id: SegmentId) -> PathBuf {
    dir.join(format!("{id:020}.wal"))
}

impl Wal {
    /// Opens (creating) the log in `dir` with a disk bound of `limit` bytes; returns it with the
    /// records left by an earlier run, oldest first, each with its segment.
    pub fn open(dir: &Path, limit: u64) -> Result<(Wal, Vec<(SegmentId, WalRecord)>), WalError> {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        let mut ids: Vec<SegmentId> = fs::read_dir(dir)
            .map_err(io_err(dir))?
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                name.strip_suffix(".wal")?.parse().ok()
            })
            .collect();
        ids.sort_unstable();
        let mut segments = Segments::default();
        let mut replay = Vec::new();
        for &id in &ids {
            let path = segment_path(dir, id);
            let (records, good_len) = read_segment(&path)?;
            truncate_torn_tail(&path, good_len)?;
            if records.is_empty() {
                let _ = fs::remove_file(&path);
                continue;
            }
            segments.sizes.insert(id, good_len);
            segments.pending.insert(id, records.len() as u64);
            replay.extend(records.into_iter().map(|r| (id, r)));
        }
        segments.current = ids.last().map_or(1, |last| last + 1);
        if !replay.is_empty() {
            info!(
                batches = replay.len(),
                "replaying batches accepted by an earlier run"
            );
        }
        let segments = Arc::new(Mutex::new(segments));
        let (tx, rx) = mpsc::channel();
        let writer = Writer::start(dir.to_owned(), segments.clone())?;
        let handle = std::thread::Builder::new()
            .name("vigil-wal".into())
            .spawn(move || writer.run(rx))
            .map_err(io_err(dir))?;
        Ok((
            Wal {
                dir: dir.to_owned(),
                limit,
                segments,
                sender: Mutex::new(Some(tx)),
                writer: Mutex::new(Some(handle)),
            },
            replay,
        ))
    }

    /// Appends a record and resolves once it is on disk (fdatasync), with its segment. Refuses
    /// when the log is at its bound: the agent keeps the batch and retries.
    pub async fn append(&self, record: &WalRecord) -> Result<SegmentId, WalError> {
        let bytes = self.bytes();
        if bytes >= self.limit {
            return Err(WalError::Full {
                bytes,
                limit: self.limit,
            });
        }
        let (done, wait) = oneshot::channel();
        let sent = self
            .sender
            .lock()
            .expect("wal sender lock")
            .as_ref()
            .map(|s| {
                s.send(Append {
                    payload: encode(record),
                    done,
                })
            });
        match sent {
            Some(Ok(())) => wait.await.unwrap_or(Err(WalError::Stopped)),
            _ => Err(WalError::Stopped),
        }
    }

    /// One record of `segment` is safe elsewhere; a segment with none left (and no longer
    /// written) goes at the next checkpoint.
    pub fn release(&self, segment: SegmentId) {
        let mut s = self.segments.lock().expect("wal segments lock");
        let Some(left) = s.pending.get_mut(&segment) else {
            return;
        };
        *left = left.saturating_sub(1);
        if *left == 0 && segment != s.current {
            s.pending.remove(&segment);
            s.released.push(segment);
        }
    }

    /// Deletes the released segments once `remember` saved what must outlive them; returns
    /// how many went. Nothing is deleted when `remember` fails.
    pub fn checkpoint(&self, remember: impl FnOnce() -> io::Result<()>) -> io::Result<usize> {
        let released = {
            let s = self.segments.lock().expect("wal segments lock");
            if s.released.is_empty() {
                return Ok(0);
            }
            s.released.clone()
        };
        remember()?;
        let mut s = self.segments.lock().expect("wal segments lock");
        for segment in &released {
            if let Err(e) = fs::remove_file(segment_path(&self.dir, *segment)) {
                warn!(segment, "cannot delete a released WAL segment: {e}");
            }
            s.sizes.remove(segment);
        }
        s.released.retain(|id| !released.contains(id));
        Ok(released.len())
    }

    /// A ticket for a record of `segment`: dropping it releases the record.
    pub fn ticket(self: &Arc<Self>, segment: SegmentId) -> Arc<WalTicket> {
        Arc::new(WalTicket {
            wal: self.clone(),
            segment,
        })
    }

    /// Bytes on disk.
    pub fn bytes(&self) -> u64 {
        self.segments.lock().expect("wal segments lock").bytes()
    }

    /// Stops the writer after what is queued; later appends fail.
    pub fn close(&self) {
        self.sender.lock().expect("wal sender lock").take();
        if let Some(h) = self.writer.lock().expect("wal writer lock").take() {
            let _ = h.join();
        }
    }
}

/// Held (shared) by everything an appended record still has in flight; the record is
/// released when the last holder drops it.
pub struct WalTicket {
    wal: Arc<Wal>,
    segment: SegmentId,
}

impl Drop for WalTicket {
    fn drop(&mut self) {
        self.wal.release(self.segment);
    }
}

impl PartialEq for WalTicket {
    fn eq(&self, other: &Self) -> bool {
        self.segment == other.segment
    }
}

impl std::fmt::Debug for WalTicket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WalTicket(segment {})", self.segment)
    }
}

/// The writer thread's side.
struct Writer {
    dir: PathBuf,
    segments: Arc<Mutex<Segments>>,
    file: File,
    written: u64,
}

impl Writer {
    fn start(dir: PathBuf, segments: Arc<Mutex<Segments>>) -> Result<Writer, WalError> {
        let current = segments.lock().expect("wal segments lock").current;
        let file = create_segment(&dir, current)?;
        Ok(Writer {
            dir,
            segments,
            file,
            written: 0,
        })
    }

    fn run(mut self, rx: mpsc::Receiver<Append>) {
        while let Ok(first) = rx.recv() {
            let mut group = vec![first];
            while group.len() < GROUP_RECORDS {
                match rx.try_recv() {
                    Ok(next) => group.push(next),
                    Err(_) => break,
                }
            }
            let result = self.commit(&group);
            for append in group {
                let _ = append.done.send(match &result {
                    Ok(id) => Ok(*id),
                    Err(e) => Err(WalError::Io {
                        path: self.dir.clone(),
                        source: io::Error::new(e.kind(), e.to_string()),
                    }),
                });
            }
        }
    }

    /// Writes the group, syncs once, and counts its records as pending in their segment.
    fn commit(&mut self, group: &[Append]) -> io::Result<SegmentId> {
        if self.written >= SEGMENT_BYTES {
            self.rotate()?;
        }
        let mut buf = Vec::with_capacity(group.iter().map(|a| a.payload.len() + 8).sum());
        for a in group {
            buf.extend_from_slice(&(a.payload.len() as u32).to_le_bytes());
            buf.extend_from_slice(&crc32fast::hash(&a.payload).to_le_bytes());
            buf.extend_from_slice(&a.payload);
        }
        self.file.write_all(&buf)?;
        self.file.sync_data()?;
        self.written += buf.len() as u64;
        let mut s = self.segments.lock().expect("wal segments lock");
        let id = s.current;
        *s.sizes.entry(id).or_default() += buf.len() as u64;
        *s.pending.entry(id).or_default() += group.len() as u64;
        Ok(id)
    }

    fn rotate(&mut self) -> io::Result<()> {
        let mut s = self.segments.lock().expect("wal segments lock");
        let finished = s.current;
        s.current += 1;
        let next = s.current;
        // A finished segment whose records were all released meanwhile goes at the next
        // checkpoint.
        if s.pending.get(&finished).is_none_or(|n| *n == 0) {
            s.pending.remove(&finished);
            s.released.push(finished);
        }
        drop(s);
        self.file = create_segment(&self.dir, next).map_err(|e| io::Error::other(e.to_string()))?;
        self.written = 0;
        Ok(())
    }
}

fn create_segment(dir: &Path, id: SegmentId) -> Result<File, WalError> {
    let path = segment_path(dir, id);
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(&path)
        .map_err(io_err(&path))?;
    // The new name must survive a crash too.
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))?;
    Ok(file)
}

fn encode(r: &WalRecord) -> Vec<u8> {
    let id = r.agent_id.as_bytes();
    let id = &id[..id.len().min(u16::MAX as usize)];
    let mut p = Vec::with_capacity(2 + id.len() + 8 + r.body.len());
    p.extend_from_slice(&(id.len() as u16).to_le_bytes());
    p.extend_from_slice(id);
    p.extend_from_slice(&r.sequence.to_le_bytes());
    p.extend_from_slice(&r.body);
    p
}

fn decode(p: &[u8]) -> Option<WalRecord> {
    let id_len = u16::from_le_bytes(p.get(..2)?.try_into().ok()?) as usize;
    let agent_id = std::str::from_utf8(p.get(2..2 + id_len)?).ok()?.to_owned();
    let seq_at = 2 + id_len;
    let sequence = u64::from_le_bytes(p.get(seq_at..seq_at + 8)?.try_into().ok()?);
    Some(WalRecord {
        agent_id,
        sequence,
        body: p[seq_at + 8..].to_vec(),
    })
}

/// The intact records of a segment and the length they span; reading stops at the first
/// record that is short, oversized or fails its checksum (a torn write).
fn read_segment(path: &Path) -> Result<(Vec<WalRecord>, u64), WalError> {
    let mut data = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut data))
        .map_err(io_err(path))?;
    let (mut at, mut records) = (0usize, Vec::new());
    while let Some(head) = data.get(at..at + 8) {
        let len = u32::from_le_bytes(head[..4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(head[4..].try_into().expect("4 bytes"));
        let Some(payload) = data.get(at + 8..at + 8 + len).filter(|_| len <= MAX_RECORD) else {
            break;
        };
        let Some(record) = (crc32fast::hash(payload) == crc)
            .then(|| decode(payload))
            .flatten()
        else {
            break;
        };
        records.push(record);
        at += 8 + len;
    }
    if at < data.len() {
        warn!(path = %path.display(), kept = at, dropped = data.len() - at, "WAL segment ends in a torn record (a crash mid-write, never acknowledged); cut off");
    }
    Ok((records, at as u64))
}

fn truncate_torn_tail(path: &Path, good_len: u64) -> Result<(), WalError> {
    let file = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(io_err(path))?;
    if file.metadata().map_err(io_err(path))?.len() > good_len {
        file.set_len(good_len).map_err(io_err(path))?;
        file.sync_all().map_err(io_err(path))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
