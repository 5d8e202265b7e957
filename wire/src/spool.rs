//! Bounded spool of encoded batches waiting for delivery (agent → collector, collector →
//! Loki): memory first, then files under a state directory, oldest first. What the bound
//! drops is counted, never silent; batches on disk survive a restart and are sent first.
//!
//! A batch leaves the spool only when its sender says it was delivered (`remove`), so a
//! crash mid-delivery re-sends it. Files are written whole or not at all (temp file, fsync,
//! rename, fsync of the directory), owner-only (0600); a file that cannot be read or decoded
//! is renamed `*.corrupt`, kept for inspection, and counted (`corrupt`).
use std::{
    collections::VecDeque,
    fs,
    io::Write,
    os::unix::fs::{DirBuilderExt, OpenOptionsExt},
    path::{Path, PathBuf},
};

use tracing::warn;

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("spool directory {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// One encoded batch. Its id, minted by the spool, orders batches across restarts and names
/// its file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spooled {
    pub id: String,
    /// What the batch holds (records, lines), so that a drop is counted in them too. Kept
    /// in the file name on disk: `{id}.{records}.batch`.
    pub records: u64,
    pub body: Vec<u8>,
}

/// Batches lost: by the bound (by one call, or in total since the spool was opened), or set
/// aside as corrupt.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Dropped {
    pub batches: u64,
    pub records: u64,
    pub bytes: u64,
}

impl Dropped {
    fn add(&mut self, records: u64, bytes: u64) {
        self.batches += 1;
        self.records += records;
        self.bytes += bytes;
    }
}

pub struct Spool {
    memory: VecDeque<Spooled>,
    memory_bytes: usize,
    memory_limit: usize,
    dir: Option<PathBuf>,
    /// Files on disk with their sizes, oldest first (names sort by creation order).
    disk: VecDeque<(PathBuf, u64)>,
    disk_bytes: u64,
    disk_limit: u64,
    /// The next id to mint: above every id on disk and at least the clock (µs), so ids keep
    /// their order across restarts even if the clock steps back.
    next_id: u128,
    /// Everything the bound dropped since the spool was opened.
    pub dropped: Dropped,
    /// Batches set aside since the spool was opened: unreadable files, or batches the
    /// sender could not decode (`set_aside`).
    pub corrupt: Dropped,
}

const BATCH_EXTENSION: &str = "batch";
/// A file being written; it becomes `*.batch` by an atomic rename.
const TEMP_EXTENSION: &str = "tmp";
const CORRUPT_EXTENSION: &str = "corrupt";

fn now_micros() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros())
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SpoolError + '_ {
    move |source| SpoolError::Io {
        path: path.to_owned(),
        source,
    }
}

fn has_extension(path: &Path, extension: &str) -> bool {
    path.extension().is_some_and(|x| x == extension)
}

