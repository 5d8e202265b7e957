//! Parses access.log lines with a matcher compiled from the `log_format` string.
//!
//! The format is split into literal text and `$variables`; a line is matched by
//! finding each literal in order: a variable's value runs until the next
//! literal, and a trailing variable runs to the end of the line. nginx escapes
//! `"` in values (as `\x22`, or `\"` with escape=json), so quoted fields are safe.

use super::config::COMBINED_FORMAT;
use serde::ser::{Serialize, SerializeMap, Serializer};
use std::{ops::Range, sync::Arc};
use vigil_wire::time::civil_to_unix;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    #[error(
        "log_format variables ${first} and ${second} touch, so their values cannot be told apart"
    )]
    AdjacentVariables { first: String, second: String },
    #[error("log_format has an unterminated ${{...}} variable")]
    UnterminatedBrace,
}

/// A line that does not match the format (borrowed: the tail ships the raw line anyway).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("access.log line does not match the log_format: {reason}")]
pub struct AccessLogParseError<'a> {
    pub line: &'a str,
    pub reason: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    /// Index into `LogFormat::names`.
    Var(usize),
}

/// A compiled `log_format`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogFormat {
    segments: Vec<Segment>,
    /// Shared with every record so lines do not copy variable names.
    names: Arc<[String]>,
}

impl LogFormat {
    /// Compiles a format string as found in [`super::NginxConfig::log_formats`].
    pub fn compile(format: &str) -> Result<Self, FormatError> {
        let mut segments = Vec::new();
        let mut names: Vec<String> = Vec::new();
        let mut literal = String::new();
        let mut rest = format;
        while let Some(dollar) = rest.find('$') {
            literal.push_str(&rest[..dollar]);
            let after = &rest[dollar + 1..];
            let Some((name, used)) = variable_name(after)? else {
                literal.push('$'); // a lone `$` is plain text to nginx too
                rest = after;
                continue;
            };
            if !literal.is_empty() {
                segments.push(Segment::Literal(std::mem::take(&mut literal)));
            } else if let Some(Segment::Var(prev)) = segments.last() {
                let first = names[*prev].clone();
                return Err(FormatError::AdjacentVariables {
                    first,
                    second: name.to_string(),
                });
            }
            segments.push(Segment::Var(names.len()));
            names.push(name.to_string());
            rest = &after[used..];
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            segments.push(Segment::Literal(literal));
        }
        Ok(LogFormat {
            segments,
            names: names.into(),
        })
    }

    /// nginx's predefined `combined` format.
    pub fn combined() -> Self {
        Self::compile(COMBINED_FORMAT).expect("the combined format is valid")
    }

    /// Variable names in format order (without `$`).
    pub fn variables(&self) -> &[String] {
        &self.names
    }

    /// Parses one line (a trailing newline is ignored).
    pub fn parse<'a>(&self, line: &'a str) -> Result<AccessLogRecord, AccessLogParseError<'a>> {
        let text = line.trim_end_matches(['\n', '\r']);
        match self.match_values(text) {
            Ok(spans) => Ok(AccessLogRecord {
                names: Arc::clone(&self.names),
                text: text.to_owned(),
                spans,
            }),
            Err(reason) => Err(AccessLogParseError { line, reason }),
        }
    }

    /// Where each variable's value lies in `line`: one allocation per line, not per value.
    fn match_values(&self, line: &str) -> Result<Vec<Range<usize>>, &'static str> {
        let mut rest = line;
        let mut values = Vec::with_capacity(self.names.len());
        let mut segments = self.segments.iter().peekable();
        while let Some(segment) = segments.next() {
            match segment {
                Segment::Literal(text) => {
                    rest = rest
                        .strip_prefix(text.as_str())
                        .ok_or("literal text differs")?;
                }
                Segment::Var(_) => {
                    let end = match segments.peek() {
                        Some(Segment::Literal(next)) => {
                            find_unescaped(rest, next).ok_or("missing separator")?
                        }
                        _ => rest.len(),
                    };
                    let start = line.len() - rest.len();
                    values.push(start..start + end);
                    rest = &rest[end..];
                }
            }
        }
        if rest.is_empty() {
            Ok(values)
        } else {
            Err("unexpected text after the last field")
        }
    }
}

/// Parses `name…` or `{name}` after a `$`; returns the name and bytes used.
fn variable_name(s: &str) -> Result<Option<(&str, usize)>, FormatError> {
    let is_name_char = |c: char| c.is_ascii_alphanumeric() || c == '_';
    if let Some(inner) = s.strip_prefix('{') {
        let end = inner.find('}').ok_or(FormatError::UnterminatedBrace)?;
        let name = &inner[..end];
        let valid = !name.is_empty() && name.chars().all(is_name_char);
        return Ok(valid.then_some((name, end + 2)));
    }
    let len = s.find(|c: char| !is_name_char(c)).unwrap_or(s.len());
    Ok((len > 0).then_some((&s[..len], len)))
}

