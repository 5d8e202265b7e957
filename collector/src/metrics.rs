//! Prometheus metrics (`vigil_*`, base units, `_total` counters) from what agents send.
//! Label values pass through `label_cap` (per-node budgets, cut lengths), so neither a port
//! scan nor a forged agent can explode cardinality, and series idle for `series_idle` expire.
use std::{
    collections::{HashMap, HashSet},
    sync::Mutex,
    time::{Duration, Instant},
};

use metrics::{counter, gauge, Unit};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use metrics_util::MetricKindMask;
use vigil_wire::{AgentHealth, Batch};

use crate::label_cap::LabelCap;

/// The bounds agents count healthy connections in (wire), so their summaries fill these
/// histograms exactly.
pub use vigil_wire::buckets::{CONNECT_BUCKETS, FIRST_BYTE_BUCKETS};

mod connections;

#[derive(Debug, thiserror::Error)]
#[error("cannot install the Prometheus recorder: {0}")]
pub struct MetricsError(String);

/// (name, unit, help) of every metric; also the metrics reference in the README.
pub const DESCRIPTIONS: &[(&str, Unit, &str)] = &[
    ("vigil_upstream_connects_total", Unit::Count, "Connects to an upstream by outcome (ok, refused, timeout, reset, unreachable, error)."),
    ("vigil_upstream_connect_duration_seconds", Unit::Seconds, "Handshake time of successful connects."),
    ("vigil_upstream_first_byte_seconds", Unit::Seconds, "Time from the request's first send to the response's first byte."),
    ("vigil_upstream_silent_closes_total", Unit::Count, "Connections the client closed after sending a request and receiving no byte (read timeouts)."),
    ("vigil_upstream_resets_total", Unit::Count, "Connections that received an RST."),
    ("vigil_upstream_syn_retransmits_total", Unit::Count, "SYN retransmits before a handshake completed or was abandoned."),
    ("vigil_upstream_listening", Unit::Count, "1 while something listens on the upstream port, else 0."),
    ("vigil_upstream_accept_queue_ratio", Unit::Count, "Accept queue length over the listener's backlog."),
    ("vigil_process_cpu_ratio", Unit::Count, "CPU used by a process over the sampling interval, in cores (1 = one core busy)."),
    ("vigil_process_resident_memory_bytes", Unit::Bytes, "Resident memory of a process."),
    ("vigil_nginx_responses_total", Unit::Count, "nginx responses by status, from the access log."),
    ("vigil_nginx_upstream_errors_total", Unit::Count, "nginx upstream errors by cause, from the error log (classified by errno)."),
    ("vigil_nginx_unparsed_lines_total", Unit::Count, "nginx log lines that matched no known layout (shipped raw)."),
    ("vigil_ingest_batches_total", Unit::Count, "Agent batches by result (accepted, duplicate, unauthorized, busy, timeout, aborted, too_large, decoded_too_large, too_many_records, undecodable, draining, internal_error)."),
    ("vigil_ingest_records_total", Unit::Count, "Records in accepted batches."),
    ("vigil_ingest_requests_in_flight", Unit::Count, "Ingest requests being read, decoded or applied (at most max_concurrent_ingests)."),
    ("vigil_tls_handshakes_failed_total", Unit::Count, "TLS handshakes on the collector's listener that failed or timed out."),
    ("vigil_agents_seen", Unit::Count, "Agents that reported health since the collector started."),
    ("vigil_agent_events_lost_total", Unit::Count, "Probe events an agent lost (ring buffer full)."),
    ("vigil_agent_connections_untracked_total", Unit::Count, "Connections whose tracking an agent's probes gave up (socket table set full)."),
    ("vigil_agent_spool_dropped_batches_total", Unit::Count, "Batches an agent dropped at its spool bound."),
    ("vigil_agent_batches_sent_total", Unit::Count, "Batches an agent delivered."),
    ("vigil_agent_batches_retried_total", Unit::Count, "Delivery attempts an agent retried (collector away, 429, 5xx)."),
    ("vigil_agent_spool_bytes", Unit::Bytes, "Bytes waiting in an agent's spool."),
    ("vigil_agent_capabilities_missing", Unit::Count, "Kernel capabilities an agent could not attach."),
    ("vigil_loki_lines_sent_total", Unit::Count, "Log lines Loki accepted."),
    ("vigil_loki_lines_retried_total", Unit::Count, "Log lines in pushes retried after 429, 5xx or a connection error."),
    ("vigil_loki_lines_failed_total", Unit::Count, "Log lines dropped: rejected alone by Loki (400) or refused by status."),
    ("vigil_loki_lines_dropped_total", Unit::Count, "Log lines dropped because the Loki queue was full."),
    ("vigil_loki_queue_lines", Unit::Count, "Log lines waiting for Loki in memory."),
    ("vigil_loki_spool_bytes", Unit::Bytes, "Log lines waiting for Loki on disk (encoded)."),
    ("vigil_alerts_firing", Unit::Count, "1 while an alert fires for (node, upstream, alertname), 0 once it resolved."),
    ("vigil_alert_transitions_total", Unit::Count, "Alerts that fired or resolved, by alertname and state."),
    ("vigil_alert_inputs_dropped_total", Unit::Count, "Evidence the alert engine did not keep at its bounds, by reason (nodes, upstreams, routes, workers, labels, alerts)."),
    ("vigil_alert_state_write_errors_total", Unit::Count, "Failed writes of the alert state file (alerts may be announced again after a restart)."),
    ("vigil_notifications_total", Unit::Count, "Alert notifications by notifier (email, alertmanager, webhook) and result (sent, retried, failed)."),
    ("vigil_notifications_dropped_total", Unit::Count, "Alert transitions a notifier dropped: its queue was full (oldest first), or too many alerts fired to re-send."),
    ("vigil_loki_spool_corrupt_total", Unit::Count, "Loki spool files that could not be read or decoded, renamed *.corrupt and kept for inspection."),
    ("vigil_label_values_capped_total", Unit::Count, "Label values replaced by `other` at the per-family limit."),
    ("vigil_connection_summary_samples_dropped_total", Unit::Count, "Connect and first-byte durations of agents' connection summaries not recorded: over the per-batch budget (their connects are counted)."),
];

