//! "vigil / Incidents": the root-cause alerts the collector raised, on every node, and the
//! log lines behind them on one node (Loki).
use serde_json::json;

use super::{datasource_variable, log, query_variable, range, table, Dashboard, Panel, Row};

/// 0/1 of `vigil_alerts_firing` as words, coloured.
fn firing_mappings() -> serde_json::Value {
    json!({
        "color": {"mode": "thresholds"},
        "thresholds": {"mode": "absolute", "steps": [
            {"color": "green", "value": null}, {"color": "red", "value": 1}]},
        "mappings": [{"type": "value", "options": {
            "0": {"text": "resolved", "color": "green", "index": 0},
            "1": {"text": "firing", "color": "red", "index": 1}}}]
    })
}

fn alerts() -> Row {
    let count = Panel::new(
        "stat",
        "Alerts firing",
        "Root-cause alerts firing now, on every node.",
    )
    .size(6, 6)
    .query(range(
        "count(vigil_alerts_firing == 1) or vector(0)",
        "firing",
    ))
    .defaults(json!({"thresholds": {"mode": "absolute", "steps": [
            {"color": "green", "value": null}, {"color": "red", "value": 1}]}}))
    .options(
        json!({"colorMode": "background", "graphMode": "none", "justifyMode": "auto",
                        "textMode": "value", "reduceOptions": {"calcs": ["lastNotNull"],
                        "fields": "", "values": false}}),
    );
    let by_cause = Panel::new("bargauge", "Firing by cause", "Alerts firing now, by cause (alertname).")
        .size(18, 6)
        .query(range("sum by (alertname) (vigil_alerts_firing == 1)", "{{alertname}}"))
        .options(json!({"displayMode": "basic", "orientation": "horizontal", "showUnfilled": true,
                        "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": false}}));
    let firing = Panel::new("table", "Firing alerts", "One row per (node, upstream, cause) firing now. The summary, evidence and next step are in the alert lines below and in the notifications.")
        .size(24, 7)
        .query(table("max by (node, upstream, alertname) (vigil_alerts_firing == 1)"))
        .transform(json!({"id": "organize", "options": {
            "excludeByName": {"Time": true, "Value": true},
            "indexByName": {"node": 0, "upstream": 1, "alertname": 2}}}))
        .options(json!({"showHeader": true, "cellHeight": "sm",
                        "footer": {"show": false, "reducer": ["sum"], "fields": ""}}));
    let history = Panel::new(
        "state-timeline",
        "Alert history",
        "When each alert fired and resolved.",
    )
    .size(24, 8)
    .query(range(
        "max by (node, upstream, alertname) (vigil_alerts_firing)",
        "{{node}} {{upstream}} {{alertname}}",
    ))
    .defaults(firing_mappings())
    .options(
        json!({"showValue": "never", "mergeValues": true, "rowHeight": 0.9,
                        "alignValue": "left", "legend": {"showLegend": false},
                        "tooltip": {"mode": "single", "sort": "none"}}),
    );
    let lines = json!({"legend": {"displayMode": "list", "placement": "bottom", "showLegend": true},
                       "tooltip": {"mode": "multi", "sort": "desc"}});
    Row {
        title: "Alerts (all nodes)",
        panels: vec![
            count,
            by_cause,
            firing,
            history,
            Panel::new("timeseries", "Notifications", "Deliveries by notifier (email, alertmanager, webhook) and result (sent, retried, failed).")
                .unit("ops")
                .options(lines.clone())
                .query(range("sum by (notifier, result) (rate(vigil_notifications_total[$__rate_interval]))", "{{notifier}} {{result}}")),
            Panel::new("timeseries", "Alert transitions", "Alerts that fired or resolved, by cause.")
                .unit("short")
                .options(lines)
                .query(range("sum by (alertname, state) (increase(vigil_alert_transitions_total[$__rate_interval]))", "{{alertname}} {{state}}")),
            logs("Alert lines", "Every alert that fired or resolved, as the collector wrote it to Loki: cause, upstream, status, failed requests, summary and next step.")
                .query(log(r#"{job="vigil", source="alert"}"#)),
        ],
    }
}

fn logs(title: &'static str, description: &'static str) -> Panel {
    Panel::new("logs", title, description)
        .loki()
        .size(24, 10)
        .options(
            json!({"showTime": true, "showLabels": false, "showCommonLabels": false,
                        "wrapLogMessage": true, "prettifyLogMessage": false,
                        "enableLogDetails": true, "dedupStrategy": "none",
                        "sortOrder": "Descending"}),
        )
}

fn node_logs() -> Row {
    Row {
        title: "Logs on $node",
        panels: vec![
            logs("nginx upstream errors", "error.log lines about upstreams on the node: connect() failed, timed out, reset, no live upstreams.")
                .query(log(r#"{job="vigil", source="nginx_error", node="$node"} |= "upstream""#)),
            logs("Failed connections (probes)", "Connections the probes saw fail, reset or close silently on the node: result, source and destination, the process, connect time and SYN retries.")
                .query(log(r#"{job="vigil", source="ebpf", node="$node"}"#)),
        ],
    }
}

pub fn dashboard() -> Dashboard {
    Dashboard {
        file: "vigil-incidents.json",
        uid: "vigil-incidents",
        title: "vigil / Incidents",
        description: "Root-cause alerts for nginx's 502s and 504s on every node, and the lines behind them on one node.",
        variables: vec![
            datasource_variable("datasource", "Prometheus", "prometheus"),
            datasource_variable("loki", "Loki", "loki"),
            query_variable("node", "Node", "label_values(vigil_upstream_listening, node)", false),
        ],
        rows: vec![alerts(), node_logs()],
    }
}
