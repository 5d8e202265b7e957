//! `cargo xtask dashboards [--check]`: the Grafana dashboards under dashboards/grafana/ are
//! generated from the definitions in `upstreams` and `incidents`, so panel ids, the grid and
//! the datasource references stay consistent; `--check` (and the test below) fails when the
//! committed JSON differs from what the definitions produce.
use std::path::PathBuf;

use anyhow::{bail, Context};
use serde_json::{json, Value};

use crate::cmd::workspace_root;

mod incidents;
mod upstreams;

/// Grafana 10.x's dashboard schema; older Grafanas migrate it on import.
pub const SCHEMA_VERSION: u64 = 39;
const GRID_WIDTH: u32 = 24;

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Prometheus,
    Loki,
}

impl Source {
    /// Every panel names its datasource through a dashboard variable, never a uid.
    fn reference(self) -> Value {
        match self {
            Source::Prometheus => json!({"type": "prometheus", "uid": "${datasource}"}),
            Source::Loki => json!({"type": "loki", "uid": "${loki}"}),
        }
    }
}

pub struct Query {
    pub expr: String,
    pub legend: &'static str,
    /// One value per series at the end of the range (tables) instead of a range.
    pub instant: bool,
    /// `heatmap` for bucket series, `table` for tables.
    pub format: Option<&'static str>,
}

/// A range query with a legend.
pub fn range(expr: impl Into<String>, legend: &'static str) -> Query {
    Query {
        expr: expr.into(),
        legend,
        instant: false,
        format: None,
    }
}

/// Bucket rates drawn as a heatmap, one row per `le`.
pub fn heatmap(expr: impl Into<String>) -> Query {
    Query {
        format: Some("heatmap"),
        ..range(expr, "{{le}}")
    }
}

/// A LogQL log query (Loki panels have no legend).
pub fn log(expr: impl Into<String>) -> Query {
    range(expr, "")
}

/// One row per series at the end of the range.
pub fn table(expr: impl Into<String>) -> Query {
    Query {
        instant: true,
        format: Some("table"),
        ..range(expr, "")
    }
}

pub struct Panel {
    pub kind: &'static str,
    pub title: &'static str,
    pub description: &'static str,
    pub width: u32,
    pub height: u32,
    pub source: Source,
    pub queries: Vec<Query>,
    /// `fieldConfig.defaults` (unit, thresholds, mappings).
    pub defaults: Value,
    pub options: Value,
    pub transformations: Value,
}

impl Panel {
    pub fn new(kind: &'static str, title: &'static str, description: &'static str) -> Panel {
        Panel {
            kind,
            title,
            description,
            width: 12,
            height: 8,
            source: Source::Prometheus,
            queries: Vec::new(),
            defaults: json!({}),
            options: json!({}),
            transformations: json!([]),
        }
    }
    pub fn size(mut self, width: u32, height: u32) -> Panel {
        (self.width, self.height) = (width, height);
        self
    }
    pub fn query(mut self, q: Query) -> Panel {
        self.queries.push(q);
        self
    }
    pub fn unit(mut self, unit: &str) -> Panel {
        self.defaults["unit"] = json!(unit);
        self
    }
    pub fn defaults(mut self, extra: Value) -> Panel {
        merge(&mut self.defaults, extra);
        self
    }
    pub fn options(mut self, extra: Value) -> Panel {
        merge(&mut self.options, extra);
        self
    }
    pub fn transform(mut self, t: Value) -> Panel {
        self.transformations
            .as_array_mut()
            .expect("an array")
            .push(t);
        self
    }
    pub fn loki(mut self) -> Panel {
        self.source = Source::Loki;
        self
    }
}

fn merge(into: &mut Value, extra: Value) {
    if let (Value::Object(into), Value::Object(extra)) = (into, extra) {
        into.extend(extra);
    }
}

pub struct Row {
    pub title: &'static str,
    pub panels: Vec<Panel>,
}

pub struct Dashboard {
    pub file: &'static str,
    pub uid: &'static str,
    pub title: &'static str,
    pub description: &'static str,
    pub variables: Vec<Value>,
    pub rows: Vec<Row>,
}

/// `datasource`-type variable: the user picks one of the Grafana datasources of that type;
/// left empty, Grafana takes the default one of the type.
pub fn datasource_variable(name: &str, label: &str, kind: &str) -> Value {
    json!({
        "name": name, "label": label, "type": "datasource", "query": kind,
        "current": {}, "hide": 0, "includeAll": false, "multi": false,
        "options": [], "refresh": 1, "regex": "", "skipUrlSync": false
    })
}

/// A Prometheus `label_values(...)` variable; `multi` variables offer All (`.*`).
pub fn query_variable(name: &str, label: &str, query: &str, multi: bool) -> Value {
    let mut v = json!({
        "name": name, "label": label, "type": "query",
        "datasource": Source::Prometheus.reference(),
        "definition": query, "query": query,
        "current": {}, "hide": 0, "includeAll": multi, "multi": multi,
        "options": [], "refresh": 2, "regex": "", "skipUrlSync": false, "sort": 1
    });
    if multi {
        v["allValue"] = json!(".*");
    }
    v
}

