//! A real incident end to end: real nginx proxies to a port nothing listens on, the real
//! agent streams to the real collector, and `GET /api/v1/alerts` names the cause —
//! UpstreamDown for that port, with nginx's 502s, the site and the evidence — until
//! something serves on the port again and the alert resolves.
use std::{
    io::{Read, Write},
    net::TcpListener,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread,
    time::Duration,
};

use serde_json::Value;
use vigil_e2e::{
    agent::AgentRun,
    collector::Collector,
    free_port, http,
    loki::LokiServer,
    nginx::{Nginx, Route},
    scratch_dir, wait_for,
};

const SITE: &str = "client-portal.test";

/// The alerts the collector lists for `upstream` and `alertname`.
fn alerts_for(c: &Collector, upstream: &str, alertname: &str) -> Vec<Value> {
    let response = http::get(c.port, "/api/v1/alerts").expect("collector answers");
    assert_eq!(response.status, 200, "{}", response.body);
    let list: Value = serde_json::from_str(&response.body)
        .unwrap_or_else(|e| panic!("alerts JSON: {e}: {}", response.body));
    list["alerts"]
        .as_array()
        .expect("an `alerts` array")
        .iter()
        .filter(|a| a["key"]["upstream"] == upstream && a["key"]["cause"] == alertname)
        .cloned()
        .collect()
}

/// `vigil_alerts_firing` for UpstreamDown on `upstream`; None when the series is missing.
fn firing_gauge(c: &Collector, upstream: &str) -> Option<f64> {
    let labels = [
        ("node", "test-node"),
        ("upstream", upstream),
        ("alertname", "UpstreamDown"),
    ];
    http::metric_value(&c.metrics(), "vigil_alerts_firing", &labels)
}

fn state_of(c: &Collector, upstream: &str) -> Option<String> {
    alerts_for(c, upstream, "UpstreamDown")
        .first()
        .and_then(|a| a["state"].as_str().map(str::to_owned))
}

/// Serves 200 on 127.0.0.1:`port` until dropped.
struct Serving(Arc<AtomicBool>, u16);

fn serve_ok(port: u16) -> Serving {
    let listener = TcpListener::bind(("127.0.0.1", port)).expect("port still free");
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = stop.clone();
    thread::spawn(move || {
        for stream in listener.incoming() {
            if stopped.load(Ordering::SeqCst) {
                break;
            }
            let Ok(mut s) = stream else { continue };
            thread::spawn(move || {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf);
                let _ = s.write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok");
            });
        }
    });
    Serving(stop, port)
}

impl Drop for Serving {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
        let _ = std::net::TcpStream::connect(("127.0.0.1", self.1));
    }
}

/// GETs through nginx every 100 ms until `done`, up to `limit`; whether it happened.
fn requests_until(nginx_port: u16, limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    wait_for(limit, || {
        let _ = http::get(nginx_port, "/login");
        done()
    })
}

