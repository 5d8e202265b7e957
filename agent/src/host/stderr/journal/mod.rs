//! A minimal, bounded reader of systemd journal files (systemd's "Journal File Format"), so the
//! agent gets a unit's last lines without running journalctl: it never executes what it did
//! not ship. Per file: look `_SYSTEMD_UNIT=<unit>` up in the data hash table, walk that DATA
//! object's entry list to its end, and read the newest entries' `MESSAGE=`. Regular and compact
//! files, keyed (SipHash) and older (Jenkins) hashes, ZSTD-compressed fields; XZ and LZ4 fields
//! are skipped and counted. Every offset is checked against the file before it is read, and
//! the reads per file are bounded (`Limits::journal_objects`).
mod file;
mod hash;

use std::{
    fs,
    path::{Path, PathBuf},
    time::SystemTime,
};

use tracing::warn;

use self::file::JournalFile;
use super::Limits;

const MAX_DIR_ENTRIES: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a journal file")]
    NotJournal { path: PathBuf },
    #[error("{path}: unsupported incompatible flags {flags:#x}")]
    Unsupported { path: PathBuf, flags: u32 },
    #[error("{path}: object at {offset}: {what}")]
    Corrupt {
        path: PathBuf,
        offset: u64,
        what: &'static str,
    },
    #[error("{path}: read bound of {limit} objects reached")]
    TooManyReads { path: PathBuf, limit: usize },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalLine {
    pub realtime_us: u64,
    pub seqnum: u64,
    /// The value after `MESSAGE=`, at most `max_line_bytes` and a few more.
    pub message: Vec<u8>,
}

#[derive(Debug, Default)]
pub struct UnitMessages {
    /// Oldest first, at most `max_lines`.
    pub lines: Vec<JournalLine>,
    /// Fields not decoded (XZ/LZ4, over a bound) and torn objects.
    pub skipped: u32,
    pub files_failed: u32,
}

/// The last messages of `unit` at or after `since_us` (Unix µs), from the newest journal
/// files under `dirs` (`<dir>/<machine-id>/system.journal` and its archived `system@*.journal`).
pub fn unit_messages(dirs: &[PathBuf], unit: &str, since_us: u64, limits: &Limits) -> UnitMessages {
    let mut out = UnitMessages::default();
    let field = format!("_SYSTEMD_UNIT={unit}");
    for path in journal_files(dirs).into_iter().take(limits.journal_files) {
        let found = JournalFile::open(&path, limits)
            .and_then(|mut f| f.messages(field.as_bytes(), since_us, limits));
        match found {
            Ok(found) => {
                out.skipped += found.skipped;
                out.lines.extend(found.lines);
            }
            Err(e) => {
                warn!("crash reason: journal file skipped: {e}");
                out.files_failed += 1;
            }
        }
        // Files go newest first, and rotation leaves only older entries in the next ones.
        if out.lines.len() >= limits.max_lines {
            break;
        }
    }
    out.lines.sort_by_key(|l| (l.realtime_us, l.seqnum));
    let excess = out.lines.len().saturating_sub(limits.max_lines);
    out.lines.drain(..excess);
    out
}

/// `system.journal` and `system@….journal` one directory down, newest first.
fn journal_files(dirs: &[PathBuf]) -> Vec<PathBuf> {
    let list = |dir: &Path| -> Vec<fs::DirEntry> {
        fs::read_dir(dir)
            .map(|rd| rd.flatten().take(MAX_DIR_ENTRIES).collect())
            .unwrap_or_default()
    };
    let mut files: Vec<(SystemTime, PathBuf)> = Vec::new();
    for machine in dirs.iter().flat_map(|d| list(d)) {
        if !machine.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        for entry in list(&machine.path()) {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let system = name == "system.journal"
                || (name.starts_with("system@") && name.ends_with(".journal"));
            if system {
                let modified = entry.metadata().and_then(|m| m.modified());
                files.push((modified.unwrap_or(SystemTime::UNIX_EPOCH), entry.path()));
            }
        }
    }
    files.sort_by_key(|f| std::cmp::Reverse(f.0));
    files.into_iter().map(|(_, p)| p).collect()
}

#[cfg(test)]
mod tests;
