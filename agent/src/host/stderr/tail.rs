//! The bounded tail kept from whatever a source yields: the newest lines, each cleaned and cut,
//! within a byte budget. What the bounds drop is counted and travels with the result.
use std::collections::VecDeque;

use serde::Serialize;

/// Every bound of a crash-reason read.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Lines kept (the newest).
    pub max_lines: usize,
    /// Bytes per line; a longer line is cut and ends with `…`.
    pub max_line_bytes: usize,
    /// Bytes of all kept lines together; the oldest go first.
    pub max_total_bytes: usize,
    /// Bytes read from the end of a file or container log.
    pub file_tail_bytes: u64,
    /// Journal files opened per read (newest first).
    pub journal_files: usize,
    /// Objects read per journal file (hash chain, entry arrays, entries, their fields).
    pub journal_objects: usize,
    /// Largest compressed journal field decoded, and the zstd window it may ask for.
    pub max_compressed_bytes: u64,
    pub max_zstd_window: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_lines: 20,
            max_line_bytes: 512,
            max_total_bytes: 4096,
            file_tail_bytes: 64 * 1024,
            journal_files: 8,
            journal_objects: 20_000,
            max_compressed_bytes: 64 * 1024,
            max_zstd_window: 1 << 20,
        }
    }
}

/// What one read found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct StderrTail {
    /// `file:PATH`, `pod:NS/POD/CONTAINER` or `journal:UNIT`.
    pub source: String,
    /// Oldest first.
    pub lines: Vec<String>,
    /// Older lines left out by the line and byte bounds.
    pub lines_dropped: u32,
    /// Lines cut at `max_line_bytes`.
    pub lines_cut: u32,
    /// Journal objects that could not be read (compressed with XZ/LZ4, over a bound, torn).
    pub objects_skipped: u32,
}

pub struct TailLines {
    lines: VecDeque<String>,
    max_lines: usize,
    max_line_bytes: usize,
    max_total_bytes: usize,
    dropped: u32,
    cut: u32,
}

impl TailLines {
    pub fn new(limits: &Limits) -> Self {
        TailLines {
            lines: VecDeque::with_capacity(limits.max_lines.min(64)),
            max_lines: limits.max_lines,
            max_line_bytes: limits.max_line_bytes.max(4),
            max_total_bytes: limits.max_total_bytes,
            dropped: 0,
            cut: 0,
        }
    }

    /// Every line of `bytes`, in order.
    pub fn push_text(&mut self, bytes: &[u8]) {
        for line in bytes.split(|&b| b == b'\n') {
            self.push_line(line);
        }
    }

    /// One line: invalid UTF-8 replaced, control characters (terminal escapes) removed,
    /// trailing blanks trimmed (indentation is kept: it shapes a traceback), blank lines skipped.
    pub fn push_line(&mut self, raw: &[u8]) {
        let raw = &raw[..raw.len().min(self.max_line_bytes * 4)];
        let text: String = String::from_utf8_lossy(raw)
            .chars()
            .filter(|&c| c == '\t' || !c.is_control())
            .collect();
        let text = text.trim_end();
        if text.is_empty() {
            return;
        }
        let line = if text.len() > self.max_line_bytes {
            self.cut += 1;
            let mut end = self.max_line_bytes - '…'.len_utf8();
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            format!("{}…", &text[..end])
        } else {
            text.to_owned()
        };
        if self.lines.len() == self.max_lines {
            self.lines.pop_front();
            self.dropped += 1;
        }
        if self.max_lines > 0 {
            self.lines.push_back(line);
        } else {
            self.dropped += 1;
        }
    }

    /// The kept lines within the byte budget, newest kept first.
    pub fn finish(mut self, source: String) -> StderrTail {
        let mut total: usize = self.lines.iter().map(String::len).sum();
        while total > self.max_total_bytes {
            let Some(oldest) = self.lines.pop_front() else {
                break;
            };
            total -= oldest.len();
            self.dropped += 1;
        }
        StderrTail {
            source,
            lines: self.lines.into(),
            lines_dropped: self.dropped,
            lines_cut: self.cut,
            objects_skipped: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(lines: usize, line_bytes: usize, total: usize) -> Limits {
        Limits {
            max_lines: lines,
            max_line_bytes: line_bytes,
            max_total_bytes: total,
            ..Limits::default()
        }
    }

    #[test]
    fn keeps_the_newest_lines_cleaned_and_counts_the_rest() {
        let mut tail = TailLines::new(&limits(3, 512, 4096));
        tail.push_text(b"one\ntwo\r\n\n   \nthree\x1b[31m red\x1b[0m\n  indented  \n");
        let out = tail.finish("file:/x".into());
        assert_eq!(out.lines, ["two", "three[31m red[0m", "  indented"]);
        assert_eq!((out.lines_dropped, out.lines_cut), (1, 0));
        assert_eq!(out.source, "file:/x");
    }

    #[test]
    fn long_lines_are_cut_on_a_char_boundary_and_marked() {
        let mut tail = TailLines::new(&limits(5, 10, 4096));
        tail.push_line("ééééééééé".as_bytes());
        tail.push_line(&[0xff, b'o', b'k']);
        let out = tail.finish(String::new());
        assert_eq!(out.lines[0], "ééé…");
        assert!(out.lines[0].len() <= 10);
        assert_eq!(out.lines[1], "\u{fffd}ok");
        assert_eq!(out.lines_cut, 1);
    }

    #[test]
    fn the_byte_budget_drops_the_oldest_lines() {
        let mut tail = TailLines::new(&limits(20, 512, 25));
        for n in 0..5 {
            tail.push_line(format!("line number {n}").as_bytes());
        }
        let out = tail.finish(String::new());
        // 13 bytes a line: two would be 26.
        assert_eq!(out.lines, ["line number 4"]);
        assert_eq!(out.lines_dropped, 4);
    }
}
