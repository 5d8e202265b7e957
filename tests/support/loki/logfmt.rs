//! Loki's logfmt decoder (pkg/logql/log/logfmt, adapted from go-logfmt), in its two
//! behaviours: Loki before 2.9 stops at the first invalid token (`"` where a key should be,
//! `=` or `"` inside a bare value, an unterminated quote); 2.9 and later skip to the next
//! space and go on.

/// The (key, value) pairs of `line` as Loki's `| logfmt` reads them, and whether a token was
/// invalid (Loki's `__error__="LogfmtParserErr"`, set only when stopping).
pub(super) fn pairs(line: &str, stop_at_error: bool) -> (Vec<(String, String)>, bool) {
    let mut d = Decoder {
        line: line.as_bytes(),
        pos: 0,
        skip_on_error: !stop_at_error,
    };
    let mut out = Vec::new();
    while d.pos < d.line.len() {
        match d.scan() {
            Scan::Pair(key, value) => {
                // Loki drops a value holding the replacement character.
                let value = if value.contains('\u{FFFD}') {
                    String::new()
                } else {
                    value
                };
                out.push((key, value));
            }
            Scan::End => break,
            Scan::Invalid if stop_at_error => return (out, true),
            Scan::Invalid => {}
        }
    }
    (out, false)
}

enum Scan {
    Pair(String, String),
    Invalid,
    End,
}

struct Decoder<'a> {
    line: &'a [u8],
    pos: usize,
    /// 2.9 and later: after an invalid token, move past it.
    skip_on_error: bool,
}

impl Decoder<'_> {
    fn text(&self, from: usize, to: usize) -> String {
        String::from_utf8_lossy(&self.line[from..to]).into_owned()
    }

    fn invalid(&mut self, skippable: bool) -> Scan {
        if skippable && self.skip_on_error {
            while self.pos < self.line.len() && self.line[self.pos] > b' ' {
                self.pos += 1;
            }
        }
        Scan::Invalid
    }

    fn scan(&mut self) -> Scan {
        let line = self.line;
        while self.pos < line.len() && line[self.pos] <= b' ' {
            self.pos += 1;
        }
        if self.pos == line.len() {
            return Scan::End;
        }
        let start = self.pos;
        loop {
            let Some(&c) = line.get(self.pos) else {
                let key = self.text(start, self.pos);
                return if key.contains('\u{FFFD}') {
                    Scan::Invalid
                } else {
                    Scan::Pair(key, String::new())
                };
            };
            match c {
                b'=' if self.pos == start => return self.invalid(true),
                b'=' => break,
                b'"' => return self.invalid(true),
                c if c <= b' ' => {
                    let key = self.text(start, self.pos);
                    return if key.contains('\u{FFFD}') {
                        Scan::Invalid
                    } else {
                        Scan::Pair(key, String::new())
                    };
                }
                _ => self.pos += 1,
            }
        }
        let key = self.text(start, self.pos);
        if key.contains('\u{FFFD}') {
            return self.invalid(true);
        }
        self.pos += 1;
        match line.get(self.pos) {
            None => return Scan::Pair(key, String::new()),
            Some(&c) if c <= b' ' => return Scan::Pair(key, String::new()),
            Some(b'"') => return self.quoted(key),
            Some(_) => {}
        }
        let start = self.pos;
        while let Some(&c) = line.get(self.pos) {
            match c {
                b'=' | b'"' => return self.invalid(true),
                c if c <= b' ' => break,
                _ => self.pos += 1,
            }
        }
        Scan::Pair(key, self.text(start, self.pos))
    }

    /// A `"…"` value with JSON escapes.
    fn quoted(&mut self, key: String) -> Scan {
        let start = self.pos;
        let (mut escaped, mut has_escape) = (false, false);
        for p in start + 1..self.line.len() {
            match self.line[p] {
                _ if escaped => escaped = false,
                b'\\' => (has_escape, escaped) = (true, true),
                b'"' => {
                    self.pos = p + 1;
                    let inner = self.text(start + 1, p);
                    if !has_escape {
                        return Scan::Pair(key, inner);
                    }
                    return match unquote(&inner) {
                        Some(value) => Scan::Pair(key, value),
                        None => Scan::Invalid,
                    };
                }
                _ => {}
            }
        }
        self.pos = self.line.len();
        Scan::Invalid
    }
}

/// JSON string escapes, as Loki's `unquoteBytes`; `None` for an invalid one.
fn unquote(s: &str) -> Option<String> {
    let mut out = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            if c < ' ' {
                return None;
            }
            out.push(c);
            continue;
        }
        out.push(match chars.next()? {
            c @ ('"' | '\\' | '/' | '\'') => c,
            'b' => '\u{8}',
            'f' => '\u{c}',
            'n' => '\n',
            'r' => '\r',
            't' => '\t',
            'u' => {
                let hex: String = chars.by_ref().take(4).collect();
                let code = u32::from_str_radix(&hex, 16)
                    .ok()
                    .filter(|_| hex.len() == 4)?;
                char::from_u32(code).unwrap_or('\u{FFFD}')
            }
            _ => return None,
        });
    }
    Some(out)
}
