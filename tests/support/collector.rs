//! `vigil-collector` as a child process with its own config file and port.
use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::Duration,
};

use crate::{bin, free_port, http, scratch_dir, wait_for};

pub struct Collector {
    child: Child,
    pub port: u16,
    pub dir: PathBuf,
}

impl Collector {
    /// `extra` is appended to the TOML config (listen is set here).
    pub fn start(tag: &str, extra: &str) -> Collector {
        Self::start_on(tag, free_port(), extra)
    }

    pub fn start_on(tag: &str, port: u16, extra: &str) -> Collector {
        let dir = scratch_dir(&format!("collector-{tag}-{port}"));
        let config = dir.join("collector.toml");
        std::fs::write(&config, format!("listen = \"127.0.0.1:{port}\"\n{extra}")).unwrap();
        let child = Command::new(bin("vigil-collector"))
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .spawn()
            .expect("start vigil-collector");
        let c = Collector { child, port, dir };
        let up = || http::get(port, "/healthz").is_ok_and(|r| r.status == 200);
        assert!(
            wait_for(Duration::from_secs(10), up),
            "collector did not come up on {port}"
        );
        c
    }

    /// `POST /api/v1/ingest` with a batch body, as an agent sends it.
    pub fn ingest(&self, body: &[u8], token: Option<&str>) -> http::Response {
        let auth = token.map(|t| format!("Bearer {t}"));
        let mut headers = vec![("Content-Type", vigil_wire::CONTENT_TYPE)];
        if let Some(a) = &auth {
            headers.push(("Authorization", a));
        }
        http::request("POST", self.port, "/api/v1/ingest", &headers, body).unwrap()
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn metrics(&self) -> String {
        http::get(self.port, "/metrics")
            .map(|r| r.body)
            .unwrap_or_default()
    }

    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        http::metric_value(&self.metrics(), name, labels).unwrap_or(0.0)
    }

    /// SIGTERM; the collector drains (ingest refused, /metrics served) and exits.
    pub fn terminate(&mut self) {
        crate::terminate(&self.child);
    }

    pub fn wait(&mut self) -> std::process::ExitStatus {
        self.child.wait().unwrap()
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
