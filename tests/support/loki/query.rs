//! `GET /loki/api/v1/query_range`: a stream selector with `|=` / `!=` line filters.
use std::sync::Mutex;

use serde_json::json;

use super::{selector::parse_selector, LokiState};

fn query_param(target: &str, key: &str) -> Option<String> {
    let query = target.split_once('?')?.1;
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == key).then(|| percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("00");
                out.push(u8::from_str_radix(hex, 16).unwrap_or(b'?'));
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1
            }
            b => {
                out.push(b);
                i += 1
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `{selector} |= "a" != "b"`; structured metadata is returned as stream labels (Loki 3).
pub(super) fn query_range(state: &Mutex<LokiState>, target: &str) -> (u16, String) {
    let Some(query) = query_param(target, "query") else {
        return (400, "missing query".into());
    };
    let limit: usize = query_param(target, "limit")
        .and_then(|l| l.parse().ok())
        .unwrap_or(100);
    let close = match query.find('}') {
        Some(i) => i,
        None => return (400, "parse error".into()),
    };
    let selector = match parse_selector(&query[..=close], false) {
        Ok(s) => s,
        Err(e) => return (400, format!("parse error: {e}")),
    };
    let mut filters = Vec::new();
    let mut rest = query[close + 1..].trim();
    while !rest.is_empty() {
        let Some((op, after)) = ["|=", "!="]
            .into_iter()
            .find_map(|op| Some((op, rest.strip_prefix(op)?)))
        else {
            return (400, format!("parse error: unsupported filter at {rest:?}"));
        };
        let after = after.trim_start();
        let Some(body) = after.strip_prefix('"') else {
            return (400, "parse error: expected string".into());
        };
        let Some(end) = body.find('"') else {
            return (400, "parse error: unterminated".into());
        };
        filters.push((op == "|=", body[..end].to_owned()));
        rest = body[end + 1..].trim();
    }
    let s = state.lock().unwrap();
    let mut result = Vec::new();
    let mut count = 0;
    for (labels, entries) in &s.streams {
        if !selector.iter().all(|(k, v)| labels.get(k) == Some(v)) {
            continue;
        }
        for e in entries.iter().filter(|e| {
            filters
                .iter()
                .all(|(keep, f)| e.line.contains(f.as_str()) == *keep)
        }) {
            if count == limit {
                break;
            }
            count += 1;
            let mut stream = labels.clone();
            stream.extend(e.metadata.clone());
            result.push(json!({"stream": stream, "values": [[e.ts_ns.to_string(), e.line]]}));
        }
    }
    (
        200,
        json!({"status": "success", "data": {"resultType": "streams", "result": result}})
            .to_string(),
    )
}
