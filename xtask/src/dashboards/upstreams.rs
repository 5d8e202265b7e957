//! "vigil / Upstreams": what nginx's upstreams do, per node and upstream — connects by
//! result and why they fail, connect and first-byte times, silent closes, SYN retries, the
//! accept queue, the processes serving each port, nginx's statuses and the agents' health.
use serde_json::json;

use super::{datasource_variable, heatmap, query_variable, range, Dashboard, Panel, Row};

/// The node and upstream filters every upstream series takes.
const SEL: &str = r#"node=~"$node", upstream=~"$upstream""#;
const UPSTREAM_PROCESSES: &str = r#"role=~"upstream_owner|upstream_worker""#;

fn rate(metric: &str, extra: &str) -> String {
    format!("rate({metric}{{{SEL}{extra}}}[$__rate_interval])")
}

fn lines(legend_right: bool) -> serde_json::Value {
    let placement = if legend_right { "right" } else { "bottom" };
    json!({
        "legend": {"displayMode": "table", "placement": placement, "showLegend": true,
                   "calcs": ["lastNotNull", "max"]},
        "tooltip": {"mode": "multi", "sort": "desc"}
    })
}

fn timeseries(title: &'static str, description: &'static str) -> Panel {
    Panel::new("timeseries", title, description)
        .options(lines(false))
        .defaults(json!({"custom": {"fillOpacity": 10, "showPoints": "never", "spanNulls": false}}))
}

/// p50, p90 and p99 from the recording rules (dashboards/prometheus/vigil-rules.yml).
fn with_percentiles(panel: Panel, metric: &str) -> Panel {
    let legends = ["{{upstream}} p50", "{{upstream}} p90", "{{upstream}} p99"];
    ["p50", "p90", "p99"]
        .into_iter()
        .zip(legends)
        .map(|(p, legend)| {
            range(
                format!("max by (upstream) (vigil:{metric}:{p}_5m{{{SEL}}})"),
                legend,
            )
        })
        .fold(panel.unit("s").options(lines(true)), Panel::query)
}

fn bucket_heatmap(title: &'static str, description: &'static str, metric: &str) -> Panel {
    Panel::new("heatmap", title, description)
        .query(heatmap(format!(
            "sum by (le) ({})",
            rate(&format!("{metric}_bucket"), "")
        )))
        .options(json!({
            "calculate": false,
            "yAxis": {"unit": "s", "axisPlacement": "left"},
            "rowsFrame": {"layout": "auto"},
            "color": {"mode": "scheme", "scheme": "Oranges", "scale": "exponential",
                      "exponent": 0.5, "steps": 64, "fill": "dark-orange"},
            "cellGap": 1,
            "filterValues": {"le": 1e-9},
            "tooltip": {"mode": "single", "yHistogram": true},
            "legend": {"show": true}
        }))
}