fn describe() {
    for &(name, unit, help) in DESCRIPTIONS {
        if name.ends_with("_seconds") {
            metrics::describe_histogram!(name, unit, help);
        } else if name.ends_with("_total") {
            metrics::describe_counter!(name, unit, help);
        } else {
            metrics::describe_gauge!(name, unit, help);
        }
    }
}

/// Installs the global recorder; every series not updated for `idle` expires (the nodes that
/// left take their series with them).
pub fn install(idle: Duration) -> Result<PrometheusHandle, MetricsError> {
    let handle = builder(idle)?
        .install_recorder()
        .map_err(|e| MetricsError(e.to_string()))?;
    describe();
    Ok(handle)
}

/// The exporter's configuration: histogram buckets and idle expiry.
fn builder(idle: Duration) -> Result<PrometheusBuilder, MetricsError> {
    PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full("vigil_upstream_connect_duration_seconds".into()),
            CONNECT_BUCKETS,
        )
        .and_then(|b| {
            b.set_buckets_for_metric(
                Matcher::Full("vigil_upstream_first_byte_seconds".into()),
                FIRST_BYTE_BUCKETS,
            )
        })
        .map(|b| b.idle_timeout(MetricKindMask::ALL, Some(idle)))
        .map_err(|e| MetricsError(e.to_string()))
}

/// Agents report cumulative counters; the collector turns them into increments.
#[derive(Default)]
pub struct AgentCounters {
    /// Each agent's last reported totals, in the order the caller passes them, and when.
    last: Mutex<HashMap<String, (Vec<u64>, Instant)>>,
}