impl Spool {
    /// `dir` = None keeps everything in memory (tests, or no writable state directory);
    /// `memory_limit` = 0 sends every batch straight to disk.
    pub fn open(
        dir: Option<PathBuf>,
        memory_limit: usize,
        disk_limit: u64,
    ) -> Result<Self, SpoolError> {
        let mut spool = Spool {
            memory: VecDeque::new(),
            memory_bytes: 0,
            memory_limit,
            dir,
            disk: VecDeque::new(),
            disk_bytes: 0,
            disk_limit,
            next_id: now_micros(),
            dropped: Dropped::default(),
            corrupt: Dropped::default(),
        };
        if let Some(dir) = spool.dir.clone() {
            // Owner-only when we create it: spooled batches are logs and telemetry.
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&dir)
                .map_err(io(&dir))?;
            let mut files = Vec::new();
            for entry in fs::read_dir(&dir).map_err(io(&dir))?.flatten() {
                let path = entry.path();
                if has_extension(&path, BATCH_EXTENSION) {
                    files.push((path, entry.metadata().map(|m| m.len()).unwrap_or(0)));
                } else if has_extension(&path, TEMP_EXTENSION) {
                    // A write cut short by a crash: its batch was never spooled.
                    warn!("removing {}, a spool write cut short", path.display());
                    let _ = fs::remove_file(&path);
                }
            }
            files.sort();
            let newest = files
                .last()
                .and_then(|(p, _)| parse_name(p).0.parse::<u128>().ok());
            spool.next_id = spool.next_id.max(newest.map_or(0, |n| n + 1));
            spool.disk_bytes = files.iter().map(|(_, n)| n).sum();
            spool.disk = files.into();
        }
        Ok(spool)
    }

    pub fn len(&self) -> usize {
        self.memory.len() + self.disk.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn bytes(&self) -> u64 {
        self.memory_bytes as u64 + self.disk_bytes
    }

    /// Queue a batch; spills the oldest memory batches to disk past the memory limit (the
    /// newest stays, unless there is no memory tier), and drops the oldest batches past the
    /// disk limit. Returns what this call dropped.
    pub fn push(&mut self, records: u64, body: Vec<u8>) -> Dropped {
        let batch = Spooled {
            id: format!("{:024}", self.next_id),
            records,
            body,
        };
        self.next_id += 1;
        let mut dropped = Dropped::default();
        self.memory_bytes += batch.body.len();
        self.memory.push_back(batch);
        while self.memory_bytes > self.memory_limit
            && (self.memory.len() > 1 || self.memory_limit == 0)
        {
            let oldest = self.memory.pop_front().expect("non-empty");
            self.memory_bytes -= oldest.body.len();
            self.spill(oldest, &mut dropped);
        }
        dropped
    }

    fn spill(&mut self, batch: Spooled, dropped: &mut Dropped) {
        let size = batch.body.len() as u64;
        let Some(dir) = self.dir.clone() else {
            return self.drop_batch(batch.records, size, dropped);
        };
        while self.disk_bytes + size > self.disk_limit {
            let Some((oldest, oldest_size)) = self.disk.pop_front() else {
                break;
            };
            let _ = fs::remove_file(&oldest);
            self.disk_bytes -= oldest_size;
            self.drop_batch(parse_name(&oldest).1, oldest_size, dropped);
        }
        if self.disk_bytes + size > self.disk_limit {
            return self.drop_batch(batch.records, size, dropped);
        }
        let name = format!("{}.{}.{BATCH_EXTENSION}", batch.id, batch.records);
        match write_atomically(&dir, &name, &batch.body) {
            Ok(path) => {
                self.disk_bytes += size;
                self.disk.push_back((path, size));
            }
            Err(e) => {
                warn!(
                    "cannot spool to {}: {e}; batch dropped",
                    dir.join(&name).display()
                );
                self.drop_batch(batch.records, size, dropped);
            }
        }
    }

    fn drop_batch(&mut self, records: u64, bytes: u64, dropped: &mut Dropped) {
        self.dropped.add(records, bytes);
        dropped.add(records, bytes);
    }

    /// The oldest batch (disk before memory), without removing it. A file that cannot be
    /// read is set aside (and counted) and the next one returned.
    pub fn front(&mut self) -> Option<Spooled> {
        while let Some((path, _)) = self.disk.front() {
            let (id, records) = parse_name(path);
            match fs::read(path) {
                Ok(body) => return Some(Spooled { id, records, body }),
                Err(e) => {
                    warn!("unreadable spool file {}: {e}", path.display());
                    self.set_aside(&id);
                }
            }
        }
        self.memory.front().cloned()
    }

    /// Removes batch `id` once it was delivered (or refused for good); whether it was still
    /// here (the bound may have dropped it meanwhile). By id, not position: while a batch is
    /// out for delivery, pushes may drop it and make another batch the oldest.
    pub fn remove(&mut self, id: &str) -> bool {
        if let Some(i) = self.disk.iter().position(|(p, _)| parse_name(p).0 == id) {
            let (path, size) = self.disk.remove(i).expect("found");
            // Forgotten even if the file stays: at worst a restart sends it again.
            if let Err(e) = fs::remove_file(&path) {
                warn!("cannot remove delivered spool file {}: {e}", path.display());
            }
            self.disk_bytes = self.disk_bytes.saturating_sub(size);
            return true;
        }
        if let Some(i) = self.memory.iter().position(|b| b.id == id) {
            let batch = self.memory.remove(i).expect("found");
            self.memory_bytes -= batch.body.len();
            return true;
        }
        false
    }

    /// Removes the oldest batch (what `front` returned, if no push dropped it meanwhile:
    /// prefer `remove`).
    pub fn pop(&mut self) {
        if let Some((path, _)) = self.disk.front() {
            let id = parse_name(path).0;
            self.remove(&id);
        } else if let Some(b) = self.memory.pop_front() {
            self.memory_bytes -= b.body.len();
        }
    }

    /// Takes batch `id` out of the spool as corrupt (its sender cannot decode it, or its file
    /// cannot be read) and counts it in `corrupt`. On disk it is renamed `*.corrupt` and kept
    /// for inspection; it no longer counts toward the disk bound.
    pub fn set_aside(&mut self, id: &str) {
        if let Some(i) = self.disk.iter().position(|(p, _)| parse_name(p).0 == id) {
            let (path, size) = self.disk.remove(i).expect("found");
            self.disk_bytes = self.disk_bytes.saturating_sub(size);
            self.corrupt.add(parse_name(&path).1, size);
            let mut aside = path.clone().into_os_string();
            aside.push(format!(".{CORRUPT_EXTENSION}"));
            match fs::rename(&path, &aside) {
                Ok(()) => warn!("spool file {} set aside as corrupt", path.display()),
                Err(e) => {
                    warn!("cannot set aside {}: {e}; removing it", path.display());
                    let _ = fs::remove_file(&path);
                }
            }
        } else if let Some(i) = self.memory.iter().position(|b| b.id == id) {
            let batch = self.memory.remove(i).expect("found");
            self.memory_bytes -= batch.body.len();
            self.corrupt.add(batch.records, batch.body.len() as u64);
        }
    }

    /// At shutdown: everything still in memory goes to disk, so a restart resends it.
    pub fn persist(&mut self) -> Dropped {
        let mut dropped = Dropped::default();
        while let Some(batch) = self.memory.pop_front() {
            self.memory_bytes -= batch.body.len();
            self.spill(batch, &mut dropped);
        }
        dropped
    }
}

