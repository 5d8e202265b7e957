//! `GET /loki/api/v1/query_range`: log queries, evaluated by `logql.rs`.
use std::sync::Mutex;

use serde_json::json;

use super::{
    logql::{Flavor, Query},
    LokiState,
};

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

/// A log query (see `logql.rs`) over what is stored; structured metadata and extracted labels
/// are returned as stream labels (Loki 3 without the categorize-labels flag), one result per
/// entry, at most `limit`.
pub(super) fn query_range(state: &Mutex<LokiState>, target: &str) -> (u16, String) {
    let Some(query) = query_param(target, "query") else {
        return (400, "missing query".into());
    };
    let limit: usize = query_param(target, "limit")
        .and_then(|l| l.parse().ok())
        .unwrap_or(100);
    let query = match Query::parse(&query) {
        Ok(q) => q,
        Err(e) => return (400, e),
    };
    let s = state.lock().unwrap();
    let flavor = Flavor {
        logfmt_stops_at_error: s.loki_2x,
    };
    let mut result = Vec::new();
    for (labels, entries) in &s.streams {
        if !query.selector.iter().all(|(k, v)| labels.get(k) == Some(v)) {
            continue;
        }
        for e in entries {
            if result.len() == limit {
                break;
            }
            if let Some(stream) = query.eval(labels, e, flavor) {
                result.push(json!({"stream": stream, "values": [[e.ts_ns.to_string(), e.line]]}));
            }
        }
    }
    (
        200,
        json!({"status": "success", "data": {"resultType": "streams", "result": result}})
            .to_string(),
    )
}
