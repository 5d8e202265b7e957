//! A real Prometheus (Debian package) scraping one target every second.
use std::{
    process::{Child, Command, Stdio},
    time::Duration,
};

use serde_json::Value;

use crate::{free_port, http, scratch_dir, wait_for};

pub struct Prometheus {
    child: Child,
    pub port: u16,
}

impl Prometheus {
    pub fn start(target_port: u16) -> Prometheus {
        Self::start_with_rules(target_port, &[])
    }

    /// Also evaluating the rule files (every second, like the scrapes).
    pub fn start_with_rules(target_port: u16, rule_files: &[std::path::PathBuf]) -> Prometheus {
        let dir = scratch_dir(&format!("prometheus-{target_port}"));
        let port = free_port();
        let mut config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: vigil\n    static_configs:\n      - targets: ['127.0.0.1:{target_port}']\n"
        );
        if !rule_files.is_empty() {
            config += "rule_files:\n";
            for f in rule_files {
                config += &format!("  - '{}'\n", f.display());
            }
        }
        std::fs::write(dir.join("prometheus.yml"), config).unwrap();
        let child = Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus installed (cargo xtask setup)");
        let p = Prometheus { child, port };
        let ready = || http::get(port, "/-/ready").is_ok_and(|r| r.status == 200);
        assert!(
            wait_for(Duration::from_secs(30), ready),
            "prometheus did not become ready"
        );
        p
    }

    /// The first sample of an instant query, if any.
    pub fn query(&self, promql: &str) -> Option<f64> {
        let r = http::get(
            self.port,
            &format!("/api/v1/query?query={}", http::encode(promql)),
        )
        .ok()?;
        let v: Value = serde_json::from_str(&r.body).ok()?;
        v["data"]["result"][0]["value"][1].as_str()?.parse().ok()
    }

    /// Polls `promql` until it returns `want` (scrapes are every second) or 20 s pass.
    pub fn wait_for(&self, promql: &str, want: f64) -> Option<f64> {
        let mut last = None;
        wait_for(Duration::from_secs(20), || {
            last = self.query(promql);
            last == Some(want)
        });
        last
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
