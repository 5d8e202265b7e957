use std::net::SocketAddr;

use vigil_wire::{buckets::bucket_index, Batch, ConnectResult, DecodeLimits};

use super::*;
use crate::{
    probes::connection::ClosedBy,
    ship::outbox::{ConnectionRecords, Outbox},
};

const T0: i128 = 1_795_602_838_000_000_000;

/// An answered connection from nginx to 127.0.0.1:`port`, `i` 100 µs after T0.
fn record(i: u32, port: u16) -> ConnectionRecord {
    ConnectionRecord {
        unix_ns: T0 + i128::from(i) * 100_000,
        pid: 4242,
        tid: 4242,
        comm: "nginx".into(),
        src: SocketAddr::from(([127, 0, 0, 1], 30_000 + (i % 20_000) as u16)),
        dst: SocketAddr::from(([127, 0, 0, 1], port)),
        result: ConnectResult::Ok,
        errno: None,
        connect_ms: 0.031 + f64::from(i % 7) * 0.004,
        first_byte_ms: Some(1.2 + f64::from(i % 13) * 0.35),
        silent_close: false,
        syn_retransmits: 0,
        retransmits: 0,
        reset: false,
        closed_by: Some(ClosedBy::Client),
        bytes_sent: 120,
        bytes_received: 840,
        duration_ms: 2.5 + f64::from(i % 5),
    }
}

#[test]
fn only_healthy_connections_are_summarised() {
    let ok = record(0, 8080);
    assert!(healthy(&ok));
    let refused = ConnectionRecord {
        result: ConnectResult::Refused,
        errno: Some(111),
        first_byte_ms: None,
        bytes_sent: 0,
        ..record(0, 8080)
    };
    let unhealthy = [
        refused,
        ConnectionRecord {
            reset: true,
            ..record(0, 8080)
        },
        ConnectionRecord {
            silent_close: true,
            first_byte_ms: None,
            ..record(0, 8080)
        },
        ConnectionRecord {
            syn_retransmits: 1,
            ..record(0, 8080)
        },
        ConnectionRecord {
            first_byte_ms: Some(SLOW_MS),
            ..record(0, 8080)
        },
        ConnectionRecord {
            connect_ms: 1500.0,
            ..record(0, 8080)
        },
        // A request and no byte back, closed by the upstream: nginx's premature close.
        ConnectionRecord {
            first_byte_ms: None,
            closed_by: Some(ClosedBy::Upstream),
            ..record(0, 8080)
        },
    ];
    for r in unhealthy {
        assert!(!healthy(&r), "{r:?}");
    }
    let tcp_check = ConnectionRecord {
        first_byte_ms: None,
        bytes_sent: 0,
        ..record(0, 8080)
    };
    assert!(
        healthy(&tcp_check),
        "connected and closed without a request"
    );
}

#[test]
fn a_summary_holds_the_counts_buckets_sums_and_times_of_its_connections() {
    let mut summaries = Summaries::default();
    let records: Vec<_> = (0..500).map(|i| record(i, 8080 + (i % 2) as u16)).collect();
    for r in records.iter().cloned() {
        assert!(summaries.add(r).is_none());
    }
    let curl = ConnectionRecord {
        comm: "curl".into(),
        ..record(7, 8080)
    };
    assert!(summaries.add(curl).is_none());
    assert_eq!(summaries.len(), 3);
    let mut got = summaries.take();
    assert!(
        summaries.is_empty() && summaries.take().is_empty(),
        "starts over"
    );
    got.sort_by(|a, b| (&a.dst, &a.comm).cmp(&(&b.dst, &b.comm)));
    assert_eq!(
        got.iter()
            .map(|s| (s.comm.as_str(), s.dst.as_str(), s.count))
            .collect::<Vec<_>>(),
        [
            ("curl", "127.0.0.1:8080", 1),
            ("nginx", "127.0.0.1:8080", 250),
            ("nginx", "127.0.0.1:8081", 250)
        ]
    );
    let s = &got[1];
    let mine: Vec<_> = records.iter().filter(|r| r.dst.port() == 8080).collect();
    let us = |ms: f64| (ms * 1000.0).round() as u64;
    let mut connect = vec![0u64; CONNECT_BUCKETS.len() + 1];
    let mut first_byte = vec![0u64; FIRST_BYTE_BUCKETS.len() + 1];
    for r in &mine {
        connect[bucket_index(CONNECT_BUCKETS, us(r.connect_ms))] += 1;
        first_byte[bucket_index(FIRST_BYTE_BUCKETS, us(r.first_byte_ms.unwrap()))] += 1;
    }
    connect.truncate(s.connect_us_buckets.len());
    first_byte.truncate(s.first_byte_us_buckets.len());
    assert_eq!(s.connect_us_buckets, connect);
    assert_eq!(s.first_byte_us_buckets, first_byte);
    assert!(
        connect.len() < CONNECT_BUCKETS.len(),
        "trailing zeros left out"
    );
    let sum = |f: fn(&ConnectionRecord) -> f64| mine.iter().map(|r| us(f(r))).sum::<u64>();
    assert_eq!(s.connect_us_sum, sum(|r| r.connect_ms));
    assert_eq!(s.first_byte_us_sum, sum(|r| r.first_byte_ms.unwrap()));
    let end = |r: &ConnectionRecord| r.unix_ns as i64 + us(r.duration_ms) as i64 * 1000;
    assert_eq!(
        s.first_end_unix_ns,
        mine.iter().map(|r| end(r)).min().unwrap()
    );
    assert_eq!(
        s.last_end_unix_ns,
        mine.iter().map(|r| end(r)).max().unwrap()
    );
}