fn traffic() -> Row {
    let causes = timeseries(
        "Failure causes",
        "Why requests to an upstream fail: connects that did not complete (probes, by result), requests that got no byte back (silent closes: nginx's read timeout), connections reset, and nginx's error.log by cause.",
    )
    .unit("ops")
    .query(range(format!("sum by (upstream, result) ({})", rate("vigil_upstream_connects_total", r#", result!="ok""#)), "{{upstream}} connect {{result}}"))
    .query(range(format!("sum by (upstream) ({})", rate("vigil_upstream_silent_closes_total", "")), "{{upstream}} no response (silent close)"))
    .query(range(format!("sum by (upstream) ({})", rate("vigil_upstream_resets_total", "")), "{{upstream}} reset"))
    .query(range(
        format!("sum by (upstream, error) ({})", rate("vigil_nginx_upstream_errors_total", "")),
        "{{upstream}} error.log {{error}}",
    ));
    Row {
        title: "Traffic and failures",
        panels: vec![
            timeseries("Connects by result", "nginx's connects to each upstream, by outcome (probes): ok, refused, timeout, reset, unreachable, error.")
                .unit("ops")
                .query(range(format!("sum by (upstream, result) ({})", rate("vigil_upstream_connects_total", "")), "{{upstream}} {{result}}")),
            causes,
            timeseries("nginx responses by status", "Responses nginx sent, by status, from the access log (every server of the node).")
                .unit("reqps")
                .query(range(r#"sum by (status) (rate(vigil_nginx_responses_total{node=~"$node"}[$__rate_interval]))"#, "{{status}}")),
            timeseries("Share of 502 and 504 responses", "502s and 504s over all responses nginx sent (access log).")
                .unit("percentunit")
                .query(range(
                    r#"sum by (status) (rate(vigil_nginx_responses_total{node=~"$node", status=~"502|504"}[$__rate_interval])) / scalar(sum(rate(vigil_nginx_responses_total{node=~"$node"}[$__rate_interval])))"#,
                    "{{status}}",
                )),
        ],
    }
}

fn latency() -> Row {
    let connect = timeseries("Connect time", "Handshake time of successful connects, p50/p90/p99 over 5 minutes (recording rules vigil:upstream_connect_duration_seconds:*). SYN retries show as steps of 1, 3, 7 s.");
    let first_byte = timeseries("Time to first byte", "From the request's first send to the response's first byte, p50/p90/p99 over 5 minutes (recording rules vigil:upstream_first_byte_seconds:*).");
    Row {
        title: "Latency",
        panels: vec![
            with_percentiles(connect, "upstream_connect_duration_seconds"),
            with_percentiles(first_byte, "upstream_first_byte_seconds"),
            bucket_heatmap(
                "Connect time distribution",
                "Successful connects per handshake-time bucket.",
                "vigil_upstream_connect_duration_seconds",
            ),
            bucket_heatmap(
                "First-byte time distribution",
                "Responses per time-to-first-byte bucket.",
                "vigil_upstream_first_byte_seconds",
            ),
        ],
    }
}

fn listeners() -> Row {
    let listening = Panel::new(
        "state-timeline",
        "Listening",
        "Whether something listens on each upstream port (agent's socket table).",
    )
    .query(range(
        format!("max by (upstream) (vigil_upstream_listening{{{SEL}}})"),
        "{{upstream}}",
    ))
    .defaults(json!({
        "color": {"mode": "thresholds"},
        "thresholds": {"mode": "absolute", "steps": [
            {"color": "red", "value": null}, {"color": "green", "value": 1}]},
        "mappings": [{"type": "value", "options": {
            "0": {"text": "nothing listens", "color": "red", "index": 0},
            "1": {"text": "listening", "color": "green", "index": 1}}}]
    }))
    .options(
        json!({"showValue": "never", "mergeValues": true, "rowHeight": 0.9,
                        "alignValue": "left", "legend": {"showLegend": false},
                        "tooltip": {"mode": "single", "sort": "none"}}),
    );
    Row {
        title: "Listeners",
        panels: vec![
            listening,
            timeseries("Accept-queue fill", "Accept queue over the listener's backlog; at 100% the kernel drops new SYNs (UpstreamBacklogFull).")
                .unit("percentunit")
                .query(range(format!("max by (upstream) (vigil_upstream_accept_queue_ratio{{{SEL}}})"), "{{upstream}}"))
                .defaults(json!({"thresholds": {"mode": "absolute", "steps": [
                    {"color": "green", "value": null}, {"color": "red", "value": 1}]},
                    "custom": {"thresholdsStyle": {"mode": "line"}}})),
            timeseries("Silent closes", "Requests that got no byte back before nginx closed the connection (read timeouts: UpstreamSaturated or UpstreamSlow).")
                .unit("ops")
                .query(range(format!("sum by (upstream) ({})", rate("vigil_upstream_silent_closes_total", "")), "{{upstream}}")),
            timeseries("SYN retransmits", "SYNs sent again: dropped by a full accept queue or a firewall, or lost on the way.")
                .unit("ops")
                .query(range(format!("sum by (upstream) ({})", rate("vigil_upstream_syn_retransmits_total", "")), "{{upstream}}")),
        ],
    }
}

fn processes() -> Row {
    let cpu = format!("vigil_process_cpu_ratio{{{SEL}, {UPSTREAM_PROCESSES}}}");
    Row {
        title: "Upstream processes",
        panels: vec![
            timeseries("CPU of each upstream's workers", "Cores used by each process serving an upstream port (its owner and the owner's workers), and their sum. Workers that are CPU-bound while requests time out: UpstreamSaturated.")
                .unit("short")
                .defaults(json!({"custom": {"axisLabel": "cores"}}))
                .query(range(format!("sum by (upstream, comm, pid) ({cpu})"), "{{upstream}} {{comm}} ({{pid}})"))
                .query(range(format!("sum by (upstream) ({cpu})"), "{{upstream}} all processes")),
            timeseries("Resident memory of upstream processes", "RSS of each process serving an upstream port.")
                .unit("bytes")
                .query(range(
                    format!("sum by (upstream, comm, pid) (vigil_process_resident_memory_bytes{{{SEL}, {UPSTREAM_PROCESSES}}})"),
                    "{{upstream}} {{comm}} ({{pid}})",
                )),
        ],
    }
}

fn collection() -> Row {
    let node = r#"node=~"$node""#;
    Row {
        title: "Collection health",
        panels: vec![
            timeseries("Probe events lost and connections untracked", "Events the agent's probes lost (ring buffer full) and connections they gave up tracking: when non-zero, the panels above undercount.")
                .unit("ops")
                .query(range(format!("sum by (node) (rate(vigil_agent_events_lost_total{{{node}}}[$__rate_interval]))"), "{{node}} events lost"))
                .query(range(format!("sum by (node) (rate(vigil_agent_connections_untracked_total{{{node}}}[$__rate_interval]))"), "{{node}} connections untracked")),
            timeseries("Agent spool", "Bytes waiting in each agent's spool while the collector is away or slow.")
                .unit("bytes")
                .query(range(format!("max by (node) (vigil_agent_spool_bytes{{{node}}})"), "{{node}}")),
        ],
    }
}

pub fn dashboard() -> Dashboard {
    Dashboard {
        file: "vigil-upstreams.json",
        uid: "vigil-upstreams",
        title: "vigil / Upstreams",
        description: "nginx's upstreams as vigil's agents see them: connects, failure causes, latency, listeners and the processes behind each port.",
        variables: vec![
            datasource_variable("datasource", "Prometheus", "prometheus"),
            query_variable("node", "Node", "label_values(vigil_upstream_listening, node)", true),
            query_variable(
                "upstream",
                "Upstream",
                r#"label_values(vigil_upstream_connects_total{node=~"$node"}, upstream)"#,
                true,
            ),
        ],
        rows: vec![traffic(), latency(), listeners(), processes(), collection()],
    }
}
