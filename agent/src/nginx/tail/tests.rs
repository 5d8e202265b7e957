//! Tests of `tail.rs`.
use super::*;
use crate::test_support::TempDir;
use std::fs::OpenOptions;
use std::io::Write;
use std::sync::Arc;

fn append(path: &Path, data: &[u8]) {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap()
        .write_all(data)
        .unwrap();
}

fn texts(lines: Vec<TailLine>) -> Vec<(String, bool)> {
    lines.into_iter().map(|l| (l.text, l.truncated)).collect()
}

fn full(s: &str) -> (String, bool) {
    (s.to_string(), false)
}

fn cut(s: &str) -> (String, bool) {
    (s.to_string(), true)
}

#[test]
fn partial_lines_wait_for_their_newline() {
    let dir = TempDir::new("tail");
    let path = dir.0.join("access.log");
    append(&path, b"old\n");
    let mut tail = LogTail::open_at_end(&path);
    assert_eq!(tail.poll().unwrap(), []);
    append(&path, b"a\nb");
    assert_eq!(texts(tail.poll().unwrap()), [full("a")]);
    assert_eq!(tail.poll().unwrap(), []);
    append(&path, b"c\n\n");
    assert_eq!(texts(tail.poll().unwrap()), [full("bc"), full("")]);

    let mut from_start = LogTail::open_from_start(&path);
    assert_eq!(
        texts(from_start.poll().unwrap()),
        [full("old"), full("a"), full("bc"), full("")]
    );
}

#[test]
fn missing_file_is_read_from_start_once_it_appears() {
    let dir = TempDir::new("tail");
    let path = dir.0.join("later.log");
    let mut tail = LogTail::open_at_end(&path);
    assert_eq!(tail.poll().unwrap(), []);
    append(&path, b"first\n");
    assert_eq!(texts(tail.poll().unwrap()), [full("first")]);
    assert_eq!(tail.path(), path);
}

#[test]
fn rename_rotation_finishes_old_file_then_follows_new_one() {
    let dir = TempDir::new("tail");
    let path = dir.0.join("error.log");
    append(&path, b"a\n");
    let mut tail = LogTail::open_from_start(&path);
    assert_eq!(texts(tail.poll().unwrap()), [full("a")]);

    // logrotate renames; nginx keeps writing the old inode until USR1.
    let mut old = OpenOptions::new().append(true).open(&path).unwrap();
    fs::rename(&path, dir.0.join("error.log.1")).unwrap();
    old.write_all(b"b\n").unwrap();
    assert_eq!(texts(tail.poll().unwrap()), [full("b")]);
    old.write_all(b"c\npart").unwrap();
    append(&path, b"new\n");
    assert_eq!(
        texts(tail.poll().unwrap()),
        [full("c"), cut("part"), full("new")]
    );
    append(&path, b"next\n");
    assert_eq!(texts(tail.poll().unwrap()), [full("next")]);
}

#[test]
fn copytruncate_restarts_at_zero() {
    let dir = TempDir::new("tail");
    let path = dir.0.join("access.log");
    append(&path, b"aaaa\nbbbb\n");
    let mut tail = LogTail::open_from_start(&path);
    assert_eq!(tail.poll().unwrap().len(), 2);
    OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(0)
        .unwrap();
    append(&path, b"c\n");
    assert_eq!(texts(tail.poll().unwrap()), [full("c")]);
}

#[test]
fn deleted_file_is_released_and_recreated_one_followed() {
    let dir = TempDir::new("tail");
    let path = dir.0.join("x.log");
    append(&path, b"a\n");
    let mut tail = LogTail::open_from_start(&path);
    assert_eq!(tail.poll().unwrap().len(), 1);
    fs::remove_file(&path).unwrap();
    assert_eq!(tail.poll().unwrap(), []);
    assert!(tail.open.is_none());
    append(&path, b"b\n");
    assert_eq!(texts(tail.poll().unwrap()), [full("b")]);
}

#[test]
fn long_lines_are_cut_and_the_rest_skipped() {
    let dir = TempDir::new("tail");
    let path = dir.0.join("long.log");
    let mut tail = LogTail::new(&path, StartAt::End, 8);
    append(&path, b"0123456789abc\n01234567\nok\n0123456789");
    assert_eq!(
        texts(tail.poll().unwrap()),
        [
            cut("01234567"),
            full("01234567"),
            full("ok"),
            cut("01234567")
        ]
    );
    append(&path, b"still the same line\nnext\n");
    assert_eq!(texts(tail.poll().unwrap()), [full("next")]);
}

#[test]
fn invalid_utf8_is_replaced_and_cuts_respect_characters() {
    let dir = TempDir::new("tail");
    let path = dir.0.join("bytes.log");
    let mut tail = LogTail::new(&path, StartAt::Beginning, 4);
    append(&path, b"a\xffb\nabc\xc3\xa9z\n");
    assert_eq!(
        texts(tail.poll().unwrap()),
        [full("a\u{fffd}b"), cut("abc")]
    );
}

#[test]
fn a_log_inside_a_root_rotates_there_and_never_follows_a_symlink_out() {
    let outside = TempDir::new("outside");
    let host_log = outside.0.join("secret.log");
    append(&host_log, b"host secret\n");
    let dir = TempDir::new("tail-root");
    let logs = dir.0.join("var/log/nginx");
    fs::create_dir_all(&logs).unwrap();
    append(&logs.join("access.log"), b"a\n");
    let root = Arc::new(RootDir::open(&dir.0).unwrap());
    let in_root = Path::new("/var/log/nginx/access.log");
    let mut tail = LogTail::in_root(root, in_root, StartAt::Beginning);
    assert_eq!(tail.path(), in_root);
    assert_eq!(texts(tail.poll().unwrap()), [full("a")]);

    // Rotation by rename, then a symlink to a host file where the new log should be.
    fs::rename(logs.join("access.log"), logs.join("access.log.1")).unwrap();
    std::os::unix::fs::symlink(&host_log, logs.join("access.log")).unwrap();
    append(&host_log, b"more host secret\n");
    assert_eq!(
        tail.poll().unwrap(),
        [],
        "old file finished, link leads nowhere inside"
    );
    append(&host_log, b"even more\n");
    assert_eq!(tail.poll().unwrap(), []);

    // A real file again: followed from its start.
    fs::remove_file(logs.join("access.log")).unwrap();
    append(&logs.join("access.log"), b"b\n");
    assert_eq!(texts(tail.poll().unwrap()), [full("b")]);
}

#[test]
fn a_backlog_is_read_a_bounded_slice_per_poll() {
    let dir = TempDir::new("tail");
    let path = dir.0.join("access.log");
    let line = [b'x'; 99];
    let mut backlog = Vec::new();
    for _ in 0..30_000 {
        backlog.extend_from_slice(&line);
        backlog.push(b'\n');
    }
    append(&path, &backlog);
    let mut tail = LogTail::open_from_start(&path);
    let mut polls = Vec::new();
    loop {
        let n = tail.poll().unwrap().len();
        if n == 0 {
            break;
        }
        polls.push(n);
    }
    assert_eq!(polls.iter().sum::<usize>(), 30_000, "nothing lost");
    assert!(polls.len() >= 3, "3 MB over several polls: {polls:?}");
    assert!(
        polls
            .iter()
            .all(|&n| n * 100 <= MAX_BYTES_PER_POLL + READ_CHUNK),
        "{polls:?}"
    );
}
