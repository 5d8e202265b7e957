//! Loki 2.x and 3.x: structured metadata folded into the line where it would be lost (Loki
//! before 3 drops it without an error), kept where Loki stores it, and the README's LogQL
//! finding the lines on both. The stand-in's LogQL is first held to Loki's semantics.
use serde_json::{Map, Value};
use vigil_e2e::{
    agent::AgentRun, collector::Collector, free_port, http, http_get, loki::LokiServer,
    nginx::Nginx, now_ns, scratch_dir,
};

use super::{access_batch, loki_config, post, wait_until};

/// The README's LogQL, verbatim: each must find its lines on Loki 2.x and 3.x alike.
const README_LOGQL: [&str; 4] = [
    r#"{job="vigil", source="nginx_error"} |= "(111: ""#,
    r#"{job="vigil", source="nginx_error"} | pattern `<_> upstream_error=<upstream_error> <_>` | upstream_error="refused""#,
    r#"{job="vigil", source="ebpf"} | logfmt | result="refused""#,
    r#"{job="vigil", source="nginx_access"} | pattern `<_> "<_>" <status> <_>` | status=~"50[24]""#,
];

/// (labels, line) of each entry a log query returns.
fn results(loki: &LokiServer, logql: &str) -> Vec<(Map<String, Value>, String)> {
    let body: Value = serde_json::from_str(&loki.query(logql)).unwrap();
    body["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let labels = r["stream"].as_object().unwrap().clone();
            (labels, r["values"][0][1].as_str().unwrap().to_owned())
        })
        .collect()
}

/// Real nginx and agent against `loki`: a request to a closed port (502), and the error,
/// probe and access lines it yields, waited for.
fn refused_request(loki: &LokiServer, tag: &str) -> (Collector, AgentRun, Nginx) {
    let c = Collector::start(tag, &loki_config(loki, ""));
    let closed = free_port();
    let nginx = Nginx::proxy_to(tag, closed, "proxy_connect_timeout 2s;");
    let state = scratch_dir(&format!("{tag}-agent"));
    let d = nginx.dir.display();
    let agent = AgentRun::start(
        &c.url(),
        &[closed],
        &state,
        &[
            "--nginx-error-log",
            &format!("{d}/error.log"),
            "--nginx-access-log",
            &format!("{d}/access.log"),
        ],
    );
    assert_eq!(http_get(nginx.port, "/"), 502);
    for source in ["nginx_error", "ebpf", "nginx_access"] {
        wait_until(source, || !loki.lines(&[("source", source)]).is_empty());
    }
    (c, agent, nginx)
}

/// Each README query finds the line it is about.
fn readme_logql_finds_the_lines(loki: &LokiServer) {
    let expect = [
        "connect() failed (111",
        "connect() failed (111",
        "result=refused",
        "\" 502 ",
    ];
    for (logql, needle) in README_LOGQL.iter().zip(expect) {
        let found = results(loki, logql);
        assert!(
            found.iter().any(|(_, line)| line.contains(needle)),
            "{logql} found {found:?}"
        );
    }
}

#[test]
fn loki_2x_gets_metadata_folded_and_the_readme_logql_finds_it() {
    let loki = LokiServer::start();
    loki.state.lock().unwrap().like_loki_2_7();
    let (_c, agent, _nginx) = refused_request(&loki, "loki-2x");
    let error = loki
        .lines(&[("source", "nginx_error")])
        .into_iter()
        .find(|e| e.line.contains("(111: "))
        .expect("the connect() failed line");
    assert!(error.metadata.is_empty(), "2.7 keeps none");
    assert!(
        error.line.contains(" upstream_error=refused errno=111"),
        "folded: {}",
        error.line
    );
    readme_logql_finds_the_lines(&loki);
    // Why the README uses `| pattern` on nginx lines: 2.7's logfmt stops at the raw line's
    // first quote, before the folded fields.
    let logfmt = r#"{job="vigil", source="nginx_error"} | logfmt | upstream_error="refused""#;
    assert_eq!(results(&loki, logfmt), []);
    let pushes = loki.state.lock().unwrap().pushes.clone();
    assert!(
        pushes.iter().all(|(s, _)| *s == 204),
        "detected, not met by a refusal: {pushes:?}"
    );
    agent.stop();
}

