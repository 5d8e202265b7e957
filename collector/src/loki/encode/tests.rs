//! Tests of `encode.rs`: stream grouping, metadata folding, the spool round trip, and our
//! bytes read by the independent `loki-api` types.
use super::*;

fn entry(ns: i64, source: &'static str, line: &str) -> LogEntry {
    LogEntry {
        release: None,
        unix_ns: ns,
        node: "n1".into(),
        source,
        level: "error",
        line: line.into(),
        metadata: vec![
            ("upstream", "127.0.0.1:8084".into()),
            ("errno", "111".into()),
        ],
    }
}

#[test]
fn groups_streams_and_sorts_entries() {
    let req = push_request(
        &[
            entry(3, "ebpf", "c"),
            entry(1, "ebpf", "a"),
            entry(2, "nginx_error", "b"),
        ],
        true,
    );
    assert_eq!(req.streams.len(), 2);
    let ebpf = req
        .streams
        .iter()
        .find(|s| s.labels.contains("ebpf"))
        .unwrap();
    assert_eq!(
        ebpf.labels,
        r#"{job="vigil", level="error", node="n1", source="ebpf"}"#
    );
    assert_eq!(
        ebpf.entries
            .iter()
            .map(|e| e.line.as_str())
            .collect::<Vec<_>>(),
        ["a", "c"]
    );
    assert_eq!(ebpf.entries[0].structured_metadata.len(), 2);
}

#[test]
fn folding_moves_metadata_into_the_line() {
    let req = push_request(&[entry(1, "ebpf", "refused")], false);
    let e = &req.streams[0].entries[0];
    assert!(e.structured_metadata.is_empty());
    assert_eq!(e.line, "refused upstream=127.0.0.1:8084 errno=111");
    assert_eq!(
        fold_metadata("x", &[("msg", "a \"b\"".into())]),
        r#"x msg="a \"b\"""#
    );
}

#[test]
fn spooled_batches_decode_back() {
    let entries = vec![entry(2, "ebpf", "b"), entry(1, "nginx_error", "a")];
    let mut back = decode_spooled(&encode_push(&entries, true)).unwrap();
    back.sort_by_key(|e| e.unix_ns);
    assert_eq!(back, vec![entries[1].clone(), entries[0].clone()]);
    // A node name with quotes and backslashes comes back whole.
    let odd = LogEntry {
        release: None,
        node: r#"rack "7" \ a"#.into(),
        ..entry(3, "ebpf", "c")
    };
    assert_eq!(
        decode_spooled(&encode_push(std::slice::from_ref(&odd), true)).unwrap(),
        [odd]
    );
}

#[test]
fn decodes_with_the_independent_loki_api_types() {
    let body = encode_push(
        &[entry(1_700_000_000_123_456_789, "ebpf", "line one")],
        true,
    );
    let raw = snap::raw::Decoder::new().decompress_vec(&body).unwrap();
    let theirs =
        <loki_api::logproto::PushRequest as loki_api::prost::Message>::decode(raw.as_slice())
            .unwrap();
    assert_eq!(theirs.streams.len(), 1);
    assert_eq!(
        theirs.streams[0].labels,
        r#"{job="vigil", level="error", node="n1", source="ebpf"}"#
    );
    let e = &theirs.streams[0].entries[0];
    assert_eq!(e.line, "line one");
    let ts = e.timestamp.as_ref().unwrap();
    assert_eq!((ts.seconds, ts.nanos), (1_700_000_000, 123_456_789));
}

#[test]
fn corrupt_spooled_bodies_are_refused_without_allocating_their_claim() {
    assert_eq!(decode_spooled(&[]), None);
    assert_eq!(decode_spooled(b"not snappy at all"), None);
    // A snappy header claiming 2 GiB from a few bytes.
    let mut bomb = vec![0x80, 0x80, 0x80, 0x80, 0x08];
    bomb.extend_from_slice(&[0; 8]);
    assert_eq!(snap::raw::decompress_len(&bomb).unwrap(), 1 << 31);
    assert_eq!(decode_spooled(&bomb), None);
    // The densest real body still decodes: long runs of one byte.
    let dense = entry(1, "ebpf", &"a".repeat(100_000));
    let body = encode_push(std::slice::from_ref(&dense), true);
    assert!(body.len() * 15 < 100_000, "{}", body.len());
    assert_eq!(decode_spooled(&body).unwrap(), [dense]);
}
