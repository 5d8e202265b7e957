//! Tests of `access_log.rs`.
use super::*;

const VIGIL_FORMAT: &str = r#"$remote_addr [$time_local] "$request" $status $body_bytes_sent rt=$request_time ua="$upstream_addr" us="$upstream_status" urt="$upstream_response_time""#;
// Lines below were written by nginx 1.22.1 (combined and the format above).
const COMBINED_LINE: &str = r#"127.0.0.1 - - [25/Nov/2026:12:51:21 +0000] "GET / HTTP/1.1" 502 157 "http://ref.example/" "Mozilla/5.0 (X11; \x22quoted\x22)""#;
const RETRIED: &str = r#"127.0.0.1 [25/Nov/2026:12:51:11 +0000] "GET /api/slow HTTP/1.1" 502 157 rt=1.002 ua="127.0.0.1:18082, 127.0.0.1:18083" us="504, 502" urt="1.002, 0.000""#;
const REDIRECTED: &str = r#"127.0.0.1 [25/Nov/2026:12:51:19 +0000] "GET /fb HTTP/1.1" 200 6 rt=0.001 ua="127.0.0.1:18084 : 127.0.0.1:18085" us="502 : 200" urt="0.000 : 0.001""#;
const NO_UPSTREAM: &str = r#"127.0.0.1 [25/Nov/2026:12:51:12 +0000] "GET /with%20space HTTP/1.1" 200 2 rt=0.000 ua="-" us="-" urt="-""#;
const TIMEOUT: &str = r#"127.0.0.1 [25/Nov/2026:12:51:21 +0000] "GET /api/x/slow HTTP/1.1" 504 167 rt=2.003 ua="127.0.0.1:18085" us="504" urt="2.002""#;

#[test]
fn combined() {
    let r = LogFormat::combined()
        .parse(&format!("{COMBINED_LINE}\n"))
        .unwrap();
    assert_eq!(r.remote_addr(), Some("127.0.0.1"));
    assert_eq!(r.get("remote_user"), Some("-"));
    assert_eq!(r.time_local(), Some("25/Nov/2026:12:51:21 +0000"));
    assert_eq!(r.time_local_unix(), Some(1_795_611_081));
    assert_eq!(r.request(), Some("GET / HTTP/1.1"));
    assert_eq!((r.status(), r.body_bytes_sent()), (Some(502), Some(157)));
    assert_eq!(
        r.get("http_user_agent"),
        Some(r"Mozilla/5.0 (X11; \x22quoted\x22)")
    );
    assert_eq!((r.request_time(), r.upstream_addr()), (None, None));
}

#[test]
fn custom_format_with_retries_and_redirects() {
    let format = LogFormat::compile(VIGIL_FORMAT).unwrap();
    let r = format.parse(RETRIED).unwrap();
    assert_eq!(r.request_time(), Some(1.002));
    let addr = r.upstream_addr().unwrap();
    assert_eq!(addr.raw(), "127.0.0.1:18082, 127.0.0.1:18083");
    assert_eq!(addr.last(), Some("127.0.0.1:18083"));
    assert_eq!(
        r.upstream_status().unwrap().entries().collect::<Vec<_>>(),
        ["504", "502"]
    );
    assert_eq!(r.upstream_status().unwrap().last_status(), Some(502));
    assert_eq!(
        r.upstream_response_time().unwrap().last_seconds(),
        Some(0.0)
    );

    let r = format.parse(REDIRECTED).unwrap();
    assert_eq!(r.upstream_addr().unwrap().last(), Some("127.0.0.1:18085"));
    assert_eq!(r.upstream_status().unwrap().last_status(), Some(200));

    let r = format.parse(NO_UPSTREAM).unwrap();
    assert_eq!(r.upstream_addr().unwrap().raw(), "-");
    assert_eq!(r.upstream_addr().unwrap().last(), None);
    assert_eq!(r.upstream_connect_time(), None, "not in the format");

    let r = format.parse(TIMEOUT).unwrap();
    assert_eq!(
        (
            r.status(),
            r.upstream_response_time().unwrap().last_seconds()
        ),
        (Some(504), Some(2.002))
    );
}

#[test]
fn braces_lone_dollar_and_json_escapes() {
    let format = LogFormat::compile(
        r#"{"a":"${remote_addr}x","s":"$status","c":"$upstream_connect_time"} $ end"#,
    )
    .unwrap();
    assert_eq!(
        format.variables(),
        ["remote_addr", "status", "upstream_connect_time"]
    );
    let r = format
        .parse(r#"{"a":"1.2.3.4x","s":"200","c":"0.001, 0.002"} $ end"#)
        .unwrap();
    assert_eq!(r.remote_addr(), Some("1.2.3.4"));
    assert_eq!(
        r.upstream_connect_time().unwrap().last_seconds(),
        Some(0.002)
    );

    let json = LogFormat::compile(r#"{"ua":"$http_user_agent","st":$status}"#).unwrap();
    let r = json.parse(r#"{"ua":"say \"hi\\\" ok","st":499}"#).unwrap();
    assert_eq!(r.get("http_user_agent"), Some(r#"say \"hi\\\" ok"#));
    assert_eq!(r.status(), Some(499));
}

#[test]
fn bad_formats() {
    assert_eq!(
        LogFormat::compile("$status$request_time"),
        Err(FormatError::AdjacentVariables {
            first: "status".into(),
            second: "request_time".into()
        })
    );
    assert_eq!(
        LogFormat::compile("${status"),
        Err(FormatError::UnterminatedBrace)
    );
}

#[test]
fn non_matching_lines_keep_the_raw_text() {
    let format = LogFormat::compile(VIGIL_FORMAT).unwrap();
    for bad in [
        "",
        "garbage",
        &RETRIED[..40],
        &format!("{NO_UPSTREAM} extra"),
        COMBINED_LINE,
    ] {
        assert_eq!(format.parse(bad).unwrap_err().line, bad);
    }
}

#[test]
fn iterates_in_format_order_and_applies_zones() {
    let format = LogFormat::compile("$status $request_time").unwrap();
    let r = format.parse("200 0.5").unwrap();
    assert_eq!(
        r.iter().collect::<Vec<_>>(),
        [("status", "200"), ("request_time", "0.5")]
    );
    assert_eq!(parse_time_local("01/Jan/1970:02:00:00 +0130"), Some(1_800));
    assert_eq!(parse_time_local("01/Foo/1970:02:00:00 +0130"), None);
}
