//! Tests of `spool.rs`: order, bounds, restarts, atomic 0600 files, corrupt files set aside.
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

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn files_are_owner_only_and_no_temp_file_is_left() {
    use std::os::unix::fs::PermissionsExt;
    let dir = TempDir::new("spool-mode");
    let mut s = Spool::open(Some(dir.path().to_owned()), 0, 10_000).unwrap();
    let _ = push(&mut s, 3, 10);
    let files = names(dir.path());
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(files[0].ends_with(".3.batch"), "{files:?}");
    let mode = fs::metadata(dir.path().join(&files[0]))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn a_write_cut_short_is_not_taken_for_a_batch() {
    let dir = TempDir::new("spool-temp");
    fs::write(
        dir.path().join("000000000000000000000001.5.batch.tmp"),
        b"half",
    )
    .unwrap();
    let mut s = Spool::open(Some(dir.path().to_owned()), 0, 10_000).unwrap();
    assert!(s.is_empty());
    assert_eq!(s.front(), None);
    assert!(names(dir.path()).is_empty(), "the temp file is removed");
}

#[test]
fn an_unreadable_file_is_set_aside_counted_and_the_next_one_served() {
    let dir = TempDir::new("spool-unreadable");
    let mut s = Spool::open(Some(dir.path().to_owned()), 0, 10_000).unwrap();
    let _ = push(&mut s, 1, 10);
    let _ = push(&mut s, 2, 10);
    drop(s);
    // A directory where a batch file should be: read() fails even as root.
    let first = names(dir.path())[0].clone();
    fs::remove_file(dir.path().join(&first)).unwrap();
    fs::create_dir(dir.path().join(&first)).unwrap();
    let mut s = Spool::open(Some(dir.path().to_owned()), 0, 10_000).unwrap();
    assert_eq!(front_n(&mut s), Some(2));
    assert_eq!(s.corrupt.batches, 1);
    assert_eq!(s.corrupt.records, 1, "the lost records, from the file name");
    assert_eq!(s.len(), 1);
    assert!(names(dir.path()).contains(&format!("{first}.corrupt")));
}

#[test]
fn an_undecodable_batch_is_set_aside_and_kept_for_inspection() {
    let dir = TempDir::new("spool-aside");
    let mut s = Spool::open(Some(dir.path().to_owned()), 0, 10_000).unwrap();
    let _ = push(&mut s, 4, 10);
    let _ = push(&mut s, 5, 10);
    let bad = s.front().unwrap();
    s.set_aside(&bad.id);
    assert_eq!(front_n(&mut s), Some(5));
    assert_eq!((s.corrupt.batches, s.corrupt.records), (1, 4));
    assert_eq!(s.bytes(), 10, "no longer counts toward the bound");
    let kept = dir.path().join(format!("{}.4.batch.corrupt", bad.id));
    assert_eq!(fs::read(kept).unwrap(), vec![4; 10]);
    drop(s);
    let again = Spool::open(Some(dir.path().to_owned()), 0, 10_000).unwrap();
    assert_eq!(again.len(), 1, "a corrupt file is not read back as a batch");
}

#[test]
fn a_batch_stays_until_removed_by_id() {
    let dir = TempDir::new("spool-remove");
    let mut s = Spool::open(Some(dir.path().to_owned()), 0, 25).unwrap();
    let _ = push(&mut s, 1, 10);
    let _ = push(&mut s, 2, 10);
    let out = s.front().unwrap();
    assert_eq!(s.front().unwrap(), out, "front does not take it");
    // While batch 1 is out for delivery, a push drops it at the bound.
    let dropped = push(&mut s, 3, 10);
    assert_eq!(dropped.records, 1);
    assert!(!s.remove(&out.id), "already gone");
    assert_eq!(
        front_n(&mut s),
        Some(2),
        "batch 2 was not removed in its place"
    );
    let two = s.front().unwrap();
    assert!(s.remove(&two.id));
    assert_eq!(front_n(&mut s), Some(3));
    // In memory too.
    let mut m = Spool::open(None, 1000, 0).unwrap();
    let _ = push(&mut m, 7, 10);
    let _ = push(&mut m, 8, 10);
    let seven = m.front().unwrap();
    assert!(m.remove(&seven.id));
    assert_eq!(front_n(&mut m), Some(8));
    assert_eq!(m.bytes(), 10);
}
