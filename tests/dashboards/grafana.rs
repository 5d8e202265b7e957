//! The dashboards as Grafana reads them: the model checks Grafana's import relies on, and the
//! queries (PromQL, LogQL, variable queries) pulled out for the tests that run them.
use std::{collections::BTreeSet, path::PathBuf};

use serde_json::Value;

/// Panel types of Grafana's core plugins the dashboards may use.
const PANEL_TYPES: &[&str] = &[
    "row",
    "timeseries",
    "stat",
    "gauge",
    "bargauge",
    "table",
    "heatmap",
    "state-timeline",
    "status-history",
    "logs",
    "text",
    "barchart",
    "piechart",
];
/// Variables Grafana defines itself.
const BUILTIN_VARIABLES: &[&str] = &["__rate_interval", "__interval", "__range", "__auto"];
/// The schema these dashboards are written in (Grafana 10.x).
const SCHEMA_VERSION: u64 = 39;
const GRID_WIDTH: u64 = 24;

pub fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../dashboards")
}

/// (file name, JSON) of every dashboard under dashboards/grafana/.
pub fn dashboards() -> Vec<(String, Value)> {
    let mut out: Vec<(String, Value)> = std::fs::read_dir(dir().join("grafana"))
        .expect("dashboards/grafana")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            let json = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{}: not JSON: {e}", p.display()));
            (p.file_name().unwrap().to_string_lossy().into_owned(), json)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(
        out.len() >= 2,
        "the Upstreams and Incidents dashboards: {out:?}"
    );
    out
}

/// Every panel, rows' nested panels included.
pub fn panels(d: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for p in d["panels"].as_array().expect("panels") {
        out.push(p);
        if let Some(nested) = p["panels"].as_array() {
            out.extend(nested);
        }
    }
    out
}

pub struct Target {
    pub dashboard: String,
    pub panel: String,
    /// `prometheus` or `loki`.
    pub kind: String,
    pub expr: String,
}

/// The queries of every panel.
pub fn targets(file: &str, d: &Value) -> Vec<Target> {
    let mut out = Vec::new();
    for p in panels(d).into_iter().filter(|p| p["type"] != "row") {
        for t in p["targets"].as_array().into_iter().flatten() {
            let panel = p["title"].as_str().unwrap_or("?").to_owned();
            let expr = t["expr"].as_str().unwrap_or_else(|| {
                panic!("{file}: panel {panel:?} has a target without an expr: {t}")
            });
            out.push(Target {
                dashboard: file.to_owned(),
                kind: t["datasource"]["type"].as_str().unwrap_or("?").to_owned(),
                expr: expr.to_owned(),
                panel,
            });
        }
    }
    out
}

/// Template variables: (name, type, JSON).
pub fn variables(d: &Value) -> Vec<(&str, &str, &Value)> {
    d["templating"]["list"]
        .as_array()
        .expect("templating.list")
        .iter()
        .map(|v| {
            (
                v["name"].as_str().unwrap_or(""),
                v["type"].as_str().unwrap_or(""),
                v,
            )
        })
        .collect()
}

/// Names used as `$name` or `${name}` in `text`.
pub fn referenced_variables(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        rest = &rest[at + 1..];
        let braced = rest.starts_with('{');
        let body = if braced { &rest[1..] } else { rest };
        let len = body
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(body.len());
        if len > 0 {
            out.push(body[..len].to_owned());
        }
    }
    out
}