impl AgentCounters {
    /// Increments since the agent's previous report: one lookup per batch. A total below
    /// the last one means the agent restarted, and counts from zero. Agents silent for `idle`
    /// are forgotten.
    fn deltas<const N: usize>(&self, agent: &str, totals: [u64; N], idle: Duration) -> [u64; N] {
        let mut last = self.last.lock().expect("agent counters lock");
        let now = Instant::now();
        if last.len() > 64
            && last
                .values()
                .any(|(_, seen)| now.duration_since(*seen) >= idle)
        {
            last.retain(|_, (_, seen)| now.duration_since(*seen) < idle);
        }
        let (previous, seen) = match last.get_mut(agent) {
            Some(entry) => entry,
            None => last.entry(agent.to_owned()).or_insert((Vec::new(), now)),
        };
        *seen = now;
        previous.resize(N, 0);
        let mut added = [0; N];
        for ((added, prev), now) in added.iter_mut().zip(previous.iter_mut()).zip(totals) {
            *added = if now >= *prev { now - *prev } else { now };
            *prev = now;
        }
        added
    }

    pub fn agents(&self) -> usize {
        self.last.lock().expect("agent counters lock").len()
    }
}

pub struct Recorder {
    pub caps: LabelCap,
    pub agent_counters: AgentCounters,
    idle: Duration,
    /// Per node, the process gauges set by its last sample: a process missing from the next
    /// one has gone, and its gauges drop to 0 rather than show its last CPU until they expire.
    processes: Mutex<HashMap<String, HashSet<[String; 5]>>>,
}

impl Recorder {
    /// `label_value_limit` values per label, family and node; `max_nodes` nodes; agents and
    /// label values unused for `idle` are forgotten (their series expire then too).
    pub fn new(label_value_limit: usize, max_nodes: usize, idle: Duration) -> Self {
        Recorder {
            caps: LabelCap::new(label_value_limit, max_nodes, idle),
            agent_counters: AgentCounters::default(),
            idle,
            processes: Mutex::new(HashMap::new()),
        }
    }

    pub fn apply(&self, batch: &Batch) {
        let node = self.caps.node(&batch.node);
        self.connections(&node, batch);
        let upstreams = self.upstreams(&node, batch);
        self.processes(&node, batch, &upstreams);
        self.nginx(&node, batch);
        if let Some(h) = &batch.health {
            self.health(&node, &batch.agent_id, h);
        }
    }

    /// Upstream gauges; returns each port's `upstream` label so the processes serving it
    /// carry the same one.
    fn upstreams(&self, node: &str, batch: &Batch) -> HashMap<u32, String> {
        let mut names = HashMap::new();
        for u in &batch.upstreams {
            let upstream = self
                .caps
                .value("upstream", "upstream", node, &upstream_label(u));
            let labels = [("node", node.to_owned()), ("upstream", upstream.clone())];
            gauge!("vigil_upstream_listening", &labels).set(if u.listening { 1.0 } else { 0.0 });
            let ratio = if u.backlog > 0 {
                f64::from(u.accept_queue) / f64::from(u.backlog)
            } else {
                0.0
            };
            gauge!("vigil_upstream_accept_queue_ratio", &labels).set(ratio);
            names.insert(u.port, upstream);
        }
        names
    }

    fn processes(&self, node: &str, batch: &Batch, upstreams: &HashMap<u32, String>) {
        if batch.processes.is_empty() {
            return;
        }
        let mut now_set = HashSet::new();
        for p in &batch.processes {
            let role = p.role().label();
            let upstream = match p.upstream_port {
                0 => String::new(),
                // Not in this batch's upstream list: capped like every other upstream label.
                port => upstreams.get(&port).cloned().unwrap_or_else(|| {
                    self.caps
                        .value("upstream", "upstream", node, &format!("127.0.0.1:{port}"))
                }),
            };
            let values = [
                node.to_owned(),
                upstream,
                role.to_owned(),
                self.caps.value("process", "comm", node, &p.comm),
                self.caps.value("process", "pid", node, &p.pid.to_string()),
            ];
            let labels = process_labels(&values);
            if let Some(ratio) = p.cpu_ratio {
                gauge!("vigil_process_cpu_ratio", &labels).set(ratio);
            }
            gauge!("vigil_process_resident_memory_bytes", &labels).set(p.rss_bytes as f64);
            now_set.insert(values);
        }
        let mut known = self.processes.lock().expect("process gauges lock");
        if let Some(before) = known.insert(node.to_owned(), now_set) {
            let now_set = &known[node];
            for gone in before.difference(now_set) {
                let labels = process_labels(gone);
                gauge!("vigil_process_cpu_ratio", &labels).set(0.0);
                gauge!("vigil_process_resident_memory_bytes", &labels).set(0.0);
            }
        }
    }

