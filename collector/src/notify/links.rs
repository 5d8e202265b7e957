//! Links in alerts: the PromQL that shows each cause on vigil's metrics, as a Prometheus graph
//! URL and a Grafana Explore URL when those are configured.
use url::form_urlencoded::byte_serialize;

use crate::alerts::model::{Alert, Cause};

use super::config::Links;

/// A PromQL string literal (Go escapes: `\` and `"`, newlines).
fn quoted(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The queries that show this alert: the cause on vigil's metrics, then nginx's 502/504s.
pub fn queries(a: &Alert) -> Vec<String> {
    let node = quoted(&a.key.node);
    let sel = format!("node={node},upstream={}", quoted(&a.key.upstream));
    let cause = match a.key.cause {
        Cause::UpstreamDown | Cause::UpstreamUnreachable => {
            format!("sum by (result) (rate(vigil_upstream_connects_total{{{sel}}}[5m]))")
        }
        Cause::UpstreamSaturated => format!("sum by (comm, pid) (vigil_process_cpu_ratio{{{sel}}})"),
        Cause::UpstreamBacklogFull => format!("vigil_upstream_accept_queue_ratio{{{sel}}}"),
        Cause::UpstreamReset => format!("sum(rate(vigil_upstream_resets_total{{{sel}}}[5m]))"),
        Cause::UpstreamSlow => format!(
            "histogram_quantile(0.9, sum by (le) (rate(vigil_upstream_first_byte_seconds_bucket{{{sel}}}[5m])))"
        ),
        // nginx's own upstream label names the group, not host:port: the node's errors.
        Cause::NoLiveUpstreams => {
            format!("sum by (upstream, error) (rate(vigil_nginx_upstream_errors_total{{node={node}}}[5m]))")
        }
    };
    let nginx = format!(
        "sum by (status) (rate(vigil_nginx_responses_total{{node={node},status=~\"502|504\"}}[5m]))"
    );
    vec![cause, nginx]
}

fn encode(text: &str) -> String {
    byte_serialize(text.as_bytes()).collect()
}

/// One Prometheus graph page with a panel per query, over the last hour.
pub fn prometheus_graph(base: &str, queries: &[String]) -> String {
    let panels: Vec<String> = queries
        .iter()
        .enumerate()
        .map(|(i, q)| format!("g{i}.expr={}&g{i}.tab=0&g{i}.range_input=1h", encode(q)))
        .collect();
    format!("{base}/graph?{}", panels.join("&"))
}

/// Grafana Explore on its default data source (the `left` state Grafana still reads).
pub fn grafana_explore(base: &str, queries: &[String]) -> String {
    let targets: Vec<serde_json::Value> = queries
        .iter()
        .zip('A'..)
        .map(|(q, id)| serde_json::json!({ "refId": id.to_string(), "expr": q }))
        .collect();
    let state =
        serde_json::json!({ "queries": targets, "range": { "from": "now-1h", "to": "now" } });
    format!("{base}/explore?left={}", encode(&state.to_string()))
}

/// (name, URL) of every configured link for this alert.
pub fn for_alert(a: &Alert, links: &Links) -> Vec<(&'static str, String)> {
    let queries = queries(a);
    let mut out = Vec::new();
    if let Some(base) = &links.prometheus {
        out.push(("Prometheus", prometheus_graph(base, &queries)));
    }
    if let Some(base) = &links.grafana {
        out.push(("Grafana", grafana_explore(base, &queries)));
    }
    if let Some(base) = &links.external {
        out.push(("vigil", format!("{base}/api/v1/alerts")));
    }
    out
}

/// The alert's `generatorURL`: its Prometheus graph, else the collector's alert list.
pub fn generator(a: &Alert, links: &Links) -> Option<String> {
    match (&links.prometheus, &links.external) {
        (Some(base), _) => Some(prometheus_graph(base, &queries(a))),
        (None, Some(base)) => Some(format!("{base}/api/v1/alerts")),
        (None, None) => None,
    }
}
