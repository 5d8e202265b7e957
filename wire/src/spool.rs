//! Bounded spool of encoded batches waiting for delivery (agent → collector, collector →
//! Loki): memory first, then files under a state directory, oldest first. What the bound
//! drops is counted, never silent; batches on disk survive a restart and are sent first.
use std::{
    collections::VecDeque,
    fs,
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

/// What the bound dropped: by one call, or in total since the spool was opened.
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
}

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
        };
        if let Some(dir) = spool.dir.clone() {
            fs::create_dir_all(&dir).map_err(io(&dir))?;
            let mut files: Vec<(PathBuf, u64)> = fs::read_dir(&dir)
                .map_err(io(&dir))?
                .flatten()
                .filter(|e| e.path().extension().is_some_and(|x| x == "batch"))
                .map(|e| (e.path(), e.metadata().map(|m| m.len()).unwrap_or(0)))
                .collect();
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
        let path = dir.join(format!("{}.{}.batch", batch.id, batch.records));
        match fs::write(&path, &batch.body) {
            Ok(()) => {
                self.disk_bytes += size;
                self.disk.push_back((path, size));
            }
            Err(e) => {
                warn!("cannot spool to {}: {e}; batch dropped", path.display());
                self.drop_batch(batch.records, size, dropped);
            }
        }
    }

    fn drop_batch(&mut self, records: u64, bytes: u64, dropped: &mut Dropped) {
        self.dropped.add(records, bytes);
        dropped.add(records, bytes);
    }

    /// The oldest batch (disk before memory), without removing it.
    pub fn front(&mut self) -> Option<Spooled> {
        while let Some((path, _)) = self.disk.front() {
            match fs::read(path) {
                Ok(body) => {
                    let (id, records) = parse_name(path);
                    return Some(Spooled { id, records, body });
                }
                Err(e) => {
                    warn!("unreadable spool file {}: {e}; skipped", path.display());
                    self.pop();
                }
            }
        }
        self.memory.front().cloned()
    }

    /// Remove the batch `front` returned, once it was delivered (or refused for good).
    pub fn pop(&mut self) {
        if let Some((path, size)) = self.disk.pop_front() {
            let _ = fs::remove_file(&path);
            self.disk_bytes = self.disk_bytes.saturating_sub(size);
        } else if let Some(b) = self.memory.pop_front() {
            self.memory_bytes -= b.body.len();
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
mod tests {
    use super::*;

    /// A fresh directory under the system temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> Self {
            let path = std::env::temp_dir().join(format!("vigil-{tag}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&path);
            fs::create_dir_all(&path).unwrap();
            TempDir(path)
        }
        fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    /// Batch number `n`: `n` records of `size` bytes of the value `n`.
    fn push(s: &mut Spool, n: u32, size: usize) -> Dropped {
        s.push(u64::from(n), vec![n as u8; size])
    }

    fn front_n(s: &mut Spool) -> Option<u32> {
        s.front().map(|b| b.body[0].into())
    }

    #[test]
    fn spills_to_disk_and_keeps_order() {
        let dir = TempDir::new("spool");
        let mut s = Spool::open(Some(dir.path().to_owned()), 250, 10_000).unwrap();
        for id in 1..=5 {
            let _ = push(&mut s, id, 100);
        }
        assert_eq!(s.len(), 5);
        assert_eq!(s.bytes(), 500);
        for id in 1..=5 {
            assert_eq!(front_n(&mut s), Some(id));
            s.pop();
        }
        assert!(s.is_empty());
        assert_eq!(s.dropped.batches, 0);
    }

    #[test]
    fn the_bound_drops_the_oldest_and_counts_it() {
        let dir = TempDir::new("spool-bound");
        let mut s = Spool::open(Some(dir.path().to_owned()), 100, 250).unwrap();
        let mut by_calls = Dropped::default();
        for id in 1..=6 {
            let d = push(&mut s, id, 100);
            by_calls.batches += d.batches;
            by_calls.records += d.records;
            by_calls.bytes += d.bytes;
        }
        // 1 in memory (6), 2 on disk (4, 5); 1, 2, 3 dropped.
        assert_eq!(s.dropped.batches, 3);
        assert_eq!(s.dropped.bytes, 300);
        assert_eq!(
            s.dropped.records,
            1 + 2 + 3,
            "records counted, read back from disk"
        );
        assert_eq!(by_calls, s.dropped);
        assert_eq!(front_n(&mut s), Some(4));
    }

    #[test]
    fn persisted_batches_survive_a_restart() {
        let dir = TempDir::new("spool-restart");
        let mut s = Spool::open(Some(dir.path().to_owned()), 1 << 20, 1 << 20).unwrap();
        let _ = push(&mut s, 1, 10);
        let _ = push(&mut s, 2, 10);
        let _ = s.persist();
        drop(s);
        let mut again = Spool::open(Some(dir.path().to_owned()), 1 << 20, 1 << 20).unwrap();
        assert_eq!(again.len(), 2);
        assert_eq!(front_n(&mut again), Some(1));
        assert_eq!(again.front().unwrap().records, 1);
        let _ = push(&mut again, 3, 10);
        again.pop();
        again.pop();
        assert_eq!(
            front_n(&mut again),
            Some(3),
            "new ids sort after the old ones"
        );
    }

    #[test]
    fn without_a_directory_overflow_is_dropped_and_counted() {
        let mut s = Spool::open(None, 100, 0).unwrap();
        let _ = push(&mut s, 1, 80);
        let _ = push(&mut s, 2, 80);
        assert_eq!(s.len(), 1);
        assert_eq!(s.dropped.batches, 1);
    }

    #[test]
    fn without_a_memory_tier_every_batch_is_on_disk() {
        let dir = TempDir::new("spool-disk-only");
        let mut s = Spool::open(Some(dir.path().to_owned()), 0, 10_000).unwrap();
        let _ = push(&mut s, 7, 10);
        drop(s);
        let mut again = Spool::open(Some(dir.path().to_owned()), 0, 10_000).unwrap();
        assert_eq!(front_n(&mut again), Some(7), "survives without persist()");
    }
}
