//! Connection series from a batch: connections sent one by one and summaries of healthy
//! ones go through the same groups, so both give the same counters and histograms. A
//! summary's bucket counts and sum become values (`buckets::spread`) that land in the same
//! buckets and add up to the same microseconds; the `_sum` then differs from recording each
//! connection only by floating-point rounding (the order of additions).
use std::collections::HashMap;

use metrics::{counter, histogram};
use tracing::warn;
use vigil_wire::{
    buckets::{spread, CONNECT_BUCKETS, FIRST_BYTE_BUCKETS},
    Batch, ConnectResult, ConnectionSummary,
};

use super::Recorder;

/// Histogram samples a batch's summaries may add (each is kept until the exporter's next
/// upkeep): a million connections a second from one node, far above what one sees. Past it a
/// summary still counts its connects; its durations are dropped and counted.
pub const MAX_SUMMARISED_SAMPLES_PER_BATCH: u64 = 2_000_000;

/// What adding a summary found wrong.
#[derive(Debug, Default)]
struct SummaryIssues {
    /// Buckets disagree with the count or the sums (forged or corrupt): counts kept as
    /// given, sums as close as the buckets allow.
    inconsistent: bool,
    /// Samples over the batch's budget, not recorded.
    samples_dropped: u64,
}

/// One (client, upstream) series set of a batch.
#[derive(Default)]
struct Group {
    /// Indexed by `ConnectResult` discriminant.
    results: [u64; ConnectResult::ALL.len()],
    /// Values to record in microseconds, each with how many times.
    connect_us: Vec<(u64, u64)>,
    first_byte_us: Vec<(u64, u64)>,
    silent_closes: u64,
    resets: u64,
    syn_retransmits: u64,
}

impl Group {
    /// Adds a summary, its histogram samples within `budget`.
    fn add_summary(&mut self, s: &ConnectionSummary, budget: &mut u64) -> SummaryIssues {
        let result = s.result();
        self.results[result as usize] = self.results[result as usize].saturating_add(s.count);
        let ok = result == ConnectResult::Ok;
        let connects = if ok { &s.connect_us_buckets[..] } else { &[] };
        let total = |b: &[u64]| b.iter().fold(0u64, |a, &n| a.saturating_add(n));
        let (connected, answered) = (total(connects), total(&s.first_byte_us_buckets));
        let mut issues = SummaryIssues {
            inconsistent: (ok && connected != s.count) || answered > s.count,
            samples_dropped: 0,
        };
        let samples = connected.saturating_add(answered);
        if samples > *budget {
            issues.samples_dropped = samples;
            return issues;
        }
        *budget -= samples;
        if ok {
            let connect = spread(CONNECT_BUCKETS, connects, s.connect_us_sum);
            issues.inconsistent |= connect.sum_error_us != 0 || connect.extra_counts != 0;
            self.connect_us.extend(connect.values);
        }
        let first_byte = spread(
            FIRST_BYTE_BUCKETS,
            &s.first_byte_us_buckets,
            s.first_byte_us_sum,
        );
        issues.inconsistent |= first_byte.sum_error_us != 0 || first_byte.extra_counts != 0;
        self.first_byte_us.extend(first_byte.values);
        issues
    }
}

impl Recorder {
    /// Groups a batch's connections and summaries by (client, upstream) first, so label
    /// capping and the registry lookups happen once per series, not once per connection.
    pub(super) fn connections(&self, node: &str, batch: &Batch) {
        let mut groups: HashMap<(&str, &str), Group> = HashMap::new();
        for c in &batch.connections {
            let g = groups.entry((c.comm.as_str(), c.dst.as_str())).or_default();
            // prost's getter: an unknown value reads as Unspecified, labelled "error".
            let result = c.result();
            g.results[result as usize] += 1;
            if result == ConnectResult::Ok {
                g.connect_us.push((c.connect_us, 1));
            }
            if let Some(us) = c.first_byte_us {
                g.first_byte_us.push((us, 1));
            }
            g.silent_closes += u64::from(c.silent_close);
            g.resets += u64::from(c.reset);
            g.syn_retransmits += u64::from(c.syn_retransmits);
        }
        let mut budget = MAX_SUMMARISED_SAMPLES_PER_BATCH;
        for s in &batch.summaries {
            let g = groups.entry((s.comm.as_str(), s.dst.as_str())).or_default();
            let issues = g.add_summary(s, &mut budget);
            if issues.inconsistent {
                warn!(
                    node, agent = %batch.agent_id, upstream = %s.dst, count = s.count,
                    "connection summary whose buckets disagree with its count or sums: recorded as close as they allow"
                );
            }
            if issues.samples_dropped > 0 {
                warn!(
                    node, agent = %batch.agent_id, upstream = %s.dst, count = s.count,
                    "connection summary past the batch's histogram budget: connects counted, durations dropped"
                );
                counter!("vigil_connection_summary_samples_dropped_total", "node" => node.to_owned())
                    .increment(issues.samples_dropped);
            }
        }
        for ((comm, dst), g) in groups {
            self.record_group(node, comm, dst, g);
        }
    }

    fn record_group(&self, node: &str, comm: &str, dst: &str, g: Group) {
        let labels = [
            ("node", node.to_owned()),
            ("client", self.caps.value("upstream", "client", node, comm)),
            (
                "upstream",
                self.caps.value("upstream", "upstream", node, dst),
            ),
        ];
        for (result, &n) in ConnectResult::ALL
            .iter()
            .zip(&g.results)
            .filter(|(_, n)| **n > 0)
        {
            let mut with_result = labels.to_vec();
            with_result.push(("result", result.label().to_owned()));
            counter!("vigil_upstream_connects_total", &with_result).increment(n);
        }
        // Seconds as `us / 1e6`, the same for a value sent alone or spread from a summary.
        let record = |name: &'static str, values: Vec<(u64, u64)>| {
            if values.is_empty() {
                return;
            }
            let h = histogram!(name, &labels);
            for (us, times) in values {
                h.record_many(us as f64 / 1e6, times as usize);
            }
        };
        record("vigil_upstream_connect_duration_seconds", g.connect_us);
        record("vigil_upstream_first_byte_seconds", g.first_byte_us);
        if g.silent_closes > 0 {
            counter!("vigil_upstream_silent_closes_total", &labels).increment(g.silent_closes);
        }
        if g.resets > 0 {
            counter!("vigil_upstream_resets_total", &labels).increment(g.resets);
        }
        counter!("vigil_upstream_syn_retransmits_total", &labels).increment(g.syn_retransmits);
    }
}

#[cfg(test)]
#[path = "connections_tests.rs"]
mod tests;
