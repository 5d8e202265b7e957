//! The LogQL log queries vigil documents, evaluated as Loki does: a stream selector, then
//! line filters (`|= "…"`, `!= "…"`), parsers (`| logfmt`, `| pattern "…"`) and label
//! filters (`| name = "v"`, `!=`, `=~`, `!~`, regexes anchored). Anything else is a parse
//! error, as an unknown stage is to Loki. `| logfmt` follows the Loki being imitated: 2.x
//! before 2.9 stops at the first invalid token (and sets `__error__`), later ones skip it.
use std::collections::BTreeMap;

use regex_lite::Regex;

use super::{logfmt, selector::parse_selector, Labels, Stored};

pub(super) struct Query {
    pub(super) selector: Labels,
    stages: Vec<Stage>,
}

enum Stage {
    /// `|= "s"` (true) or `!= "s"` (false).
    Line(bool, String),
    Logfmt,
    Pattern(Vec<Node>),
    Label(String, Match),
}

enum Match {
    Equal(bool, String),
    Regex(bool, Regex),
}

#[derive(Debug, PartialEq)]
enum Node {
    Literal(String),
    /// `<name>`; `<_>` is unnamed.
    Capture(String),
}

/// What evaluation needs to know of the Loki being imitated.
#[derive(Clone, Copy)]
pub(super) struct Flavor {
    pub(super) logfmt_stops_at_error: bool,
}

impl Query {
    pub(super) fn parse(text: &str) -> Result<Query, String> {
        let close = selector_end(text).ok_or("parse error: unterminated stream selector")?;
        let selector =
            parse_selector(&text[..=close], false).map_err(|e| format!("parse error: {e}"))?;
        let mut stages = Vec::new();
        let mut rest = text[close + 1..].trim_start();
        while !rest.is_empty() {
            let (stage, after) = stage(rest)?;
            stages.push(stage);
            rest = after.trim_start();
        }
        Ok(Query { selector, stages })
    }

    /// The labels an entry is returned with (stream, structured metadata, extracted,
    /// `__error__`), or `None` when a stage filters it out.
    pub(super) fn eval(&self, stream: &Labels, e: &Stored, flavor: Flavor) -> Option<Labels> {
        let mut parsed = Labels::new();
        let mut error: Option<&str> = None;
        // A name taken by a stream label gets `_extracted`, like Loki's BaseHas check.
        let extract = |parsed: &mut Labels, name: &str, value: String| {
            let name = if stream.contains_key(name) {
                format!("{name}_extracted")
            } else {
                name.to_owned()
            };
            parsed.insert(name, value);
        };
        for stage in &self.stages {
            match stage {
                Stage::Line(keep, s) => {
                    if e.line.contains(s.as_str()) != *keep {
                        return None;
                    }
                }
                Stage::Logfmt => {
                    let (pairs, failed) = logfmt::pairs(&e.line, flavor.logfmt_stops_at_error);
                    for (key, value) in pairs {
                        let key = sanitize(&key);
                        // 2.9 and later skip empty values unless `--keep-empty`.
                        if key.is_empty() || (!flavor.logfmt_stops_at_error && value.is_empty()) {
                            continue;
                        }
                        extract(&mut parsed, &key, value);
                    }
                    if failed {
                        error = Some("LogfmtParserErr");
                    }
                }
                Stage::Pattern(nodes) => {
                    for (name, value) in pattern_matches(nodes, &e.line) {
                        extract(&mut parsed, name, value.to_owned());
                    }
                }
                Stage::Label(name, m) => {
                    let value = if name == "__error__" {
                        error.unwrap_or("")
                    } else {
                        // Structured metadata before parsed labels before stream labels (Loki 3).
                        e.metadata
                            .get(name)
                            .or(parsed.get(name))
                            .or(stream.get(name))
                            .map_or("", String::as_str)
                    };
                    let matched = match m {
                        Match::Equal(equal, v) => (value == v) == *equal,
                        Match::Regex(equal, re) => re.is_match(value) == *equal,
                    };
                    if !matched {
                        return None;
                    }
                }
            }
        }
        let mut labels: Labels = stream.clone();
        labels.extend(e.metadata.clone());
        labels.extend(parsed);
        if let Some(error) = error {
            labels.insert("__error__".into(), error.into());
        }
        Some(labels)
    }
}

/// Index of the `}` closing the selector, skipping quoted values.
fn selector_end(text: &str) -> Option<usize> {
    let (mut quoted, mut escaped) = (false, false);
    for (i, c) in text.char_indices() {
        match (quoted, escaped, c) {
            (true, true, _) => escaped = false,
            (true, false, '\\') => escaped = true,
            (_, false, '"') => quoted = !quoted,
            (false, _, '}') => return Some(i),
            _ => {}
        }
    }
    None
}

/// One pipeline stage at the start of `text`, and what follows it.
fn stage(text: &str) -> Result<(Stage, &str), String> {
    for (op, keep) in [("|=", true), ("!=", false)] {
        if let Some(after) = text.strip_prefix(op) {
            let (s, after) = string(after.trim_start())?;
            return Ok((Stage::Line(keep, s), after));
        }
    }
    let Some(after) = text.strip_prefix('|') else {
        return Err(format!("parse error: unexpected {text:?}"));
    };
    let after = after.trim_start();
    let name_len = after
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(after.len());
    let (name, after) = after.split_at(name_len);
    let valid = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if !valid {
        return Err(format!("parse error: expected a stage at {text:?}"));
    }
    let trimmed = after.trim_start();
    match name {
        "logfmt" if trimmed.is_empty() || trimmed.starts_with('|') || trimmed.starts_with("!=") => {
            Ok((Stage::Logfmt, after))
        }
        "pattern" => {
            let (p, after) = string(trimmed)?;
            Ok((Stage::Pattern(parse_pattern(&p)?), after))
        }
        _ => label_filter(name, trimmed),
    }
}

