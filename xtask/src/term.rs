//! The terminal the demo and `run` print to: colour only on a TTY (and never with
//! `NO_COLOR`), a progress line rewritten in place on a TTY and printed once elsewhere, and
//! the width long lines wrap at.
use std::io::Write;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Colour {
    Red,
    Green,
    Yellow,
    Cyan,
    Bold,
    Dim,
}

/// How text is painted: plain (pipes, files, `NO_COLOR`) or with ANSI colours (a TTY).
#[derive(Debug, Clone, Copy)]
pub struct Style {
    pub colour: bool,
    /// Columns long lines wrap at.
    pub width: usize,
}

impl Style {
    pub fn plain(width: usize) -> Style {
        Style {
            colour: false,
            width,
        }
    }

    pub fn paint(&self, colour: Colour, text: &str) -> String {
        if !self.colour {
            return text.to_owned();
        }
        let code = match colour {
            Colour::Red => "1;31",
            Colour::Green => "1;32",
            Colour::Yellow => "33",
            Colour::Cyan => "36",
            Colour::Bold => "1",
            Colour::Dim => "2",
        };
        format!("\x1b[{code}m{text}\x1b[0m")
    }
}

/// Standard output, and whether a progress line is on screen.
pub struct Term {
    tty: bool,
    pub style: Style,
    /// The progress line on screen (a TTY), if any.
    progress: Option<String>,
    /// Not a TTY: the label printed last, so a wait's label is printed once.
    printed: Option<String>,
}

impl Term {
    pub fn stdout() -> Term {
        // SAFETY: no preconditions.
        let tty = unsafe { libc::isatty(libc::STDOUT_FILENO) } == 1;
        let colour = tty && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
        let width = if tty { columns().clamp(60, 120) } else { 100 };
        Term {
            tty,
            style: Style { colour, width },
            progress: None,
            printed: None,
        }
    }

    /// Prints `text` (one or more lines), first clearing a progress line.
    pub fn line(&mut self, text: &str) {
        self.clear_progress();
        println!("{text}");
    }

    /// `label… 1.8 s`: rewritten in place on a TTY; elsewhere `label…` once, until another
    /// label comes.
    pub fn progress(&mut self, label: &str, elapsed_s: f64, detail: &str) {
        if self.tty {
            let text = format!("{label}… {elapsed_s:.1} s{detail}");
            // One screen line, or `\r` would not get back to its start.
            let text: String = text
                .chars()
                .take(self.style.width.saturating_sub(1))
                .collect();
            print!("\r\x1b[K{}", self.style.paint(Colour::Dim, &text));
            let _ = std::io::stdout().flush();
            self.progress = Some(label.to_owned());
        } else if self.printed.as_deref() != Some(label) {
            println!("{label}…");
            self.printed = Some(label.to_owned());
        }
    }

    /// A new wait begins: its label is printed even if the last wait had the same one.
    pub fn new_progress(&mut self) {
        self.printed = None;
    }

    /// Takes a progress line off the screen (a TTY); the next `progress` redraws it.
    pub fn clear_progress(&mut self) {
        if self.progress.take().is_some() && self.tty {
            print!("\r\x1b[K");
            let _ = std::io::stdout().flush();
        }
    }
}

/// The terminal's width (TIOCGWINSZ), 100 when unknown.
fn columns() -> usize {
    // SAFETY: TIOCGWINSZ fills a winsize; a failure leaves it zeroed.
    let mut size: libc::winsize = unsafe { std::mem::zeroed() };
    let ok = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut size) } == 0;
    if ok && size.ws_col > 0 {
        usize::from(size.ws_col)
    } else {
        100
    }
}

/// `text` wrapped at `width` columns for a line whose first `start` columns are taken
/// (the caller prints a prefix of that visible width first); the next lines are indented by
/// `indent` spaces. Words longer than a line stay whole.
pub fn wrap(text: &str, start: usize, indent: usize, width: usize) -> String {
    let mut out = String::new();
    let mut column = start;
    let mut line_has_word = false;
    for word in text.split(' ').filter(|w| !w.is_empty()) {
        let len = word.chars().count();
        if line_has_word && column + 1 + len > width {
            out.push('\n');
            out.push_str(&" ".repeat(indent));
            column = indent;
            line_has_word = false;
        }
        if line_has_word {
            out.push(' ');
            column += 1;
        }
        out.push_str(word);
        column += len;
        line_has_word = true;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wraps_with_a_hanging_indent_and_keeps_long_words() {
        let text = "nothing listens on 127.0.0.1:8084 since 10:13:58";
        assert_eq!(
            wrap(text, 2, 4, 24),
            "nothing listens on\n    127.0.0.1:8084 since\n    10:13:58"
        );
        assert_eq!(wrap("a-very-long-word b", 2, 2, 6), "a-very-long-word\n  b");
        assert_eq!(wrap("", 2, 2, 10), "");
    }

    #[test]
    fn paints_only_with_colour() {
        assert_eq!(Style::plain(80).paint(Colour::Red, "FIRING"), "FIRING");
        let tty = Style {
            colour: true,
            width: 80,
        };
        assert_eq!(tty.paint(Colour::Red, "FIRING"), "\x1b[1;31mFIRING\x1b[0m");
    }
}