impl Dashboard {
    /// Grafana's JSON model: rows as row panels, the rest placed left to right and wrapped at
    /// the grid's 24 columns; ids in order.
    pub fn render(&self) -> Value {
        let mut panels = Vec::new();
        let (mut id, mut y) = (0u32, 0u32);
        for row in &self.rows {
            id += 1;
            panels.push(json!({
                "type": "row", "id": id, "title": row.title, "collapsed": false,
                "gridPos": {"h": 1, "w": GRID_WIDTH, "x": 0, "y": y}, "panels": []
            }));
            y += 1;
            let (mut x, mut line_height) = (0, 0);
            for p in &row.panels {
                if x + p.width > GRID_WIDTH {
                    (x, y, line_height) = (0, y + line_height, 0);
                }
                id += 1;
                panels.push(panel(p, id, x, y));
                x += p.width;
                line_height = line_height.max(p.height);
            }
            y += line_height;
        }
        json!({
            "annotations": {"list": [{
                "builtIn": 1, "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                "enable": true, "hide": true, "iconColor": "rgba(0, 211, 255, 1)",
                "name": "Annotations & Alerts", "type": "dashboard"
            }]},
            "description": self.description,
            "editable": true,
            "fiscalYearStartMonth": 0,
            "graphTooltip": 1,
            "id": null,
            "links": [{
                "type": "dashboards", "tags": ["vigil"], "title": "vigil", "asDropdown": false,
                "includeVars": true, "keepTime": true, "icon": "external link",
                "targetBlank": false, "tooltip": "", "url": ""
            }],
            "panels": panels,
            "refresh": "30s",
            "schemaVersion": SCHEMA_VERSION,
            "tags": ["vigil"],
            "templating": {"list": self.variables},
            "time": {"from": "now-1h", "to": "now"},
            "timepicker": {},
            "timezone": "",
            "title": self.title,
            "uid": self.uid,
            "version": 1,
            "weekStart": ""
        })
    }
}

fn panel(p: &Panel, id: u32, x: u32, y: u32) -> Value {
    let targets: Vec<Value> = p
        .queries
        .iter()
        .zip(b'A'..)
        .map(|(q, letter)| {
            let mut t = json!({
                "refId": (letter as char).to_string(),
                "datasource": p.source.reference(),
                "expr": q.expr,
                "editorMode": "code",
            });
            match p.source {
                Source::Prometheus => {
                    t["legendFormat"] = json!(q.legend);
                    t["range"] = json!(!q.instant);
                    t["instant"] = json!(q.instant);
                    if let Some(format) = q.format {
                        t["format"] = json!(format);
                    }
                }
                Source::Loki => t["queryType"] = json!("range"),
            }
            t
        })
        .collect();
    json!({
        "type": p.kind,
        "id": id,
        "title": p.title,
        "description": p.description,
        "datasource": p.source.reference(),
        "gridPos": {"h": p.height, "w": p.width, "x": x, "y": y},
        "targets": targets,
        "fieldConfig": {"defaults": p.defaults, "overrides": []},
        "options": p.options,
        "transformations": p.transformations,
    })
}

fn dashboards() -> [Dashboard; 2] {
    [upstreams::dashboard(), incidents::dashboard()]
}

fn dir() -> PathBuf {
    workspace_root().join("dashboards/grafana")
}

/// Each dashboard's file and its JSON text as written (pretty, trailing newline).
fn generated() -> anyhow::Result<Vec<(PathBuf, String)>> {
    dashboards()
        .iter()
        .map(|d| {
            let text = serde_json::to_string_pretty(&d.render())?;
            Ok((dir().join(d.file), text + "\n"))
        })
        .collect()
}

/// Writes the dashboards, or with `check` fails naming each file that differs.
pub fn run(check: bool) -> anyhow::Result<()> {
    let mut stale = Vec::new();
    for (path, text) in generated()? {
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        if committed == text {
            continue;
        }
        if check {
            stale.push(path.display().to_string());
        } else {
            std::fs::write(&path, text).with_context(|| format!("{}", path.display()))?;
            println!("wrote {}", path.display());
        }
    }
    if !stale.is_empty() {
        bail!(
            "out of date (run `cargo xtask dashboards`): {}",
            stale.join(", ")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn committed_dashboards_are_the_generated_ones() {
        for (path, text) in generated().unwrap() {
            let committed = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert!(
                committed == text,
                "{} differs from its definition: run `cargo xtask dashboards`",
                path.display()
            );
        }
    }

    #[test]
    fn rows_wrap_at_the_grid_width() {
        let d = Dashboard {
            file: "t.json",
            uid: "t",
            title: "t",
            description: "",
            variables: vec![],
            rows: vec![Row {
                title: "r",
                panels: vec![
                    Panel::new("stat", "a", "").size(16, 4),
                    Panel::new("stat", "b", "").size(16, 6),
                    Panel::new("stat", "c", "").size(8, 6),
                ],
            }],
        };
        let v = d.render();
        let grid: Vec<(u64, u64)> = v["panels"].as_array().unwrap()[1..]
            .iter()
            .map(|p| {
                (
                    p["gridPos"]["x"].as_u64().unwrap(),
                    p["gridPos"]["y"].as_u64().unwrap(),
                )
            })
            .collect();
        assert_eq!(grid, [(0, 1), (0, 5), (16, 5)]);
    }
}
