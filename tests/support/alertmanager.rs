//! A real Alertmanager (Debian's prometheus-alertmanager) on 127.0.0.1 with clustering off
//! (`--cluster.listen-address=`: its gossip would dial the machine's other addresses), read
//! back with `amtool alert query`.
use std::{
    process::{Child, Command, Stdio},
    time::Duration,
};

use serde_json::Value;

use crate::{free_port, http, scratch_dir, wait_for};

const CONFIG: &str = "route:\n  receiver: nobody\nreceivers:\n  - name: nobody\n";

pub struct Alertmanager {
    child: Child,
    pub port: u16,
}

impl Alertmanager {
    pub fn start() -> Alertmanager {
        let port = free_port();
        let dir = scratch_dir(&format!("alertmanager-{port}"));
        std::fs::write(dir.join("alertmanager.yml"), CONFIG).unwrap();
        let child = Command::new("prometheus-alertmanager")
            .arg(format!(
                "--config.file={}",
                dir.join("alertmanager.yml").display()
            ))
            .arg(format!("--storage.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--cluster.listen-address=")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus-alertmanager installed (cargo xtask setup)");
        let am = Alertmanager { child, port };
        let ready = || http::get(port, "/-/ready").is_ok_and(|r| r.status == 200);
        assert!(
            wait_for(Duration::from_secs(30), ready),
            "alertmanager did not become ready"
        );
        am
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `amtool alert query -o json`: the alerts Alertmanager holds as active (resolved ones
    /// are not listed).
    pub fn query(&self) -> Vec<Value> {
        let out = Command::new("amtool")
            .args(["alert", "query", "-o", "json", "--alertmanager.url"])
            .arg(self.url())
            .output()
            .expect("amtool installed with prometheus-alertmanager");
        assert!(
            out.status.success(),
            "amtool: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("amtool JSON")
    }

    /// Polls `query` until `done` holds for its alerts (or 20 s pass); the alerts then.
    pub fn wait(&self, mut done: impl FnMut(&[Value]) -> bool) -> Vec<Value> {
        let mut alerts = Vec::new();
        wait_for(Duration::from_secs(20), || {
            alerts = self.query();
            done(&alerts)
        });
        alerts
    }
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