#[test]
fn pairs_past_the_bound_travel_alone() {
    let mut summaries = Summaries::default();
    for i in 0..MAX_KEYS as u32 {
        let r = ConnectionRecord {
            comm: format!("client-{i}"),
            ..record(i, 8080)
        };
        assert!(summaries.add(r).is_none());
    }
    let new_pair = ConnectionRecord {
        comm: "one-more".into(),
        ..record(0, 8080)
    };
    assert!(summaries.add(new_pair).is_some(), "handed back");
    assert!(summaries.add(record(0, 8080)).is_some());
    let known = ConnectionRecord {
        comm: "client-3".into(),
        ..record(9, 8080)
    };
    assert!(summaries.add(known).is_none(), "a known pair still counts");
}

fn sealed(records: ConnectionRecords, traffic: &[ConnectionRecord]) -> (Batch, usize) {
    let mut outbox = Outbox::new("n/1".into(), "n".into(), records);
    traffic
        .iter()
        .cloned()
        .for_each(|r| outbox.add_connection(r));
    let body = outbox.seal_if_due(true).expect("a batch").body;
    let limits = DecodeLimits {
        max_decoded_bytes: 32 << 20,
        max_records: 50_000,
    };
    (
        Batch::decode_compressed(&body, &limits).unwrap(),
        body.len(),
    )
}

/// 10,000 answered connects over 100 upstream ports in one batch interval (10k/s), with a
/// refused one every 100: compressed bytes per batch with and without summaries.
#[test]
fn summaries_cut_the_bytes_of_10k_connects_and_keep_failures_alone() {
    let traffic: Vec<_> = (0..10_000u32)
        .map(|i| match i % 100 {
            0 => ConnectionRecord {
                result: ConnectResult::Refused,
                errno: Some(111),
                first_byte_ms: None,
                bytes_sent: 0,
                closed_by: None,
                ..record(i, 8000 + (i % 100) as u16)
            },
            _ => record(i, 8000 + (i % 100) as u16),
        })
        .collect();
    let (all, all_bytes) = sealed(ConnectionRecords::All, &traffic);
    let (failures, failures_bytes) = sealed(ConnectionRecords::Failures, &traffic);
    println!(
        "10,000 connects over 100 ports in one batch: {all_bytes} bytes one by one, \
         {failures_bytes} bytes with summaries ({:.1}x less)",
        all_bytes as f64 / failures_bytes as f64
    );
    assert_eq!(all.connections.len(), 10_000);
    assert!(all.summaries.is_empty());
    assert_eq!(failures.connections.len(), 100);
    assert!(failures
        .connections
        .iter()
        .all(|c| c.result() == ConnectResult::Refused));
    assert_eq!(failures.summaries.len(), 99);
    assert_eq!(
        failures.summaries.iter().map(|s| s.count).sum::<u64>(),
        9_900
    );
    assert!(
        failures_bytes * 20 < all_bytes,
        "{failures_bytes} vs {all_bytes}"
    );
}