#[test]
fn alerts_say_upstream_down_while_nothing_listens_and_resolve_once_it_serves() {
    let port = free_port();
    let upstream = format!("127.0.0.1:{port}");
    let nginx = Nginx::start_named(
        "alerts",
        SITE,
        &[Route {
            path: "/",
            upstream_port: port,
        }],
        "proxy_connect_timeout 2s;",
    );
    let loki = LokiServer::start();
    let config = format!(
        "loki_url = \"{}\"\n[loki]\nbatch_age_ms = 200\n[alerts]\nfor_ms = 1500\nresolve_after_ms = 3000\n",
        loki.url()
    );
    let c = Collector::start("alerts", &config);
    let agent = AgentRun::start(&c.url(), &[port], &scratch_dir("alerts-agent"), &[]);

    assert_eq!(http::get(nginx.port, "/login").unwrap().status, 502);
    let fired = requests_until(nginx.port, Duration::from_secs(30), || {
        state_of(&c, &upstream).as_deref() == Some("firing")
    });
    let alerts = alerts_for(&c, &upstream, "UpstreamDown");
    assert!(fired, "no firing UpstreamDown for {upstream}: {alerts:#?}");
    let a = &alerts[0];
    // Reported, not asserted: timing targets live in benchmarks.
    eprintln!(
        "UpstreamDown fired {} ms after the first failing request",
        a["fired_at_ms"].as_i64().unwrap() - a["first_seen_ms"].as_i64().unwrap()
    );
    assert_eq!(a["status"], 502);
    assert_eq!(a["key"]["node"], "test-node");
    assert_eq!(a["server_names"], serde_json::json!([SITE]), "{a:#}");
    assert_eq!(a["locations"], serde_json::json!(["/"]));
    assert!(a["failed_requests"]["502"].as_u64().unwrap() >= 2, "{a:#}");
    let summary = a["summary"].as_str().unwrap();
    assert!(
        summary.starts_with(&format!("502 on {SITE}: nothing listens on {upstream}")),
        "{summary}"
    );
    assert_eq!(
        a["next_step"],
        format!("start the service that should listen on {upstream}")
    );
    let evidence: Vec<(&str, &str)> = a["evidence"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["kind"].as_str().unwrap(), e["text"].as_str().unwrap()))
        .collect();
    let has = |kind: &str, text: &str| evidence.iter().any(|(k, t)| *k == kind && t.contains(text));
    assert!(
        has("listener", &format!("nothing listens on {upstream}")),
        "{evidence:#?}"
    );
    assert!(
        has("nginx_error", "(111: Connection refused)"),
        "{evidence:#?}"
    );
    assert!(has("requests", "were refused"), "{evidence:#?}");
    assert_eq!(firing_gauge(&c, &upstream), Some(1.0));

    // Something serves on the port again: 200s, and after resolve_after the alert resolves.
    let _serving = serve_ok(port);
    assert!(wait_for(Duration::from_secs(10), || {
        http::get(nginx.port, "/login").is_ok_and(|r| r.status == 200)
    }));
    let resolved = requests_until(nginx.port, Duration::from_secs(30), || {
        state_of(&c, &upstream).as_deref() == Some("resolved")
    });
    let alerts = alerts_for(&c, &upstream, "UpstreamDown");
    assert!(resolved, "still not resolved: {alerts:#?}");
    assert_eq!(alerts.len(), 1, "one alert for the incident: {alerts:#?}");
    assert!(
        alerts[0]["resolved_at_ms"].as_i64().unwrap() > alerts[0]["fired_at_ms"].as_i64().unwrap()
    );
    assert_eq!(firing_gauge(&c, &upstream), Some(0.0));

    // Both transitions went to Loki as `source="alert"` lines: error when it fired, info
    // when it resolved.
    let transitions = |level: &str| {
        loki.lines(&[("source", "alert"), ("level", level)])
            .into_iter()
            .filter(|l| l.line.contains(&format!("upstream={upstream} ")))
            .collect::<Vec<_>>()
    };
    assert!(wait_for(Duration::from_secs(10), || !transitions("info").is_empty()));
    let fired = transitions("error");
    assert_eq!(fired.len(), 1, "{fired:#?}");
    assert!(
        fired[0]
            .line
            .starts_with("alert=UpstreamDown state=firing "),
        "{}",
        fired[0].line
    );
    assert_eq!(fired[0].metadata["alertname"], "UpstreamDown");
    assert_eq!(fired[0].metadata["status"], "502");
    let resolved = transitions("info");
    assert_eq!(resolved.len(), 1, "{resolved:#?}");
    assert!(
        resolved[0].line.contains("state=resolved"),
        "{}",
        resolved[0].line
    );
    agent.stop();
}

#[test]
fn alerts_say_upstream_saturated_when_its_own_workers_spin() {
    // Three workers spinning on this machine's cores; the port accepts and never answers.
    let spinning = vigil_e2e::python::spinning(3);
    let upstream = format!("127.0.0.1:{}", spinning.port);
    let nginx = Nginx::start_named(
        "alerts-saturated",
        SITE,
        &[Route {
            path: "/",
            upstream_port: spinning.port,
        }],
        "proxy_connect_timeout 1s; proxy_read_timeout 1s;",
    );
    let c = Collector::start("alerts-saturated", "[alerts]\nresolve_after_ms = 5000\n");
    let agent = AgentRun::start(
        &c.url(),
        &[spinning.port],
        &scratch_dir("alerts-sat-agent"),
        &[],
    );

    let fired = requests_until(nginx.port, Duration::from_secs(40), || {
        alerts_for(&c, &upstream, "UpstreamSaturated")
            .first()
            .is_some_and(|a| a["state"] == "firing")
    });
    let alerts = alerts_for(&c, &upstream, "UpstreamSaturated");
    assert!(
        fired,
        "no firing UpstreamSaturated for {upstream}: {alerts:#?}"
    );
    let a = &alerts[0];
    assert_eq!(a["status"], 504, "{a:#}");
    assert!(a["failed_requests"]["504"].as_u64().unwrap() >= 2, "{a:#}");
    let summary = a["summary"].as_str().unwrap();
    assert!(summary.contains("(CPU-bound)"), "{summary}");
    let workers = a["evidence"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "workers")
        .unwrap_or_else(|| panic!("workers evidence: {a:#}"));
    assert!(
        workers["text"]
            .as_str()
            .unwrap()
            .contains("processes serving"),
        "{workers}"
    );
    assert!(a["next_step"]
        .as_str()
        .unwrap()
        .contains("gunicorn --timeout 30"));
    assert!(
        alerts_for(&c, &upstream, "UpstreamSlow").is_empty(),
        "busy workers of its own: saturated, not slow"
    );
    agent.stop();
}