#[test]
fn loki_3x_keeps_structured_metadata_and_the_readme_logql_finds_it() {
    let loki = LokiServer::start();
    let (_c, agent, _nginx) = refused_request(&loki, "loki-3x");
    let error = loki
        .lines(&[("source", "nginx_error")])
        .into_iter()
        .find(|e| e.line.contains("(111: "))
        .expect("the connect() failed line");
    assert_eq!(error.metadata["upstream_error"], "refused");
    assert!(
        !error.line.contains("upstream_error="),
        "not folded: {}",
        error.line
    );
    readme_logql_finds_the_lines(&loki);
    let (labels, _) = &results(&loki, README_LOGQL[1])[0];
    assert_eq!(
        labels["upstream_error"], "refused",
        "returned as structured metadata"
    );
    agent.stop();
}

#[test]
fn a_loki_replaced_by_a_2x_is_noticed_when_it_comes_back() {
    let loki = LokiServer::start();
    let c = Collector::start("loki-downgrade", &loki_config(&loki, ""));
    post(&c, &access_batch(1, 0, 10));
    wait_until("10 lines", || loki.lines(&[]).len() == 10);
    assert!(loki
        .lines(&[])
        .iter()
        .all(|l| l.metadata["status"] == "200"));
    {
        // Restarted as Loki 2.7: the collector sees it fail, then asks its version again.
        let mut s = loki.state.lock().unwrap();
        s.like_loki_2_7();
        s.fail_next.extend([503, 503]);
    }
    post(&c, &access_batch(2, 10, 10));
    wait_until("20 lines", || loki.lines(&[]).len() == 20);
    let after: Vec<String> = loki
        .lines(&[])
        .into_iter()
        .filter(|l| l.metadata.is_empty())
        .map(|l| l.line)
        .collect();
    assert_eq!(after.len(), 10);
    assert!(
        after.iter().all(|l| l.ends_with(" status=200")),
        "folded: {after:?}"
    );
}

#[test]
fn without_buildinfo_metadata_is_sent_unless_configured_off() {
    // A Loki 3 behind a gateway that passes only pushes: metadata sent, and kept.
    let loki3 = LokiServer::start();
    loki3.state.lock().unwrap().version = None;
    let c = Collector::start("loki-nobuildinfo", &loki_config(&loki3, ""));
    post(&c, &access_batch(1, 0, 5));
    wait_until("5 lines", || loki3.lines(&[]).len() == 5);
    assert!(loki3
        .lines(&[])
        .iter()
        .all(|l| l.metadata["status"] == "200"));
    // A Loki 2.7 that hides its version can only be told by the operator.
    let loki2 = LokiServer::start();
    {
        let mut s = loki2.state.lock().unwrap();
        s.like_loki_2_7();
        s.version = None;
    }
    let c2 = Collector::start(
        "loki-nobuildinfo-2x",
        &loki_config(&loki2, "structured_metadata = false\n"),
    );
    post(&c2, &access_batch(1, 0, 5));
    wait_until("5 lines", || loki2.lines(&[]).len() == 5);
    assert!(loki2
        .lines(&[])
        .iter()
        .all(|l| l.line.ends_with(" status=200")));
}

