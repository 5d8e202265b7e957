use prost::Message;

use super::*;
use crate::ConnectResult;

const LIMITS: DecodeLimits = DecodeLimits {
    max_decoded_bytes: 1 << 20,
    max_records: 1000,
};

fn sample() -> Batch {
    Batch {
        agent_id: "node-a/1234".into(),
        sequence: 7,
        node: "node-a".into(),
        connections: vec![
            ConnectionOutcome {
                unix_ns: 1_795_602_838_000_000_000,
                pid: 42,
                comm: "nginx".into(),
                src: "127.0.0.1:40000".into(),
                dst: "127.0.0.1:8084".into(),
                result: ConnectResult::Refused as i32,
                errno: 111,
                connect_us: 120,
                ..Default::default()
            };
            3
        ],
        nginx_access: vec![NginxAccessRecord {
            line: "GET / 502".into(),
            ..Default::default()
        }],
        health: Some(AgentHealth {
            capabilities_missing: vec!["first_byte".into(), "exits".into()],
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn snappy(raw: &[u8]) -> Vec<u8> {
    snap::raw::Encoder::new().compress_vec(raw).unwrap()
}

/// A batch header followed by `n` copies of `item` (a whole encoded field).
fn bomb(item: &[u8], n: usize) -> Vec<u8> {
    let mut raw = Batch {
        agent_id: "bomb".into(),
        sequence: 1,
        ..Default::default()
    }
    .encode_to_vec();
    for _ in 0..n {
        raw.extend_from_slice(item);
    }
    raw
}

#[test]
fn round_trips_through_snappy_with_exact_capacities() {
    let batch = sample();
    let decoded = Batch::decode_compressed(&batch.encode_compressed(), &LIMITS).unwrap();
    assert_eq!(decoded, batch);
    assert_eq!(decoded.connections.capacity(), 3, "reserved, not grown");
    assert_eq!(decoded.nginx_access.capacity(), 1);
    let without_health = Batch {
        health: None,
        ..sample()
    };
    let decoded = Batch::decode_compressed(&without_health.encode_compressed(), &LIMITS).unwrap();
    assert_eq!(
        decoded.health, None,
        "no health invented by the reservation"
    );
}

#[test]
fn counts_what_prost_decodes() {
    let batch = sample();
    let counts = RepeatedCounts::of(&batch.encode_to_vec()).unwrap();
    assert_eq!(counts.records, [3, 0, 0, 0, 1]);
    assert_eq!(counts.nested, 2, "the capability names");
    assert_eq!(counts.items(), batch.len() + 2);
    // Capability names accumulate across repeated health fields, as prost merges them.
    let mut raw = batch.encode_to_vec();
    raw.extend(batch.encode_to_vec());
    let twice = Batch::decode(raw.as_slice()).unwrap();
    let counts = RepeatedCounts::of(&raw).unwrap();
    assert_eq!(counts.nested, 4);
    assert_eq!(twice.health.unwrap().capabilities_missing.len(), 4);
}

#[test]
fn the_record_limit_is_inclusive() {
    let empty_connection = [0x2a, 0x00]; // field 5, length 0
    let at = snappy(&bomb(&empty_connection, LIMITS.max_records));
    assert_eq!(
        Batch::decode_compressed(&at, &LIMITS)
            .unwrap()
            .connections
            .len(),
        LIMITS.max_records
    );
    let over = snappy(&bomb(&empty_connection, LIMITS.max_records + 1));
    assert!(matches!(
        Batch::decode_compressed(&over, &LIMITS),
        Err(WireError::TooManyRecords {
            items: 1001,
            limit: 1000
        })
    ));
}

#[test]
fn snappy_bombs_of_records_are_refused_before_decoding() {
    // Two bytes on the wire, a few hundred once decoded: the 6 MB body that asked for 6 GB.
    let limits = DecodeLimits {
        max_decoded_bytes: 32 << 20,
        max_records: 50_000,
    };
    for field in [0x2a, 0x32, 0x3a, 0x42, 0x4a] {
        let body = snappy(&bomb(&[field, 0x00], 4_000_000));
        assert!(body.len() < 8 << 20);
        match Batch::decode_compressed(&body, &limits) {
            Err(WireError::TooManyRecords { items, .. }) => assert_eq!(items, 4_000_000),
            other => panic!("field {field:#x}: {other:?}"),
        }
    }
}

/// `key` (a field key byte), then `payload` length-delimited.
fn field(key: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![key];
    let mut len = payload.len() as u64;
    while len >= 0x80 {
        out.push((len as u8) | 0x80);
        len >>= 7;
    }
    out.push(len as u8);
    out.extend(payload);
    out
}

#[test]
fn nested_repeated_bombs_are_counted_too() {
    // One health field (10) holding a million empty capability names (field 3, length 0).
    let health = field(0x52, &[0x1a, 0x00].repeat(1_000_000));
    let body = snappy(&bomb(&health, 1));
    assert!(matches!(
        Batch::decode_compressed(
            &body,
            &DecodeLimits {
                max_decoded_bytes: 8 << 20,
                ..LIMITS
            }
        ),
        Err(WireError::TooManyRecords {
            items: 1_000_000,
            ..
        })
    ));
    // The same spread over many small health fields.
    let small = [0x52, 0x04, 0x1a, 0x00, 0x1a, 0x00];
    let body = snappy(&bomb(&small, 600));
    assert!(matches!(
        Batch::decode_compressed(&body, &LIMITS),
        Err(WireError::TooManyRecords { items: 1200, .. })
    ));
    // An upstream (6) whose last exit (9) holds stderr lines (6), twice: 1 + 2 × 400 items.
    let exit = field(0x4a, &[0x32, 0x00].repeat(400));
    let upstream = field(0x32, &[exit.clone(), exit].concat());
    let counts = RepeatedCounts::of(&bomb(&upstream, 1)).unwrap();
    assert_eq!((counts.records, counts.nested), ([0, 1, 0, 0, 0], 800));
    assert!(matches!(
        Batch::decode_compressed(&snappy(&bomb(&upstream, 2)), &LIMITS),
        Err(WireError::TooManyRecords { items: 1602, .. })
    ));
}

/// Each `#[prost(... repeated ...)]` field in messages.rs as (struct, tag, its type).
fn repeated_fields_in_messages() -> Vec<(String, u32, String)> {
    let mut current = String::new();
    let mut found = Vec::new();
    for line in include_str!("messages.rs").lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("pub struct ") {
            current = rest.split([' ', '{']).next().unwrap().to_owned();
        }
        if line.starts_with("#[prost(") && line.contains("repeated") {
            let tag = line.split("tag = \"").nth(1).unwrap();
            let tag = tag.split('"').next().unwrap().parse().unwrap();
            let kind = line["#[prost(".len()..].split(',').next().unwrap();
            found.push((current.clone(), tag, kind.to_owned()));
        }
    }
    found
}

#[test]
fn every_repeated_field_in_the_messages_is_counted() {
    let found = repeated_fields_in_messages();
    assert!(
        found.contains(&("Batch".into(), 5, "message".into())),
        "{found:?}"
    );
    for (name, tag, kind) in found {
        let shape = SHAPES.iter().find(|s| s.name == name);
        let numeric = kind != "message" && kind != "string";
        assert!(
            shape.is_some_and(|s| if numeric {
                s.scalars.contains(&tag)
            } else {
                s.repeated.contains(&tag)
            }),
            "{name} field {tag} is a repeated {kind}: add it to decode.rs SHAPES (`scalars` for \
             numbers, else `repeated`) and the path to it"
        );
        // Below the batch, vectors grow unreserved: their cost assumes strings or 8-byte
        // numbers (SCALAR_ITEM_COST).
        assert!(
            name == "Batch" || kind == "string" || matches!(kind.as_str(), "uint64" | "int64"),
            "{name} field {tag}: a repeated {kind} below the batch needs its own cost in decode.rs"
        );
    }
}

#[test]
fn garbage_and_oversized_bodies_are_typed_errors() {
    assert!(matches!(
        Batch::decode_compressed(b"\xff\xff\xff\xff\xff", &LIMITS),
        Err(WireError::Snappy(_))
    ));
    assert!(matches!(
        Batch::decode_compressed(&snappy(&[0xff; 64]), &LIMITS),
        Err(WireError::Malformed { .. })
    ));
    let big = snappy(&vec![0u8; 4096]);
    let small = DecodeLimits {
        max_decoded_bytes: 1024,
        ..LIMITS
    };
    assert!(matches!(
        Batch::decode_compressed(&big, &small),
        Err(WireError::TooLarge {
            size: 4096,
            limit: 1024
        })
    ));
    // Well-framed but wrong inside a record: prost's error, with the field path.
    let bad_string = [0x2a, 0x03, 0x1a, 0x01, 0xff]; // connections[0].comm = invalid UTF-8
    let e = Batch::decode_compressed(&snappy(&bomb(&bad_string, 1)), &LIMITS).unwrap_err();
    assert!(matches!(e, WireError::Decode(_)), "{e}");
}

#[test]
fn malformed_framing_is_refused_where_prost_refuses_it() {
    let cases: [(&[u8], &str, usize); 5] = [
        (&[0x2a], "truncated varint", 1),
        (&[0x2a, 0x05, 0x00], "length past the end", 2),
        (&[0x02, 0x00], "invalid field key", 0),
        (&[0x2e], "invalid wire type", 0),
        (&[0xff; 11], "varint over 64 bits", 9),
    ];
    for (raw, what, offset) in cases {
        match RepeatedCounts::of(raw) {
            Err(WireError::Malformed { what: w, offset: o }) => {
                assert!(w.starts_with(what), "{w}");
                assert_eq!(o, offset, "{what}");
            }
            other => panic!("{what}: {other:?}"),
        }
        assert!(Batch::decode(raw).is_err(), "prost refuses {what} too");
    }
    // Groups are not part of vigil's wire format, even in fields it does not know.
    assert!(matches!(
        RepeatedCounts::of(&[0x7b, 0x7c]),
        Err(WireError::Malformed {
            what: "group wire type",
            ..
        })
    ));
}

#[test]
fn bounds_cover_the_largest_item() {
    const { assert!(MAX_ITEM_SIZE >= size_of::<UpstreamStatus>()) };
    const { assert!(MAX_ITEM_SIZE >= size_of::<ConnectionSummary>()) };
    const { assert!(MAX_ITEM_COST > MAX_ITEM_SIZE) };
    let limits = DecodeLimits {
        max_decoded_bytes: 32 << 20,
        max_records: 50_000,
    };
    assert!(limits.memory_bound() > 3 * (32 << 20) + 50_000 * MAX_ITEM_SIZE);
    assert!(limits.largest_allocation_bound() >= 50_000 * size_of::<UpstreamStatus>());
}

#[test]
fn summaries_and_their_bucket_counts_are_counted() {
    let summary = ConnectionSummary {
        comm: "nginx".into(),
        dst: "127.0.0.1:8080".into(),
        result: ConnectResult::Ok as i32,
        count: 1000,
        connect_us_buckets: vec![990, 0, 10],
        connect_us_sum: 60_000,
        first_byte_us_buckets: vec![0, 1000],
        first_byte_us_sum: 2_000_000,
        first_end_unix_ns: 1,
        last_end_unix_ns: 2,
    };
    let batch = Batch {
        summaries: vec![summary.clone(), summary],
        ..sample()
    };
    let counts = RepeatedCounts::of(&batch.encode_to_vec()).unwrap();
    assert_eq!(counts.summaries, 2);
    assert_eq!(
        counts.nested,
        2 + 2 * 5,
        "capability names and bucket counts"
    );
    let decoded = Batch::decode_compressed(&batch.encode_compressed(), &LIMITS).unwrap();
    assert_eq!(decoded, batch);
    assert_eq!(decoded.summaries.capacity(), 2, "reserved, not grown");
}

#[test]
fn bucket_count_bombs_are_counted_packed_or_not() {
    let limits = DecodeLimits {
        max_decoded_bytes: 8 << 20,
        ..LIMITS
    };
    // One summary (12) whose packed connect buckets (5) hold a million zeros: 8 MB decoded.
    let packed = field(0x62, &field(0x2a, &[0x00; 1_000_000]));
    assert!(matches!(
        Batch::decode_compressed(&snappy(&bomb(&packed, 1)), &limits),
        Err(WireError::TooManyRecords {
            items: 1_000_001,
            ..
        })
    ));
    // The same numbers unpacked (field 7, varint 0), and multi-byte varints counted once.
    let unpacked = field(0x62, &[0x38, 0x00].repeat(600));
    assert_eq!(RepeatedCounts::of(&bomb(&unpacked, 1)).unwrap().nested, 600);
    let wide = field(0x62, &field(0x3a, &[0xff, 0x01].repeat(300)));
    assert_eq!(RepeatedCounts::of(&bomb(&wide, 1)).unwrap().nested, 300);
    let decoded = Batch::decode(bomb(&wide, 1).as_slice()).unwrap();
    assert_eq!(decoded.summaries[0].first_byte_us_buckets.len(), 300);
    assert!(matches!(
        Batch::decode_compressed(&snappy(&bomb(&unpacked, 2)), &LIMITS),
        Err(WireError::TooManyRecords { items: 1202, .. })
    ));
}