/// What Grafana's import and rendering rely on; every problem found, one per line.
pub fn problems(file: &str, d: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let mut bad = |what: String| out.push(format!("{file}: {what}"));
    if d["schemaVersion"].as_u64() != Some(SCHEMA_VERSION) {
        bad(format!(
            "schemaVersion {} (want {SCHEMA_VERSION})",
            d["schemaVersion"]
        ));
    }
    for key in ["uid", "title"] {
        if d[key].as_str().is_none_or(|s| s.is_empty() || s.len() > 40) {
            bad(format!("{key} missing or longer than 40 characters"));
        }
    }
    if !d["id"].is_null() {
        bad("id must be null: Grafana assigns it on import".into());
    }
    let vars = variables(d);
    let mut names = BTreeSet::new();
    for (name, kind, v) in &vars {
        if !names.insert(*name) {
            bad(format!("variable {name} defined twice"));
        }
        if ![
            "datasource",
            "query",
            "custom",
            "interval",
            "textbox",
            "constant",
        ]
        .contains(kind)
        {
            bad(format!("variable {name}: unknown type {kind}"));
        }
        if *kind == "query" {
            check_datasource(
                &vars,
                &v["datasource"],
                &format!("variable {name}"),
                &mut bad,
            );
        }
    }
    let known = |n: &str| names.contains(n) || BUILTIN_VARIABLES.contains(&n);
    for (name, _, v) in &vars {
        // A datasource variable has no query string; a query variable's is checked.
        let Some(query) = v["query"].as_str() else {
            continue;
        };
        for used in referenced_variables(query) {
            if !known(&used) {
                bad(format!("variable {name} uses undefined ${used}"));
            }
        }
    }
    check_grid(d, &mut bad);
    let mut ids = BTreeSet::new();
    for p in panels(d) {
        let title = p["title"].as_str().unwrap_or("?");
        let kind = p["type"].as_str().unwrap_or("");
        if !p["id"].as_u64().is_some_and(|id| ids.insert(id)) {
            bad(format!(
                "panel {title:?}: id {} missing or not unique",
                p["id"]
            ));
        }
        if !PANEL_TYPES.contains(&kind) {
            bad(format!("panel {title:?}: unknown type {kind:?}"));
        }
        for used in referenced_variables(&p.to_string()) {
            if !known(&used) {
                bad(format!("panel {title:?} uses undefined ${used}"));
            }
        }
        if kind == "row" {
            continue;
        }
        check_datasource(
            &vars,
            &p["datasource"],
            &format!("panel {title:?}"),
            &mut bad,
        );
        let targets = p["targets"].as_array().map_or(&[][..], Vec::as_slice);
        if targets.is_empty() {
            bad(format!("panel {title:?} has no query"));
        }
        let mut ref_ids = BTreeSet::new();
        for t in targets {
            if !ref_ids.insert(t["refId"].as_str().unwrap_or(""))
                || t["expr"].as_str().is_none_or(str::is_empty)
            {
                bad(format!(
                    "panel {title:?}: a query without expr or with a repeated refId"
                ));
            }
            if t["datasource"] != p["datasource"] {
                bad(format!(
                    "panel {title:?}: a query on another datasource than the panel's"
                ));
            }
        }
    }
    check_no_fixed_uids(d, "", &mut bad);
    out
}

/// A panel's or variable's datasource: `{type, uid: "${var}"}` naming a datasource variable
/// of that type.
fn check_datasource(
    vars: &[(&str, &str, &Value)],
    ds: &Value,
    whose: &str,
    bad: &mut impl FnMut(String),
) {
    let (Some(kind), Some(uid)) = (ds["type"].as_str(), ds["uid"].as_str()) else {
        return bad(format!("{whose}: datasource {ds} is not {{type, uid}}"));
    };
    let var = uid.strip_prefix("${").and_then(|u| u.strip_suffix('}'));
    let matches = vars
        .iter()
        .any(|(name, t, v)| Some(*name) == var && *t == "datasource" && v["query"] == kind);
    if !matches {
        bad(format!(
            "{whose}: datasource {ds} is not a datasource variable of type {kind}"
        ));
    }
}

/// Rows span the grid; panels fit in 24 columns and do not overlap.
fn check_grid(d: &Value, bad: &mut impl FnMut(String)) {
    let mut placed: Vec<(&str, [u64; 4])> = Vec::new();
    for p in d["panels"].as_array().into_iter().flatten() {
        let title = p["title"].as_str().unwrap_or("?");
        let g = &p["gridPos"];
        let [Some(h), Some(w), Some(x), Some(y)] = ["h", "w", "x", "y"].map(|k| g[k].as_u64())
        else {
            bad(format!("panel {title:?}: gridPos {g} lacks h, w, x or y"));
            continue;
        };
        if h == 0 || w == 0 || x + w > GRID_WIDTH {
            bad(format!(
                "panel {title:?}: gridPos {g} outside the 24-column grid"
            ));
        }
        if p["type"] == "row" && (h, w, x) != (1, GRID_WIDTH, 0) {
            bad(format!(
                "row {title:?}: gridPos {g} is not a full-width row"
            ));
        }
        for (other, [ox, oy, ow, oh]) in &placed {
            if x < ox + ow && *ox < x + w && y < oy + oh && *oy < y + h {
                bad(format!("panels {title:?} and {other:?} overlap"));
            }
        }
        placed.push((title, [x, y, w, h]));
    }
}

/// No datasource anywhere is a fixed uid or a bare name: they differ in every Grafana.
fn check_no_fixed_uids(v: &Value, path: &str, bad: &mut impl FnMut(String)) {
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                let here = format!("{path}.{k}");
                if k == "datasource" {
                    let uid = child["uid"].as_str().unwrap_or("");
                    let builtin = child["type"] == "grafana" && uid == "-- Grafana --";
                    if !(uid.starts_with("${") || builtin) {
                        bad(format!("{here}: fixed datasource {child}"));
                    }
                }
                check_no_fixed_uids(child, &here, bad);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                check_no_fixed_uids(child, &format!("{path}[{i}]"), bad);
            }
        }
        _ => {}
    }
}
