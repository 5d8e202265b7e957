//! The journal reader against real journal files, written by systemd's own
//! `systemd-journal-remote` from export-format entries (installed by `cargo xtask setup`):
//! compact and regular layouts, keyed and Jenkins hashes, ZSTD fields, rotation, damage.
use std::{
    io::Write,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use super::{
    file::{le32, le64, JournalFile, OBJECT_DATA},
    hash::{jenkins_hash64, siphash24},
    *,
};
use std::{fs::File, time::SystemTime};

const UNIT: &str = "drupal-client4.service";
const BOOT: &str = "0123456789abcdef0123456789abcdef";

fn journal_remote() -> &'static str {
    [
        "/lib/systemd/systemd-journal-remote",
        "/usr/lib/systemd/systemd-journal-remote",
    ]
    .into_iter()
    .find(|p| Path::new(p).exists())
    .expect("systemd-journal-remote missing: `cargo xtask setup` installs it")
}

fn scratch(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("vigil-journal-{tag}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(dir.join("machine")).unwrap();
    dir
}

/// Entries `(unit, realtime µs, message)` written to `path` through journal-remote, with
/// `env` choosing the layout (SYSTEMD_JOURNAL_COMPACT, SYSTEMD_JOURNAL_KEYED_HASH).
fn write_journal(path: &Path, entries: &[(&str, u64, String)], env: &[(&str, &str)]) {
    let mut export = String::new();
    for (i, (unit, realtime, message)) in entries.iter().enumerate() {
        export.push_str(&format!(
            "__REALTIME_TIMESTAMP={realtime}\n__MONOTONIC_TIMESTAMP={}\n_BOOT_ID={BOOT}\n\
             _HOSTNAME=node1\n_TRANSPORT=stdout\n_SYSTEMD_UNIT={unit}\nMESSAGE={message}\n\n",
            i + 1
        ));
    }
    let mut child = Command::new(journal_remote())
        .arg(format!("--output={}", path.display()))
        .arg("-")
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(export.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success(), "journal-remote failed");
}

fn incompatible_flags(path: &Path) -> u32 {
    le32(&fs::read(path).unwrap(), 12)
}

const T0: u64 = 1_795_000_000_000_000;

/// An earlier run of the unit (before `since`), other units' noise, then this run's 25 lines
/// ending with the traceback.
fn crash_entries() -> Vec<(&'static str, u64, String)> {
    let mut e = vec![(
        UNIT,
        T0,
        "previous run: Traceback from yesterday".to_owned(),
    )];
    for i in 0..25u64 {
        e.push(("nginx.service", T0 + 10_000 + i * 10, format!("noise {i}")));
        e.push((UNIT, T0 + 10_005 + i * 10, format!("startup line {i}")));
    }
    let t = T0 + 20_000;
    e.push((UNIT, t, "Traceback (most recent call last):".into()));
    e.push(("cron.service", t + 1, "(root) CMD (run-parts)".into()));
    e.push((
        UNIT,
        t + 2,
        "  File \"/srv/app.py\", line 3, in <module>".into(),
    ));
    e.push((
        UNIT,
        t + 3,
        "ModuleNotFoundError: No module named 'flask'".into(),
    ));
    e
}

fn expected_tail() -> Vec<String> {
    let mut lines: Vec<String> = (8..25).map(|i| format!("startup line {i}")).collect();
    lines.push("Traceback (most recent call last):".into());
    lines.push("  File \"/srv/app.py\", line 3, in <module>".into());
    lines.push("ModuleNotFoundError: No module named 'flask'".into());
    lines
}

fn messages(dir: &Path, since: u64) -> (Vec<String>, UnitMessages) {
    let read = unit_messages(&[dir.to_owned()], UNIT, since, &Limits::default());
    let text = read
        .lines
        .iter()
        .map(|l| String::from_utf8_lossy(&l.message).into_owned())
        .collect();
    (text, read)
}

#[test]
fn a_units_last_messages_from_a_compact_keyed_file() {
    let dir = scratch("compact");
    let path = dir.join("machine/system.journal");
    write_journal(&path, &crash_entries(), &[]);
    // What systemd 252 writes by default: keyed hash, ZSTD, compact.
    assert_eq!(incompatible_flags(&path), 0x1c);
    let (lines, read) = messages(&dir, T0 + 1);
    assert_eq!(lines, expected_tail());
    assert_eq!((read.skipped, read.files_failed), (0, 0));
    let times: Vec<u64> = read.lines.iter().map(|l| l.realtime_us).collect();
    assert!(times.windows(2).all(|w| w[0] < w[1]), "oldest first");
}

#[test]
fn regular_layout_with_jenkins_hashes_reads_the_same() {
    let dir = scratch("regular");
    let path = dir.join("machine/system.journal");
    let env = [
        ("SYSTEMD_JOURNAL_COMPACT", "0"),
        ("SYSTEMD_JOURNAL_KEYED_HASH", "0"),
    ];
    write_journal(&path, &crash_entries(), &env);
    assert_eq!(
        incompatible_flags(&path),
        0x08,
        "ZSTD only: not compact, not keyed"
    );
    assert_eq!(messages(&dir, T0 + 1).0, expected_tail());
}

#[test]
fn lines_before_the_process_started_are_an_earlier_runs() {
    let dir = scratch("since");
    write_journal(&dir.join("machine/system.journal"), &crash_entries(), &[]);
    let (lines, _) = messages(&dir, T0 + 20_000);
    assert_eq!(lines[0], "Traceback (most recent call last):");
    assert_eq!(lines.len(), 3);
    let (all, _) = messages(&dir, 0);
    assert_eq!(all.len(), 20, "the line bound");
    assert!(messages(&dir, T0 + 30_000).0.is_empty(), "nothing since");
}

#[test]
fn a_long_message_is_zstd_compressed_decoded_and_cut() {
    let dir = scratch("zstd");
    let path = dir.join("machine/system.journal");
    let long = format!("RuntimeError: {}", "spam and eggs ".repeat(300));
    write_journal(&path, &[(UNIT, T0, long.clone())], &[]);
    let read = unit_messages(std::slice::from_ref(&dir), UNIT, 0, &Limits::default());
    assert_eq!(read.skipped, 0);
    let message = &read.lines[0].message;
    assert!(
        long.as_bytes().starts_with(message),
        "a prefix of the message"
    );
    assert!(
        message.len() > 512 && message.len() < 530,
        "read to just past the line bound"
    );
    // Proof the field was stored compressed: its bytes are not in the file.
    let raw = fs::read(&path).unwrap();
    assert!(!raw.windows(40).any(|w| w == &long.as_bytes()[100..140]));
    let limits = Limits {
        max_compressed_bytes: 8,
        ..Limits::default()
    };
    let read = unit_messages(&[dir], UNIT, 0, &limits);
    assert_eq!(
        (read.lines.len(), read.skipped),
        (0, 1),
        "over the bound: skipped, counted"
    );
}

#[test]
fn rotated_files_are_merged_newest_last() {
    let dir = scratch("rotated");
    let archived = dir.join("machine/system@0000-0001-0002.journal");
    let entries: Vec<_> = (0..15u64)
        .map(|i| (UNIT, T0 + i, format!("old {i}")))
        .collect();
    write_journal(&archived, &entries, &[]);
    let past = SystemTime::now() - std::time::Duration::from_secs(3600);
    File::options()
        .write(true)
        .open(&archived)
        .unwrap()
        .set_modified(past)
        .unwrap();
    let entries: Vec<_> = (0..10u64)
        .map(|i| (UNIT, T0 + 100 + i, format!("new {i}")))
        .collect();
    write_journal(&dir.join("machine/system.journal"), &entries, &[]);
    fs::write(dir.join("machine/user-1000.journal"), b"not read").unwrap();
    let (lines, read) = messages(&dir, 0);
    assert_eq!(read.files_failed, 0);
    let want: Vec<String> = (5..15)
        .map(|i| format!("old {i}"))
        .chain((0..10).map(|i| format!("new {i}")))
        .collect();
    assert_eq!(lines, want);
}

#[test]
fn stored_hashes_match_ours_for_every_uncompressed_field() {
    for (tag, env, keyed) in [
        ("hash-keyed", &[][..], true),
        (
            "hash-jenkins",
            &[("SYSTEMD_JOURNAL_KEYED_HASH", "0")][..],
            false,
        ),
    ] {
        let dir = scratch(tag);
        let path = dir.join("machine/system.journal");
        // Payloads of every length from 14 to ~70 bytes cover each tail case of both hashes.
        let entries: Vec<_> = (0..60)
            .map(|i| (UNIT, T0 + i, "x".repeat(i as usize)))
            .collect();
        write_journal(&path, &entries, env);
        let mut f = JournalFile::open(&path, &Limits::default()).unwrap();
        assert_eq!(f.keyed, keyed);
        let raw = fs::read(&path).unwrap();
        let (mut offset, tail, mut checked) = (f.header_size, le64(&raw, 136), 0);
        while offset <= tail {
            let size = le64(&raw, offset as usize + 8);
            if raw[offset as usize] == OBJECT_DATA && raw[offset as usize + 1] == 0 {
                let at = (offset + f.data_payload_at()) as usize;
                let payload = &raw[at..(offset + size) as usize];
                let ours = if keyed {
                    siphash24(payload, &f.file_id)
                } else {
                    jenkins_hash64(payload)
                };
                assert_eq!(
                    ours,
                    le64(&raw, offset as usize + 16),
                    "{:?}",
                    String::from_utf8_lossy(payload)
                );
                checked += 1;
            }
            offset += size.div_ceil(8) * 8;
        }
        assert!(checked > 60, "{checked} DATA objects checked");
        assert!(f
            .find_data(b"_SYSTEMD_UNIT=nope.service")
            .unwrap()
            .is_none());
    }
}

#[test]
fn damage_is_refused_within_the_bounds() {
    let dir = scratch("damage");
    let path = dir.join("machine/system.journal");
    write_journal(&path, &crash_entries(), &[]);
    let good = fs::read(&path).unwrap();
    let mut f = JournalFile::open(&path, &Limits::default()).unwrap();
    let data = f
        .find_data(format!("_SYSTEMD_UNIT={UNIT}").as_bytes())
        .unwrap()
        .unwrap();
    // 29 entries of the unit: one inline in the DATA object, then chained arrays of 4, 8, 16.
    let first_array = le64(&good, data as usize + 48);
    let mut last_array = first_array;
    while le64(&good, last_array as usize + 16) != 0 {
        last_array = le64(&good, last_array as usize + 16);
    }
    assert_ne!(first_array, last_array);
    let mut looped = good.clone();
    looped[last_array as usize + 16..][..8].copy_from_slice(&first_array.to_le_bytes());
    fs::write(&path, &looped).unwrap();
    let (lines, read) = messages(&dir, 0);
    assert_eq!(
        (lines.len(), read.files_failed),
        (0, 1),
        "a looping chain hits the read bound"
    );

    let mut unknown = good.clone();
    unknown[12] |= 0x20;
    fs::write(&path, &unknown).unwrap();
    assert!(matches!(
        JournalFile::open(&path, &Limits::default()),
        Err(JournalError::Unsupported { .. })
    ));

    let mut wild = good.clone();
    wild[data as usize + 48..][..8].copy_from_slice(&(u64::MAX - 7).to_le_bytes());
    fs::write(&path, &wild).unwrap();
    assert_eq!(
        messages(&dir, 0).1.files_failed,
        1,
        "an offset past the end"
    );

    fs::write(&path, &good[..4096]).unwrap();
    assert_eq!(messages(&dir, 0).1.files_failed, 1, "truncated");
    fs::write(&path, b"LPKSHHRH but not a journal").unwrap();
    assert!(matches!(
        JournalFile::open(&path, &Limits::default()),
        Err(JournalError::NotJournal { .. })
    ));
}