fn label_filter<'a>(name: &str, text: &'a str) -> Result<(Stage, &'a str), String> {
    let ops = [
        ("=~", true, true),
        ("!~", false, true),
        ("!=", false, false),
        ("=", true, false),
    ];
    let Some((equal, regex, after)) = ops
        .into_iter()
        .find_map(|(op, eq, re)| Some((eq, re, text.strip_prefix(op)?)))
    else {
        return Err(format!("parse error: unsupported stage | {name} {text:?}"));
    };
    let (value, after) = string(after.trim_start())?;
    let m = if regex {
        // Prometheus label matchers are anchored.
        let re = Regex::new(&format!("^(?:{value})$")).map_err(|e| format!("parse error: {e}"))?;
        Match::Regex(equal, re)
    } else {
        Match::Equal(equal, value)
    };
    Ok((Stage::Label(name.to_owned(), m), after))
}

/// A LogQL string: backquoted (raw) or double-quoted with Go's escapes (others are errors).
fn string(text: &str) -> Result<(String, &str), String> {
    if let Some(raw) = text.strip_prefix('`') {
        let end = raw
            .find('`')
            .ok_or("parse error: unterminated raw string")?;
        return Ok((raw[..end].to_owned(), &raw[end + 1..]));
    }
    let body = text
        .strip_prefix('"')
        .ok_or_else(|| format!("parse error: expected a string at {text:?}"))?;
    let mut out = String::new();
    let mut chars = body.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Ok((out, &body[i + 1..])),
            '\\' => out.push(match chars.next().map(|(_, c)| c) {
                Some('"') => '"',
                Some('\\') => '\\',
                Some('n') => '\n',
                Some('t') => '\t',
                Some('r') => '\r',
                other => {
                    return Err(format!(
                        "parse error: invalid escape \\{}",
                        other.unwrap_or(' ')
                    ))
                }
            }),
            c => out.push(c),
        }
    }
    Err("parse error: unterminated string".into())
}

/// Loki's pattern syntax: `<name>` captures (`<_>` unnamed), everything else literal; at
/// least one named capture, no two captures in a row, no name twice.
fn parse_pattern(p: &str) -> Result<Vec<Node>, String> {
    let mut nodes: Vec<Node> = Vec::new();
    let mut rest = p;
    while !rest.is_empty() {
        let capture = rest.strip_prefix('<').and_then(|r| {
            let end = r.find('>')?;
            let name = &r[..end];
            let ok = name
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            ok.then_some((name, &r[end + 1..]))
        });
        if let Some((name, after)) = capture {
            if matches!(nodes.last(), Some(Node::Capture(_))) {
                return Err("parse error: found consecutive capture: invalid expression".into());
            }
            if name != "_" && nodes.contains(&Node::Capture(name.to_owned())) {
                return Err(format!("parse error: duplicate capture name ({name})"));
            }
            nodes.push(Node::Capture(name.to_owned()));
            rest = after;
            continue;
        }
        let c = rest.chars().next().expect("non-empty");
        match nodes.last_mut() {
            Some(Node::Literal(l)) => l.push(c),
            _ => nodes.push(Node::Literal(c.to_string())),
        }
        rest = &rest[c.len_utf8()..];
    }
    if !nodes
        .iter()
        .any(|n| matches!(n, Node::Capture(c) if c != "_"))
    {
        return Err("parse error: at least one capture is required".into());
    }
    Ok(nodes)
}

/// Loki's pattern matcher: a leading literal must start the line; each capture runs to the
/// next literal's first occurrence; a literal not found ends matching, the capture taking the
/// rest of the line.
fn pattern_matches<'a>(nodes: &'a [Node], line: &'a str) -> BTreeMap<&'a str, &'a str> {
    let mut out = BTreeMap::new();
    let mut rest = line;
    let mut nodes = nodes;
    if line.is_empty() {
        return out;
    }
    if let Some(Node::Literal(l)) = nodes.first() {
        if !rest.starts_with(l.as_str()) {
            return out;
        }
        rest = &rest[l.len()..];
        nodes = &nodes[1..];
    }
    while let Some(Node::Capture(name)) = nodes.first() {
        let named = name != "_";
        let Some(Node::Literal(l)) = nodes.get(1) else {
            if named {
                out.insert(name.as_str(), rest);
            }
            return out;
        };
        nodes = &nodes[2..];
        let Some(i) = rest.find(l.as_str()) else {
            if named {
                out.insert(name.as_str(), rest);
            }
            return out;
        };
        if named {
            out.insert(name.as_str(), &rest[..i]);
        }
        rest = &rest[i + l.len()..];
    }
    out
}

/// Loki's sanitizeLabelKey: trimmed, `_` before a leading digit, other characters `_`.
fn sanitize(key: &str) -> String {
    let key = key.trim();
    let prefix = if key.starts_with(|c: char| c.is_ascii_digit()) {
        "_"
    } else {
        ""
    };
    let body: String = key
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{prefix}{body}")
}
