//! Tests of `error_log.rs`.
use super::*;

// Lines below were produced by nginx 1.22.1 against local test backends.
const REFUSED: &str = r#"2026/11/25 12:51:12 [error] 6977#6977: *12 connect() failed (111: Connection refused) while connecting to upstream, client: 127.0.0.1, server: localhost, request: "GET /dead HTTP/1.1", upstream: "http://127.0.0.1:18084/dead", host: "127.0.0.1:18080""#;
const TIMED_OUT: &str = r#"2026/11/25 12:51:21 [error] 7153#7153: *27 upstream timed out (110: Connection timed out) while reading response header from upstream, client: 127.0.0.1, server: localhost, request: "GET /api/x/slow HTTP/1.1", upstream: "http://127.0.0.1:18085/api/x/slow", host: "127.0.0.1:18080""#;
const PREMATURE: &str = r#"2026/11/25 12:51:11 [error] 6977#6977: *8 upstream prematurely closed connection while reading response header from upstream, client: 127.0.0.1, server: localhost, request: "GET /api/close HTTP/1.1", upstream: "http://127.0.0.1:18085/api/close", host: "127.0.0.1:18080""#;
const RESET: &str = r#"2026/11/25 12:51:11 [error] 6977#6977: *10 recv() failed (104: Connection reset by peer) while reading response header from upstream, client: 127.0.0.1, server: localhost, request: "GET /api/reset HTTP/1.1", upstream: "http://127.0.0.1:18085/api/reset", host: "127.0.0.1:18080""#;
const NO_LIVE: &str = r#"2026/11/25 12:51:12 [error] 6977#6977: *19 no live upstreams while connecting to upstream, client: 127.0.0.1, server: localhost, request: "GET /close HTTP/1.1", upstream: "http://backend/close", host: "127.0.0.1:18080""#;
const UNIX_ENOENT: &str = r#"2026/11/25 12:51:21 [crit] 7154#7154: *31 connect() to unix:/tmp/ngx-real/none.sock failed (2: No such file or directory) while connecting to upstream, client: 127.0.0.1, server: _, request: "GET / HTTP/1.1", upstream: "http://unix:/tmp/ngx-real/none.sock:/", host: "127.0.0.1:18081", referrer: "http://ref.example/""#;
const NOTICE: &str = "2026/11/25 12:51:18 [notice] 7152#7152: signal process started";
const KEEPALIVE: &str =
    "2026/11/25 12:51:12 [info] 6976#6976: *22 client 127.0.0.1 closed keepalive connection";

fn parse(line: &str) -> ErrorLogRecord {
    parse_error_line(line).unwrap()
}

#[test]
fn refused_with_full_context() {
    let r = parse(REFUSED);
    assert_eq!(r.time, "2026/11/25 12:51:12");
    assert_eq!(r.timestamp, 1_795_611_072);
    assert_eq!(
        (r.level, r.pid, r.connection),
        (ErrorLevel::Error, 6977, Some(12))
    );
    assert_eq!(r.message, "connect() failed (111: Connection refused)");
    assert_eq!(r.errno, Some(111));
    assert_eq!(r.phase.as_deref(), Some("connecting to upstream"));
    assert_eq!(r.client.as_deref(), Some("127.0.0.1"));
    assert_eq!(r.server.as_deref(), Some("localhost"));
    assert_eq!(r.request.as_deref(), Some("GET /dead HTTP/1.1"));
    assert_eq!(r.upstream.as_deref(), Some("http://127.0.0.1:18084/dead"));
    assert_eq!(r.host.as_deref(), Some("127.0.0.1:18080"));
    assert_eq!(r.referrer, None);
    assert_eq!(r.upstream_error, Some(UpstreamError::Refused));
}

#[test]
fn classification_uses_errno_numbers_and_nginx_messages() {
    let cases = [
        (TIMED_OUT, UpstreamError::TimedOut),
        (PREMATURE, UpstreamError::PrematureClose),
        (RESET, UpstreamError::Reset),
        (NO_LIVE, UpstreamError::NoLiveUpstreams),
        (UNIX_ENOENT, UpstreamError::Other { errno: Some(2) }),
    ];
    for (line, expected) in cases {
        assert_eq!(parse(line).upstream_error, Some(expected), "{line}");
    }
    assert_eq!(
        parse(TIMED_OUT).phase.as_deref(),
        Some("reading response header from upstream")
    );
    assert_eq!(
        parse(UNIX_ENOENT).referrer.as_deref(),
        Some("http://ref.example/")
    );
    // musl words errors differently; only the number matters.
    let musl = REFUSED.replace("Connection refused", "Connection refused by remote host");
    assert_eq!(parse(&musl).upstream_error, Some(UpstreamError::Refused));
    let unreachable = REFUSED.replace("111: Connection refused", "113: No route to host");
    assert_eq!(
        parse(&unreachable).upstream_error,
        Some(UpstreamError::Unreachable)
    );
    let netunreach = REFUSED.replace("111: Connection refused", "101: Network is unreachable");
    assert_eq!(
        parse(&netunreach).upstream_error,
        Some(UpstreamError::Unreachable)
    );
}

#[test]
fn non_upstream_lines() {
    let n = parse(NOTICE);
    assert_eq!(
        (n.level, n.connection, n.errno),
        (ErrorLevel::Notice, None, None)
    );
    assert_eq!(n.message, "signal process started");
    assert_eq!((n.client, n.upstream_error), (None, None));
    let k = parse(KEEPALIVE);
    assert_eq!((k.connection, k.upstream_error), (Some(22), None));
    assert_eq!(k.message, "client 127.0.0.1 closed keepalive connection");
}

#[test]
fn client_controlled_values_cannot_fake_fields() {
    let line = r#"2026/11/25 12:51:12 [error] 1#1: *3 open() "/srv/a, client: x" failed (2: No such file or directory), client: 10.0.0.1, server: , request: "GET /a, host: "evil" HTTP/1.1", host: "h""#;
    let r = parse(line);
    assert_eq!(
        r.message,
        r#"open() "/srv/a, client: x" failed (2: No such file or directory)"#
    );
    assert_eq!(r.server.as_deref(), Some(""));
    assert_eq!(
        r.request.as_deref(),
        Some(r#"GET /a, host: "evil" HTTP/1.1"#)
    );
    assert_eq!(r.host.as_deref(), Some("h"));
    assert_eq!(r.upstream_error, None);
}

#[test]
fn truncated_context_is_kept_in_phase() {
    let cut = &REFUSED[..REFUSED.find("upstream: \"http").unwrap() + 15];
    let r = parse(cut);
    assert_eq!(r.message, "connect() failed (111: Connection refused)");
    assert!(
        r.phase.as_deref().unwrap().ends_with("upstream: \"http"),
        "{:?}",
        r.phase
    );
    assert_eq!(
        (r.client, r.upstream_error),
        (None, Some(UpstreamError::Refused))
    );
}

#[test]
fn garbage_is_an_error_that_keeps_the_line() {
    for bad in [
        "",
        "2026/11/25 12:5",
        "hello world, this is not nginx at all",
        "2026/11/25 12:51:12 [bogus] 1#1: x",
        "2026/13/25 12:51:12 [error] 1#1: x",
        "2026/11/25 12:51:12 [error] x#1: y",
        "2026/11/25 12:51:12 [error] 1#1",
    ] {
        let err = parse_error_line(bad).unwrap_err();
        assert_eq!(err.line, bad);
    }
    let e = parse_error_line("2026/11/25 12:51:12 [érror] 1#1: x\n").unwrap_err();
    assert_eq!(e.reason, "unknown level");
}