    /// Counted per (status) and per (upstream, error) first: one registry lookup per series.
    fn nginx(&self, node: &str, batch: &Batch) {
        let mut statuses: HashMap<u32, u64> = HashMap::new();
        for a in batch.nginx_access.iter().filter(|a| a.parsed) {
            *statuses.entry(a.status).or_default() += 1;
        }
        for (status, n) in statuses {
            let status = self
                .caps
                .value("nginx", "status", node, &status.to_string());
            counter!("vigil_nginx_responses_total", "node" => node.to_owned(), "status" => status)
                .increment(n);
        }
        let mut errors: HashMap<(&str, &str), u64> = HashMap::new();
        for e in batch
            .nginx_errors
            .iter()
            .filter(|e| !e.upstream_error.is_empty())
        {
            *errors.entry((&e.upstream, &e.upstream_error)).or_default() += 1;
        }
        for ((upstream, error), n) in errors {
            let upstream = self.caps.value("nginx", "upstream", node, upstream);
            let error = self.caps.value("nginx", "error", node, error);
            counter!("vigil_nginx_upstream_errors_total", "node" => node.to_owned(),
                "upstream" => upstream, "error" => error)
            .increment(n);
        }
        let unparsed = batch.nginx_access.iter().filter(|a| !a.parsed).count()
            + batch.nginx_errors.iter().filter(|e| !e.parsed).count();
        counter!("vigil_nginx_unparsed_lines_total", "node" => node.to_owned())
            .increment(unparsed as u64);
    }

    fn health(&self, node: &str, agent: &str, h: &AgentHealth) {
        let n = || [("node", node.to_owned())];
        // The agent reports running totals; the collector counts what each one adds.
        let names = [
            "vigil_agent_events_lost_total",
            "vigil_agent_connections_untracked_total",
            "vigil_agent_spool_dropped_batches_total",
            "vigil_agent_batches_sent_total",
            "vigil_agent_batches_retried_total",
        ];
        let totals = [
            h.probe_events_lost,
            h.probe_track_failed,
            h.spool_dropped_batches,
            h.batches_sent,
            h.batches_retried,
        ];
        for (name, added) in names
            .into_iter()
            .zip(self.agent_counters.deltas(agent, totals, self.idle))
        {
            counter!(name, &n()).increment(added);
        }
        gauge!("vigil_agent_spool_bytes", &n()).set(h.spool_bytes as f64);
        gauge!("vigil_agent_capabilities_missing", &n()).set(h.capabilities_missing.len() as f64);
        gauge!("vigil_agents_seen").set(self.agent_counters.agents() as f64);
    }
}

fn process_labels(v: &[String; 5]) -> [(&'static str, String); 5] {
    [
        ("node", v[0].clone()),
        ("upstream", v[1].clone()),
        ("role", v[2].clone()),
        ("comm", v[3].clone()),
        ("pid", v[4].clone()),
    ]
}

/// The destination nginx connects to (`127.0.0.1:8084`), as the agent names it; an agent
/// that sent none is read as loopback, where a local listener is reached.
pub fn upstream_label(u: &vigil_wire::UpstreamStatus) -> String {
    if u.upstream.is_empty() {
        format!("127.0.0.1:{}", u.port)
    } else {
        u.upstream.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cumulative_agent_counters_become_increments() {
        let c = AgentCounters::default();
        let idle = Duration::from_secs(3600);
        assert_eq!(c.deltas("a", [5, 0], idle), [5, 0]);
        assert_eq!(c.deltas("a", [8, 1], idle), [3, 1]);
        assert_eq!(c.deltas("a", [2, 1], idle), [2, 0], "agent restarted");
        assert_eq!(c.deltas("b", [1, 0], idle), [1, 0]);
        assert_eq!(c.agents(), 2);
    }
}
