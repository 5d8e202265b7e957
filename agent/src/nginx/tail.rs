//! Follows one log file by polling (std only), surviving logrotate's
//! rename-and-create and copytruncate rotations. A file named by a master's configuration is
//! followed inside that master's root: each open and rotation check resolves its path there
//! again (`in_root`), so a symlink put in its place later cannot lead outside.

use serde::Serialize;

use super::in_root::RootDir;
use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tracing::{debug, info, warn};

pub const DEFAULT_MAX_LINE: usize = 16 * 1024;
const READ_CHUNK: usize = 64 * 1024;
/// Bytes read per poll at most, so a large backlog is consumed over several
/// polls instead of in one huge batch: what one poll holds in lines is bounded by it. At 10
/// polls a second that is 10 MiB/s per log (~50,000 lines/s), and about one batch of lines.
const MAX_BYTES_PER_POLL: usize = 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TailLine {
    /// Line without its newline; invalid UTF-8 replaced with U+FFFD.
    pub text: String,
    /// Cut at the maximum length, or left incomplete when the file rotated.
    pub truncated: bool,
}

/// Where reading starts in the first file opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    Beginning,
    End,
}

#[derive(Debug, thiserror::Error)]
pub enum TailError {
    #[error("cannot {op} {path}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

struct OpenFile {
    file: File,
    /// (device, inode): a different pair at `path` means the file was rotated.
    id: (u64, u64),
    offset: u64,
}

pub struct LogTail {
    path: PathBuf,
    /// The root `path` is resolved in; None for a path as the agent sees it (operator flags).
    root: Option<Arc<RootDir>>,
    max_line: usize,
    /// Start position for the next file opened; files found later start at 0.
    start: StartAt,
    open: Option<OpenFile>,
    /// Bytes of the current, not yet complete line (never more than `max_line`).
    partial: Vec<u8>,
    /// The current line was already emitted cut; drop bytes up to its newline.
    skipping: bool,
    /// Lines read during a poll that then failed; returned by the next poll.
    pending: Vec<TailLine>,
    /// The read buffer, kept between polls (10 per second per log).
    buf: Vec<u8>,
}

impl LogTail {
    /// Follows `path`, which need not exist yet. Lines longer than `max_line`
    /// bytes are cut and flagged.
    pub fn new(path: impl Into<PathBuf>, start: StartAt, max_line: usize) -> Self {
        Self::build(None, path.into(), start, max_line)
    }

    /// Follows `path` inside `root` (a master's `/proc/PID/root`).
    pub fn in_root(root: Arc<RootDir>, path: impl Into<PathBuf>, start: StartAt) -> Self {
        Self::build(Some(root), path.into(), start, DEFAULT_MAX_LINE)
    }

    fn build(root: Option<Arc<RootDir>>, path: PathBuf, start: StartAt, max_line: usize) -> Self {
        let mut tail = LogTail {
            path,
            root,
            max_line: max_line.max(1),
            start,
            open: None,
            partial: Vec::new(),
            skipping: false,
            pending: Vec::new(),
            buf: Vec::new(),
        };
        // Open now so that "at end" means the end as of construction.
        if let Err(err) = tail.try_open() {
            warn!(error = %err, "log file not readable yet; will retry");
        }
        tail
    }

    /// Follows only lines written from now on.
    pub fn open_at_end(path: impl Into<PathBuf>) -> Self {
        Self::new(path, StartAt::End, DEFAULT_MAX_LINE)
    }

    /// Reads the existing contents first, then follows.
    pub fn open_from_start(path: impl Into<PathBuf>) -> Self {
        Self::new(path, StartAt::Beginning, DEFAULT_MAX_LINE)
    }

    /// The path as configured (inside the master's root for [`LogTail::in_root`]).
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn open_path(&self) -> io::Result<File> {
        match &self.root {
            Some(root) => root.open_file(&self.path),
            None => File::open(&self.path),
        }
    }

    fn stat_path(&self) -> io::Result<fs::Metadata> {
        match &self.root {
            Some(root) => root.metadata(&self.path),
            None => fs::metadata(&self.path),
        }
    }

    /// Returns the complete lines written since the last poll.
    pub fn poll(&mut self) -> Result<Vec<TailLine>, TailError> {
        // Lines read before an error are kept for the next poll, not dropped.
        let mut lines = std::mem::take(&mut self.pending);
        match self.poll_into(&mut lines) {
            Ok(()) => Ok(lines),
            Err(err) => {
                self.pending = lines;
                Err(err)
            }
        }
    }

    fn poll_into(&mut self, lines: &mut Vec<TailLine>) -> Result<(), TailError> {
        if self.open.is_none() && !self.try_open()? {
            return Ok(());
        }
        self.restart_if_truncated(lines)?;
        if self.read_available(lines)? {
            self.follow_rotation(lines)?;
        }
        Ok(())
    }

    /// Opens the file at `path`; `Ok(false)` if it does not exist (yet).
    fn try_open(&mut self) -> Result<bool, TailError> {
        let mut file = match self.open_path() {
            Ok(file) => file,
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                // Whatever appears at this path later is new: read it whole.
                self.start = StartAt::Beginning;
                return Ok(false);
            }
            Err(err) => return Err(io_error(&self.path, "open")(err)),
        };
        let meta = file.metadata().map_err(io_error(&self.path, "stat"))?;
        let offset = match self.start {
            StartAt::Beginning => 0,
            StartAt::End => meta.len(),
        };
        file.seek(SeekFrom::Start(offset))
            .map_err(io_error(&self.path, "seek"))?;
        self.start = StartAt::Beginning;
        self.open = Some(OpenFile {
            file,
            id: (meta.dev(), meta.ino()),
            offset,
        });
        debug!(path = %self.path.display(), offset, "following log file");
        Ok(true)
    }

