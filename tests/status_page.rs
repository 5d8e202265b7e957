//! `GET /` in a real browser during a real incident: nginx proxies to a port nothing listens
//! on, the real agent streams to the real collector, and once `/api/v1/alerts` says
//! UpstreamDown, Debian's headless chromium renders the status page: the alert with its
//! evidence, the node, and the upstream. A screenshot lands in target/status-page.png.
use std::{path::PathBuf, process::Command, time::Duration};

use serde_json::Value;
use vigil_e2e::{
    agent::AgentRun,
    collector::Collector,
    free_port, http,
    nginx::{Nginx, Route},
    scratch_dir, wait_for,
};

fn upstream_down_listed(c: &Collector, upstream: &str) -> bool {
    let Ok(response) = http::get(c.port, "/api/v1/alerts") else {
        return false;
    };
    let list: Value = serde_json::from_str(&response.body).unwrap_or(Value::Null);
    list["alerts"].as_array().is_some_and(|alerts| {
        alerts
            .iter()
            .any(|a| a["key"]["upstream"] == upstream && a["key"]["cause"] == "UpstreamDown")
    })
}

/// Runs headless chromium on `url` with `args`; its stdout (panics with stderr on failure).
fn chromium(profile: &std::path::Path, url: &str, args: &[&str]) -> String {
    let out = Command::new("chromium")
        .args(["--headless=new", "--no-sandbox", "--disable-gpu"])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(url)
        .env("HOME", profile)
        .output()
        .expect("chromium runs (cargo xtask setup installs it)");
    assert!(
        out.status.success(),
        "chromium {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn screenshot_path() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"),
        PathBuf::from,
    );
    target.join("status-page.png")
}

#[test]
fn status_page_in_a_browser_shows_the_incident() {
    let port = free_port();
    let upstream = format!("127.0.0.1:{port}");
    let nginx = Nginx::start_named(
        "status-page",
        "status-page.test",
        &[Route {
            path: "/",
            upstream_port: port,
        }],
        "proxy_connect_timeout 2s;",
    );
    let c = Collector::start("status-page", "[alerts]\nfor_ms = 1500\n");
    let _agent = AgentRun::start(&c.url(), &[port], &scratch_dir("status-page-agent"), &[]);

    let listed = wait_for(Duration::from_secs(30), || {
        let _ = http::get(nginx.port, "/login");
        upstream_down_listed(&c, &upstream)
    });
    assert!(listed, "no UpstreamDown for {upstream} in /api/v1/alerts");

    let url = format!("http://127.0.0.1:{}/", c.port);
    let profile = scratch_dir("status-page-chromium");
    let dom = chromium(&profile, &url, &["--dump-dom"]);
    for expected in [
        "UpstreamDown",
        upstream.as_str(),
        "test-node",
        &format!("nothing listens on {upstream}"),
        // Its row in the upstreams table, not some other test's upstream.
        &format!("<td>{upstream}</td><td class=\"down\">NOT listening"),
    ] {
        assert!(
            dom.contains(expected),
            "{expected:?} missing from the page:\n{dom}"
        );
    }
    assert!(dom.contains("http-equiv=\"refresh\""), "{dom}");

    let shot = screenshot_path();
    let _ = std::fs::remove_file(&shot);
    chromium(
        &profile,
        &url,
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=1280,900",
        ],
    );
    let size = std::fs::metadata(&shot).map(|m| m.len()).unwrap_or(0);
    assert!(size > 0, "no screenshot at {}", shot.display());
    eprintln!("status page screenshot: {} ({size} bytes)", shot.display());
}