/// Finds `literal` in `s`, skipping a `"` escaped by a backslash (escape=json).
fn find_unescaped(s: &str, literal: &str) -> Option<usize> {
    s.match_indices(literal).map(|(i, _)| i).find(|&i| {
        let backslashes = s[..i].bytes().rev().take_while(|&b| b == b'\\').count();
        !literal.starts_with('"') || backslashes % 2 == 0
    })
}

/// One parsed access.log line: variable name → raw value as logged.
#[derive(Debug, Clone, PartialEq)]
pub struct AccessLogRecord {
    names: Arc<[String]>,
    text: String,
    /// Each variable's value in `text`, in format order.
    spans: Vec<Range<usize>>,
}

impl AccessLogRecord {
    /// Raw value of `$var` (without `$`), `None` if the format lacks it.
    pub fn get(&self, var: &str) -> Option<&str> {
        let index = self.names.iter().position(|n| n == var)?;
        self.spans.get(index).map(|span| &self.text[span.clone()])
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.names
            .iter()
            .map(String::as_str)
            .zip(self.spans.iter().map(|span| &self.text[span.clone()]))
    }

    /// A value with nginx's `-` meaning "none" mapped to `None`.
    fn present(&self, var: &str) -> Option<&str> {
        self.get(var).filter(|v| *v != "-")
    }

    pub fn status(&self) -> Option<u16> {
        self.present("status")?.parse().ok()
    }

    pub fn request(&self) -> Option<&str> {
        self.present("request")
    }

    pub fn remote_addr(&self) -> Option<&str> {
        self.present("remote_addr")
    }

    /// e.g. `25/Nov/2026:12:51:10 +0000`.
    pub fn time_local(&self) -> Option<&str> {
        self.present("time_local")
    }

    /// `time_local` as seconds since the Unix epoch (its UTC offset applied).
    pub fn time_local_unix(&self) -> Option<i64> {
        parse_time_local(self.time_local()?)
    }

    pub fn body_bytes_sent(&self) -> Option<u64> {
        self.present("body_bytes_sent")?.parse().ok()
    }

    /// Seconds from the first client byte to the last byte sent.
    pub fn request_time(&self) -> Option<f64> {
        self.present("request_time")?.parse().ok()
    }

    pub fn upstream_addr(&self) -> Option<UpstreamValues<'_>> {
        self.get("upstream_addr").map(UpstreamValues)
    }

    pub fn upstream_status(&self) -> Option<UpstreamValues<'_>> {
        self.get("upstream_status").map(UpstreamValues)
    }

    pub fn upstream_response_time(&self) -> Option<UpstreamValues<'_>> {
        self.get("upstream_response_time").map(UpstreamValues)
    }

    pub fn upstream_connect_time(&self) -> Option<UpstreamValues<'_>> {
        self.get("upstream_connect_time").map(UpstreamValues)
    }

    pub fn upstream_header_time(&self) -> Option<UpstreamValues<'_>> {
        self.get("upstream_header_time").map(UpstreamValues)
    }
}

impl Serialize for AccessLogRecord {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.spans.len()))?;
        for (name, value) in self.iter() {
            map.serialize_entry(name, value)?;
        }
        map.end()
    }
}

/// An `$upstream_*` value: one entry per upstream tried, `, `-separated
/// (next server of the group) or ` : `-separated (internal redirect to
/// another group); `-` means none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpstreamValues<'a>(&'a str);

impl<'a> UpstreamValues<'a> {
    pub fn raw(&self) -> &'a str {
        self.0
    }

    /// Every entry in order (entries may be `-`).
    pub fn entries(&self) -> impl Iterator<Item = &'a str> {
        self.0
            .split(" : ")
            .flat_map(|group| group.split(", "))
            .map(str::trim)
    }

    /// The last upstream tried, i.e. the one that produced the response.
    pub fn last(&self) -> Option<&'a str> {
        self.entries().last().filter(|v| *v != "-" && !v.is_empty())
    }

    pub fn last_status(&self) -> Option<u16> {
        self.last()?.parse().ok()
    }

    pub fn last_seconds(&self) -> Option<f64> {
        self.last()?.parse().ok()
    }
}

/// Parses `25/Nov/2026:12:51:10 +0000` into Unix seconds.
fn parse_time_local(text: &str) -> Option<i64> {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (stamp, zone) = text.split_once(' ')?;
    let mut parts = stamp.splitn(3, '/');
    let (day, month, rest) = (parts.next()?, parts.next()?, parts.next()?);
    let month = MONTHS.iter().position(|m| *m == month)? as u32 + 1;
    let mut clock = rest.split(':').map(|n| n.parse::<u32>().ok());
    let (year, hour, min, sec) = (
        clock.next()??,
        clock.next()??,
        clock.next()??,
        clock.next()??,
    );
    let local = civil_to_unix(year, month, day.parse().ok()?, hour, min, sec)?;
    let sign = match zone.as_bytes().first()? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let offset: i64 = zone.get(1..5)?.parse().ok()?;
    Some(local - sign * ((offset / 100) * 3_600 + (offset % 100) * 60))
}

#[cfg(test)]
mod tests;
