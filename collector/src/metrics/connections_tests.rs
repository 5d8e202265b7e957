use std::{collections::BTreeMap, time::Duration};

use vigil_wire::{
    buckets::{BucketCounts, CONNECT_BUCKETS, FIRST_BYTE_BUCKETS},
    Batch, ConnectResult, ConnectionOutcome, ConnectionSummary,
};

use super::super::{builder, Recorder};

/// /metrics after applying `batches` to a fresh recorder configured as the collector's.
fn render(batches: &[Batch]) -> String {
    let prometheus = builder(Duration::from_secs(3600)).unwrap().build_recorder();
    let handle = prometheus.handle();
    let recorder = Recorder::new(100, 10, Duration::from_secs(3600));
    metrics::with_local_recorder(&prometheus, || {
        batches.iter().for_each(|b| recorder.apply(b))
    });
    handle.render()
}

/// Samples by series; `_sum` values apart, since their additions come in another order.
fn samples(text: &str) -> (BTreeMap<String, String>, BTreeMap<String, f64>) {
    let (mut exact, mut sums) = (BTreeMap::new(), BTreeMap::new());
    for line in text.lines().filter(|l| l.starts_with("vigil_")) {
        let (series, value) = line.rsplit_once(' ').unwrap();
        if series.contains("_sum{") {
            sums.insert(series.to_owned(), value.parse().unwrap());
        } else {
            exact.insert(series.to_owned(), value.to_owned());
        }
    }
    (exact, sums)
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Mixed traffic: healthy connects of all magnitudes, slow answers, refusals, resets, silent
/// closes and handshakes after SYN retransmits, from two clients to three upstreams.
fn traffic(n: usize) -> Vec<ConnectionOutcome> {
    let mut rng = Rng(0x5eed);
    (0..n)
        .map(|i| {
            let dst = format!("127.0.0.1:{}", 8080 + rng.next() % 3);
            let comm = if rng.next().is_multiple_of(5) {
                "curl"
            } else {
                "nginx"
            };
            let mut c = ConnectionOutcome {
                unix_ns: 1_800_000_000_000_000_000 + i as i64 * 100_000,
                comm: comm.into(),
                dst,
                result: ConnectResult::Ok as i32,
                connect_us: rng.next() % 10u64.pow(1 + (rng.next() % 7) as u32),
                first_byte_us: Some(rng.next() % 10u64.pow(1 + (rng.next() % 8) as u32)),
                duration_us: 5000,
                ..Default::default()
            };
            match rng.next() % 10 {
                0 => {
                    c.result = ConnectResult::Refused as i32;
                    c.first_byte_us = None;
                }
                1 => c.reset = true,
                2 => {
                    c.silent_close = true;
                    c.first_byte_us = None;
                }
                3 => c.syn_retransmits = 1,
                _ => {}
            }
            c
        })
        .collect()
}

fn healthy(c: &ConnectionOutcome) -> bool {
    c.result() == ConnectResult::Ok
        && !c.reset
        && !c.silent_close
        && c.syn_retransmits == 0
        && c.first_byte_us.is_some_and(|us| us < 1_000_000)
}

/// The same connections as an agent summarising healthy ones sends them.
fn summarised(connections: &[ConnectionOutcome]) -> Batch {
    let mut by_key: BTreeMap<(String, String), ConnectionSummary> = BTreeMap::new();
    let mut batch = Batch::default();
    for c in connections {
        if !healthy(c) {
            batch.connections.push(c.clone());
            continue;
        }
        let s = by_key.entry((c.comm.clone(), c.dst.clone())).or_default();
        let mut connect = BucketCounts {
            counts: std::mem::take(&mut s.connect_us_buckets),
            sum_us: s.connect_us_sum,
        };
        connect.add(CONNECT_BUCKETS, c.connect_us);
        let mut first_byte = BucketCounts {
            counts: std::mem::take(&mut s.first_byte_us_buckets),
            sum_us: s.first_byte_us_sum,
        };
        first_byte.add(FIRST_BYTE_BUCKETS, c.first_byte_us.unwrap());
        *s = ConnectionSummary {
            comm: c.comm.clone(),
            dst: c.dst.clone(),
            result: c.result,
            count: s.count + 1,
            connect_us_buckets: connect.counts,
            connect_us_sum: connect.sum_us,
            first_byte_us_buckets: first_byte.counts,
            first_byte_us_sum: first_byte.sum_us,
            ..Default::default()
        };
    }
    batch.summaries = by_key.into_values().collect();
    batch
}

fn node(mut b: Batch) -> Batch {
    b.node = "n1".into();
    b.agent_id = "n1/1".into();
    b
}

#[test]
fn summaries_give_the_metrics_of_every_connection_sent_alone() {
    let connections = traffic(20_000);
    let one_by_one = node(Batch {
        connections: connections.clone(),
        ..Default::default()
    });
    let aggregated = node(summarised(&connections));
    assert!(
        aggregated.summaries.len() >= 6,
        "two clients, three upstreams"
    );
    let summarised: u64 = aggregated.summaries.iter().map(|s| s.count).sum();
    assert!(
        summarised > connections.len() as u64 * 4 / 10,
        "{summarised}"
    );
    assert_eq!(
        summarised as usize + aggregated.connections.len(),
        connections.len()
    );
    let (want, want_sums) = samples(&render(&[one_by_one]));
    let (got, got_sums) = samples(&render(&[aggregated]));
    let buckets = want.keys().filter(|k| k.contains("_bucket{")).count();
    assert!(buckets >= 6 * (CONNECT_BUCKETS.len() + FIRST_BYTE_BUCKETS.len()));
    assert!(want.keys().any(|k| k.contains("result=\"refused\"")));
    assert_eq!(got, want, "counters, buckets and counts");
    assert_eq!(
        got_sums.keys().collect::<Vec<_>>(),
        want_sums.keys().collect::<Vec<_>>()
    );
    for (series, want) in want_sums {
        let got = got_sums[&series];
        assert!(
            (got - want).abs() <= want.abs() * 1e-12,
            "{series}: {got} vs {want}"
        );
    }
}

#[test]
fn an_inconsistent_summary_counts_as_sent_and_a_huge_one_only_its_connects() {
    let lying = ConnectionSummary {
        comm: "nginx".into(),
        dst: "127.0.0.1:9".into(),
        result: ConnectResult::Ok as i32,
        count: 3,
        // Three connects in the first bucket (≤ 100 µs) cannot add up to 1 s.
        connect_us_buckets: vec![3],
        connect_us_sum: 1_000_000,
        ..Default::default()
    };
    let huge = ConnectionSummary {
        dst: "127.0.0.1:10".into(),
        count: u64::MAX,
        connect_us_buckets: vec![u64::MAX],
        ..lying.clone()
    };
    let text = render(&[node(Batch {
        summaries: vec![lying, huge],
        ..Default::default()
    })]);
    let (exact, _) = samples(&text);
    let series = |upstream: &str, name: &str| {
        exact
            .iter()
            .find(|(k, _)| k.starts_with(name) && k.contains(upstream))
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("no {name} for {upstream}:\n{text}"))
    };
    assert_eq!(
        series("127.0.0.1:9\"", "vigil_upstream_connects_total"),
        "3"
    );
    assert_eq!(
        series(
            "127.0.0.1:9\"",
            "vigil_upstream_connect_duration_seconds_count"
        ),
        "3"
    );
    assert_eq!(
        series("127.0.0.1:10\"", "vigil_upstream_connects_total"),
        u64::MAX.to_string()
    );
    assert!(
        !text.contains("vigil_upstream_connect_duration_seconds_count{node=\"n1\",client=\"nginx\",upstream=\"127.0.0.1:10\""),
        "no durations recorded past the budget:\n{text}"
    );
    assert_eq!(
        series("n1", "vigil_connection_summary_samples_dropped_total"),
        u64::MAX.to_string()
    );
}