    /// copytruncate empties the file in place: start over from its beginning.
    fn restart_if_truncated(&mut self, lines: &mut Vec<TailLine>) -> Result<(), TailError> {
        let Some(open) = self.open.as_mut() else {
            return Ok(());
        };
        let len = open
            .file
            .metadata()
            .map_err(io_error(&self.path, "stat"))?
            .len();
        if len >= open.offset {
            return Ok(());
        }
        info!(path = %self.path.display(), len, offset = open.offset, "log file truncated; reading from start");
        open.file
            .seek(SeekFrom::Start(0))
            .map_err(io_error(&self.path, "seek"))?;
        open.offset = 0;
        self.flush_partial(lines);
        Ok(())
    }

    /// Reads what is available; `Ok(true)` when the end of file was reached.
    fn read_available(&mut self, lines: &mut Vec<TailLine>) -> Result<bool, TailError> {
        // Taken out while reading so `push_bytes` can borrow `self`.
        let mut buf = std::mem::take(&mut self.buf);
        buf.resize(READ_CHUNK, 0);
        let result = self.read_into(&mut buf, lines);
        self.buf = buf;
        result
    }

    fn read_into(&mut self, buf: &mut [u8], lines: &mut Vec<TailLine>) -> Result<bool, TailError> {
        let mut budget = MAX_BYTES_PER_POLL;
        while budget > 0 {
            let Some(open) = self.open.as_mut() else {
                return Ok(true);
            };
            let n = match open.file.read(buf) {
                Ok(0) => return Ok(true),
                Ok(n) => n,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => return Err(io_error(&self.path, "read")(err)),
            };
            open.offset += n as u64;
            budget = budget.saturating_sub(n);
            self.push_bytes(&buf[..n], lines);
        }
        Ok(false)
    }

    /// At EOF: if `path` now names another file, finish the old one and switch.
    fn follow_rotation(&mut self, lines: &mut Vec<TailLine>) -> Result<(), TailError> {
        let Some(current) = self.open.as_ref().map(|o| o.id) else {
            return Ok(());
        };
        match self.stat_path() {
            Ok(meta) if (meta.dev(), meta.ino()) != current => {
                // nginx may have written more before reopening its log: drain
                // it, and if that hit the per-poll budget, switch next poll.
                if !self.read_available(lines)? {
                    return Ok(());
                }
                info!(path = %self.path.display(), "log file rotated; following the new file");
                self.switch_file(lines)?;
                self.read_available(lines)?;
            }
            Ok(_) => {}
            // Renamed away and not recreated yet: keep reading the old file,
            // unless it was deleted outright (then holding it only pins disk space).
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                let deleted = self
                    .open
                    .as_ref()
                    .and_then(|o| o.file.metadata().ok())
                    .is_some_and(|m| m.nlink() == 0);
                if deleted {
                    info!(path = %self.path.display(), "log file deleted; waiting for a new one");
                    self.switch_file(lines)?;
                }
            }
            Err(err) => return Err(io_error(&self.path, "stat")(err)),
        }
        Ok(())
    }

    fn switch_file(&mut self, lines: &mut Vec<TailLine>) -> Result<bool, TailError> {
        self.flush_partial(lines);
        self.open = None;
        self.start = StartAt::Beginning;
        self.try_open()
    }

    /// Emits a pending incomplete line flagged as truncated.
    fn flush_partial(&mut self, lines: &mut Vec<TailLine>) {
        if !self.partial.is_empty() {
            lines.push(self.take_line(true));
        }
        self.skipping = false;
    }

    /// Splits bytes into lines, enforcing `max_line`.
    fn push_bytes(&mut self, mut data: &[u8], lines: &mut Vec<TailLine>) {
        while !data.is_empty() {
            let newline = data.iter().position(|&b| b == b'\n');
            let (segment, complete) = match newline {
                Some(i) => (&data[..i], true),
                None => (data, false),
            };
            data = newline.map_or(&[][..], |i| &data[i + 1..]);
            if self.skipping {
                self.skipping = !complete;
                continue;
            }
            let room = self.max_line - self.partial.len();
            if segment.len() > room {
                self.partial.extend_from_slice(&segment[..room]);
                lines.push(self.take_line(true));
                self.skipping = !complete;
            } else {
                self.partial.extend_from_slice(segment);
                if complete {
                    lines.push(self.take_line(false));
                }
            }
        }
    }

    fn take_line(&mut self, truncated: bool) -> TailLine {
        let bytes = std::mem::take(&mut self.partial);
        TailLine {
            text: decode_lossy(bytes, truncated),
            truncated,
        }
    }
}

fn io_error<'a>(path: &'a Path, op: &'static str) -> impl FnOnce(io::Error) -> TailError + 'a {
    move |source| TailError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// Lossy UTF-8 decoding; for a cut line, a multi-byte character split by the
/// cut is dropped rather than shown as U+FFFD.
fn decode_lossy(bytes: Vec<u8>, cut: bool) -> String {
    match String::from_utf8(bytes) {
        Ok(text) => text,
        Err(err) => {
            let utf8 = err.utf8_error();
            let mut bytes = err.into_bytes();
            if cut && utf8.error_len().is_none() {
                bytes.truncate(utf8.valid_up_to());
            }
            String::from_utf8_lossy(&bytes).into_owned()
        }
    }
}

#[cfg(test)]
mod tests;