/// The stand-in answers LogQL as Loki does, per version: what the tests above rely on.
#[test]
fn the_loki_stand_in_evaluates_logql_like_loki() {
    let error = r#"2024/11/29 10:14:02 [error] 7#7: *1 connect() failed (111: Connection refused) while connecting to upstream, client: 127.0.0.1, server: _, request: "GET / HTTP/1.1", upstream: "http://127.0.0.1:8084/", host: "127.0.0.1" upstream=http://127.0.0.1:8084/ upstream_error=refused"#;
    let access =
        r#"127.0.0.1 - - [29/Nov/2024:10:14:02 +0000] "GET /a HTTP/1.1" 504 157 "-" "curl/8.5.0""#;
    for loki_2x in [true, false] {
        let loki = LokiServer::start();
        if loki_2x {
            loki.state.lock().unwrap().like_loki_2_7();
        }
        let now = now_ns();
        let body = serde_json::json!({"streams": [
            {"stream": {"job": "t", "source": "e"}, "values": [[now.to_string(), error]]},
            {"stream": {"job": "t", "source": "a"}, "values": [[(now + 1).to_string(), access, {"status": "504"}]]},
        ]});
        let r = http::request(
            "POST",
            loki.port,
            "/loki/api/v1/push",
            &[("Content-Type", "application/json")],
            body.to_string().as_bytes(),
        )
        .unwrap();
        assert_eq!(r.status, 204, "{}", r.body);
        let count = |q: &str| results(&loki, q).len();
        // 2.7's logfmt stops at `"GET`; later ones skip it and reach the folded fields.
        let logfmt = r#"{job="t"} | logfmt | upstream_error="refused""#;
        assert_eq!(count(logfmt), usize::from(!loki_2x), "2.x: {loki_2x}");
        let errored = r#"{job="t", source="e"} | logfmt | __error__="LogfmtParserErr""#;
        assert_eq!(count(errored), usize::from(loki_2x));
        // A capture runs to the next literal, or to the end of the line.
        let upstream_error = r#"{job="t"} | pattern `<_> upstream_error=<e> <_>` | e="refused""#;
        assert_eq!(count(upstream_error), 1);
        assert_eq!(
            count(r#"{job="t"} | pattern `<_> "<_>" <status> <_>` | status=~"50[24]""#),
            1
        );
        assert_eq!(
            count(r#"{job="t"} | pattern `<_> "<_>" <status> <_>` | status=~"50""#),
            0,
            "anchored"
        );
        assert_eq!(
            count(r#"{job="t"} | pattern `<_> "<_>" <status> <_>` | status!~"50[24]""#),
            1
        );
        assert_eq!(
            count(r#"{job="t"} | pattern `<_> "<_>" <status> <_>` | status="504" |= "curl""#),
            1
        );
        // A name taken by a stream label is extracted as `<name>_extracted`.
        assert_eq!(
            count(r#"{job="t"} | pattern "<source> <_>" | source="127.0.0.1""#),
            0
        );
        assert_eq!(
            count(r#"{job="t"} | pattern "<source> <_>" | source_extracted="127.0.0.1""#),
            1
        );
        // Structured metadata is only there when this Loki keeps it.
        assert_eq!(
            count(r#"{job="t"} |= "curl" | status="504""#),
            usize::from(!loki_2x)
        );
        for bad in [
            r#"{job="t"} | json"#,
            r#"{job="t"} | logfmt --strict"#,
            r#"{job="t"} |~ "x""#,
            r#"{job="t"} | pattern "<a><b>""#,
            r#"{job="t"} | pattern "<_>""#,
            r#"{job="t"} | pattern "\w <a>""#,
            r#"{job="t"} | status >= 500"#,
            r#"{job="t"} | status=~"(""#,
            r#"{job="t" | logfmt"#,
        ] {
            let path = format!("/loki/api/v1/query_range?query={}", http::encode(bad));
            assert_eq!(http::get(loki.port, &path).unwrap().status, 400, "{bad}");
        }
        // buildinfo tells the version, or is absent.
        let info = http::get(loki.port, "/loki/api/v1/status/buildinfo").unwrap();
        assert!(
            info.body
                .contains(if loki_2x { "\"2.7.4\"" } else { "\"3.2.0\"" }),
            "{}",
            info.body
        );
        loki.state.lock().unwrap().version = None;
        assert_eq!(
            http::get(loki.port, "/loki/api/v1/status/buildinfo")
                .unwrap()
                .status,
            404
        );
    }
    // A push over the burst is refused like Loki's rate limiter does.
    let loki = LokiServer::start();
    loki.state.lock().unwrap().burst_bytes = Some(10);
    let r = loki.raw_protobuf_push(r#"{job="a"}"#, now_ns());
    assert_eq!(r.status, 204, "3 bytes fit");
    loki.state.lock().unwrap().burst_bytes = Some(2);
    let r = loki.raw_protobuf_push(r#"{job="a"}"#, now_ns());
    assert_eq!(r.status, 429);
    assert!(
        r.body.contains("Ingestion rate limit exceeded"),
        "{}",
        r.body
    );
}
