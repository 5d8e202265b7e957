//! The Prometheus rules: promtool's checks and unit tests, which cause each test covers, and
//! the rules and query results a running Prometheus reports.
use std::{
    collections::{BTreeMap, BTreeSet},
    path::PathBuf,
    process::Command,
};

use serde_json::Value;
use vigil_e2e::{http, prometheus::Prometheus};

pub fn rules_file() -> PathBuf {
    super::grafana::dir().join("prometheus/vigil-rules.yml")
}

/// Runs promtool with `args` from dashboards/prometheus/; its output, or a panic with it.
pub fn promtool(args: &[&str]) -> String {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(super::grafana::dir().join("prometheus"))
        .output()
        .expect("promtool (installed by cargo xtask setup)");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "promtool {args:?}:\n{text}");
    text
}

pub fn unit_test_files() -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir(super::grafana::dir().join("prometheus/tests"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yml"))
        .map(|n| format!("tests/{n}"))
        .collect();
    files.sort();
    files
}

/// The collector's causes, read from its `Cause` enum (collector/src/alerts/model.rs).
pub fn collector_causes() -> BTreeSet<String> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../collector/src/alerts/model.rs");
    let text = std::fs::read_to_string(&path).unwrap();
    let body = text
        .split_once("pub enum Cause {")
        .and_then(|(_, rest)| rest.split_once('}'))
        .expect("enum Cause in model.rs")
        .0;
    body.lines()
        .map(str::trim)
        .filter_map(|l| l.strip_suffix(','))
        .filter(|l| l.chars().all(|c| c.is_ascii_alphanumeric()) && !l.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The alert names of the rules file (`- alert: Name`).
pub fn alert_names() -> BTreeSet<String> {
    std::fs::read_to_string(rules_file())
        .unwrap()
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
        .map(|n| n.trim().to_owned())
        .collect()
}

/// Per alert name, whether the unit tests expect it (firing, not firing): each
/// `alertname: X` is followed by `exp_alerts: []` (silent) or `exp_alerts:` with alerts.
pub fn unit_test_coverage() -> BTreeMap<String, (bool, bool)> {
    let mut seen: BTreeMap<String, (bool, bool)> = BTreeMap::new();
    for file in unit_test_files() {
        let text =
            std::fs::read_to_string(super::grafana::dir().join("prometheus").join(&file)).unwrap();
        let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
        while let Some(line) = lines.next() {
            let Some(name) = line.strip_prefix("alertname: ") else {
                continue;
            };
            let entry = seen.entry(name.to_owned()).or_default();
            match lines.next() {
                Some("exp_alerts: []") => entry.1 = true,
                Some("exp_alerts:") => entry.0 = true,
                other => panic!("{file}: alertname {name} followed by {other:?}, not exp_alerts"),
            }
        }
    }
    seen
}

/// A rule as the running Prometheus loaded it.
pub struct LoadedRule {
    pub name: String,
    /// `recording` or `alerting`.
    pub kind: String,
    pub query: String,
    pub health: String,
    pub last_error: String,
    /// Alerting rules: inactive, pending or firing.
    pub state: String,
}

pub fn loaded_rules(prom: &Prometheus) -> Vec<LoadedRule> {
    let body = api(prom, "/api/v1/rules").expect("GET /api/v1/rules");
    let mut out = Vec::new();
    for group in body["data"]["groups"].as_array().expect("rule groups") {
        for r in group["rules"].as_array().unwrap() {
            let text = |k: &str| r[k].as_str().unwrap_or("").to_owned();
            out.push(LoadedRule {
                name: text("name"),
                kind: text("type"),
                query: text("query"),
                health: text("health"),
                last_error: text("lastError"),
                state: text("state"),
            });
        }
    }
    out
}

/// A Prometheus API answer with status success, else the error it gave.
fn api(prom: &Prometheus, path: &str) -> Result<Value, String> {
    let r = http::get(prom.port, path).map_err(|e| e.to_string())?;
    let v: Value = serde_json::from_str(&r.body).map_err(|e| format!("{e}: {}", r.body))?;
    if v["status"] != "success" {
        return Err(format!("{} {}: {}", r.status, v["errorType"], v["error"]));
    }
    Ok(v)
}

/// One sample of an instant query: its labels and value.
pub type Sample = (BTreeMap<String, String>, f64);

/// An instant query's samples.
pub fn query(prom: &Prometheus, promql: &str) -> Result<Vec<Sample>, String> {
    let v = api(
        prom,
        &format!("/api/v1/query?query={}", http::encode(promql)),
    )?;
    let result = v["data"]["result"].as_array().ok_or("no result")?;
    result
        .iter()
        .map(|s| {
            let labels = serde_json::from_value(s["metric"].clone())
                .map_err(|e| format!("sample labels {}: {e}", s["metric"]))?;
            let value = s["value"][1]
                .as_str()
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| format!("sample value {}", s["value"]))?;
            Ok((labels, value))
        })
        .collect()
}

/// The `upstream` labels an instant query returns.
pub fn upstreams_of(prom: &Prometheus, promql: &str) -> BTreeSet<String> {
    query(prom, promql)
        .unwrap_or_else(|e| panic!("{promql}: {e}"))
        .into_iter()
        .filter_map(|(labels, _)| labels.get("upstream").cloned())
        .collect()
}