/// Writes `dir/name` whole or not at all: a temp file (0600) synced to disk, then renamed, and
/// the rename made durable by syncing the directory.
fn write_atomically(dir: &Path, name: &str, body: &[u8]) -> std::io::Result<PathBuf> {
    let path = dir.join(name);
    let temp = dir.join(format!("{name}.{TEMP_EXTENSION}"));
    let written = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temp)
        .and_then(|mut file| {
            file.write_all(body)?;
            file.sync_all()
        })
        .and_then(|()| fs::rename(&temp, &path));
    if let Err(e) = written {
        let _ = fs::remove_file(&temp);
        return Err(e);
    }
    // The batch is in place either way; without this sync a power loss may undo the rename.
    if let Err(e) = fs::File::open(dir).and_then(|d| d.sync_all()) {
        warn!("cannot sync spool directory {}: {e}", dir.display());
    }
    Ok(path)
}

/// `{id}.{records}.batch` → (id, records); a name without the count reads as 0 records.
fn parse_name(path: &Path) -> (String, u64) {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    match stem.rsplit_once('.') {
        Some((id, records)) => match records.parse() {
            Ok(records) => (id.to_owned(), records),
            Err(_) => (stem, 0),
        },
        None => (stem, 0),
    }
}

#[cfg(test)]
#[path = "spool_tests.rs"]
mod tests;
