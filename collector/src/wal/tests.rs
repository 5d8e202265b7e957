//! Tests of `wal.rs` against real files.
use super::*;

struct Dir(PathBuf);

impl Dir {
    fn new(tag: &str) -> Dir {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("vigil-wal-{tag}-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        Dir(path)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn record(n: u64) -> WalRecord {
    WalRecord {
        agent_id: format!("node-a/{}", n % 3),
        sequence: n,
        body: vec![n as u8; 100 + n as usize],
    }
}

fn wal_files(dir: &Path) -> usize {
    fs::read_dir(dir).unwrap().count()
}

#[tokio::test]
async fn appended_records_come_back_after_a_restart_in_order() {
    let dir = Dir::new("replay");
    let (wal, replay) = Wal::open(&dir.0, 1 << 30).unwrap();
    assert!(replay.is_empty());
    for n in 1..=50 {
        wal.append(&record(n)).await.unwrap();
    }
    drop(wal); // no close: as after a SIGKILL, only what fdatasync saw counts
    let (wal, replay) = Wal::open(&dir.0, 1 << 30).unwrap();
    let got: Vec<WalRecord> = replay.iter().map(|(_, r)| r.clone()).collect();
    assert_eq!(got, (1..=50).map(record).collect::<Vec<_>>());
    // Releasing every replayed record deletes their (old) segment.
    let segment = replay[0].0;
    for (id, _) in &replay {
        wal.release(*id);
    }
    assert!(
        segment_path(&dir.0, segment).exists(),
        "kept until a checkpoint"
    );
    let refused = wal.checkpoint(|| Err(io::Error::other("dedup state not saved")));
    assert!(refused.is_err() && segment_path(&dir.0, segment).exists());
    assert_eq!(wal.checkpoint(|| Ok(())).unwrap(), 1);
    assert!(!segment_path(&dir.0, segment).exists());
    wal.close();
}

#[tokio::test]
async fn a_torn_tail_is_cut_and_the_intact_records_kept() {
    let dir = Dir::new("torn");
    let (wal, _) = Wal::open(&dir.0, 1 << 30).unwrap();
    let id = wal.append(&record(1)).await.unwrap();
    wal.append(&record(2)).await.unwrap();
    wal.close();
    let path = segment_path(&dir.0, id);
    let intact = fs::metadata(&path).unwrap().len();
    // A crash in the middle of the next write: a header promising more than was written.
    let mut f = OpenOptions::new().append(true).open(&path).unwrap();
    f.write_all(&500u32.to_le_bytes()).unwrap();
    f.write_all(&[7u8; 30]).unwrap();
    drop(f);
    let (wal, replay) = Wal::open(&dir.0, 1 << 30).unwrap();
    assert_eq!(replay.len(), 2);
    assert_eq!(
        fs::metadata(&path).unwrap().len(),
        intact,
        "torn bytes cut off"
    );
    // A flipped bit fails the checksum: that record and what follows are not replayed.
    wal.close();
    let mut data = fs::read(&path).unwrap();
    let last = data.len() - 1;
    data[last] ^= 1;
    fs::write(&path, data).unwrap();
    let (_, replay) = Wal::open(&dir.0, 1 << 30).unwrap();
    assert_eq!(replay.len(), 1);
}

#[tokio::test]
async fn the_bound_refuses_new_records_and_release_frees_space() {
    let dir = Dir::new("full");
    let (wal, _) = Wal::open(&dir.0, 1000).unwrap();
    let mut ids = Vec::new();
    let full = loop {
        match wal.append(&record(100)).await {
            Ok(id) => ids.push(id),
            Err(e) => break e,
        }
    };
    assert!(matches!(full, WalError::Full { .. }), "{full}");
    assert!(ids.len() >= 4, "{} records fit in 1000 bytes", ids.len());
    wal.close();
    // After a restart the old segment is no longer current: releasing it frees the space.
    let (wal, replay) = Wal::open(&dir.0, 1000).unwrap();
    for (id, _) in replay {
        wal.release(id);
    }
    wal.checkpoint(|| Ok(())).unwrap();
    assert_eq!(wal.bytes(), 0);
    wal.append(&record(1)).await.unwrap();
    wal.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_share_group_commits() {
    let dir = Dir::new("group");
    let (wal, _) = Wal::open(&dir.0, 1 << 30).unwrap();
    let wal = Arc::new(wal);
    let tasks: Vec<_> = (1..=200)
        .map(|n| {
            let wal = wal.clone();
            tokio::spawn(async move { wal.append(&record(n)).await })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    wal.close();
    let (_, replay) = Wal::open(&dir.0, 1 << 30).unwrap();
    let mut seqs: Vec<u64> = replay.iter().map(|(_, r)| r.sequence).collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=200).collect::<Vec<_>>());
    assert_eq!(
        wal_files(&dir.0),
        2,
        "the old segment and the new current one"
    );
}
