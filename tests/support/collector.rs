//! `vigil-collector` as a child process with its own config file and port.
use std::{
    io::{Read, Write},
    net::TcpStream,
    path::PathBuf,
    process::{Child, Command, ExitStatus, Stdio},
    time::{Duration, Instant},
};

use crate::{bin, free_port, http, scratch_dir, wait_for};

pub struct Collector {
    child: Child,
    pub port: u16,
    pub dir: PathBuf,
    /// Set when it serves HTTPS: the CA the harness trusts for it.
    ca: Option<PathBuf>,
}

impl Collector {
    /// `extra` is appended to the TOML config (listen is set here).
    pub fn start(tag: &str, extra: &str) -> Collector {
        Self::start_on(tag, free_port(), extra)
    }

    pub fn start_on(tag: &str, port: u16, extra: &str) -> Collector {
        Self::launch(tag, port, extra, None)
    }

    /// A collector serving HTTPS (its `extra` names the certificate and key), reached by the
    /// harness through curl trusting `ca`.
    pub fn start_tls(tag: &str, extra: &str, ca: &std::path::Path) -> Collector {
        Self::launch(tag, free_port(), extra, Some(ca.to_owned()))
    }

    fn launch(tag: &str, port: u16, extra: &str, ca: Option<PathBuf>) -> Collector {
        let dir = scratch_dir(&format!("collector-{tag}-{port}"));
        let config = dir.join("collector.toml");
        // Durable like a real deployment (write-ahead log, dedup state), unless the test
        // names its own state directory to share it across restarts.
        let top_level = extra
            .lines()
            .take_while(|l| !l.trim_start().starts_with('['));
        let state = if top_level
            .clone()
            .any(|l| l.trim_start().starts_with("state_dir"))
        {
            String::new()
        } else {
            format!("state_dir = \"{}\"\n", dir.join("state").display())
        };
        std::fs::write(
            &config,
            format!("listen = \"127.0.0.1:{port}\"\n{state}{extra}"),
        )
        .unwrap();
        let child = Command::new(bin("vigil-collector"))
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .spawn()
            .expect("start vigil-collector");
        let c = Collector {
            child,
            port,
            dir,
            ca,
        };
        let up = || c.get("/healthz").is_ok_and(|r| r.status == 200);
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

    /// The `/metrics` text; panics when the collector does not answer 200 (a dead collector
    /// must fail the test, not read as zeros).
    pub fn metrics(&self) -> String {
        match self.get("/metrics") {
            Ok(r) if r.status == 200 => r.body,
            Ok(r) => panic!(
                "GET /metrics on {}: status {}: {}",
                self.port, r.status, r.body
            ),
            Err(e) => panic!("GET /metrics on {}: {e}", self.port),
        }
    }

    /// GET over HTTP, or over HTTPS with curl trusting the collector's CA.
    fn get(&self, path: &str) -> std::io::Result<http::Response> {
        let Some(ca) = &self.ca else {
            return http::get(self.port, path);
        };
        let out = Command::new("curl")
            .args(["-sS", "--max-time", "5", "-w", "\n%{http_code}", "--cacert"])
            .arg(ca)
            .arg(format!("https://127.0.0.1:{}{path}", self.port))
            .output()?;
        if !out.status.success() {
            return Err(std::io::Error::other(
                String::from_utf8_lossy(&out.stderr).into_owned(),
            ));
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let (body, status) = text.rsplit_once('\n').unwrap_or(("", &text));
        Ok(http::Response {
            status: status.trim().parse().unwrap_or(0),
            body: body.to_owned(),
        })
    }

    /// The sample `name{labels}`; panics, showing the exposition, when there is none.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let text = self.metrics();
        http::metric_value(&text, name, labels)
            .unwrap_or_else(|| panic!("no sample {name}{labels:?} in /metrics:\n{text}"))
    }

    /// The sample `name{labels}` if the collector has it yet (for polling; a test asserts
    /// on `value` afterwards, or on `None` where a series must be absent).
    pub fn sample(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        http::metric_value(&self.metrics(), name, labels)
    }

    /// SIGTERM; the collector drains (ingest refused, /metrics served) and exits.
    pub fn terminate(&mut self) {
        crate::terminate(&self.child);
    }

    pub fn wait(&mut self) -> std::process::ExitStatus {
        self.child.wait().unwrap()
    }

    /// The exit status if the process ends within `limit`.
    pub fn wait_at_most(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// An ingest request that declares a `declared`-byte body, sends `sent` bytes of it and
    /// then nothing: a client stalled mid-upload (until the stream is dropped).
    pub fn stalled_upload(&self, declared: usize, sent: usize) -> TcpStream {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        let head = format!(
            "POST {} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: {}\r\nContent-Length: {declared}\r\n\r\n",
            vigil_wire::INGEST_PATH,
            vigil_wire::CONTENT_TYPE
        );
        s.write_all(head.as_bytes()).unwrap();
        s.write_all(&vec![0u8; sent]).unwrap();
        s
    }

    /// A whole ingest request on its own connection: the response's head (status line and
    /// headers, lower-cased) and body, for the headers `ingest` does not show.
    pub fn ingest_with_head(&self, body: &[u8]) -> (u16, String, String) {
        let mut s = self.stalled_upload(body.len(), 0);
        s.write_all(body).unwrap();
        read_response(&mut s)
    }
}

/// Reads one HTTP response to its end (the collector closes after it): (status, lower-cased
/// head, body). Status 0 when the connection closed without one.
pub fn read_response(s: &mut TcpStream) -> (u16, String, String) {
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut raw = Vec::new();
    // A reset after the response (unread request bytes) still leaves what was read.
    let _ = s.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, head.to_ascii_lowercase(), body.to_owned())
}

impl Drop for Collector {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
