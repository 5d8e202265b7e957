//! One node with every cause at once: real nginx proxying to upstreams that are healthy,
//! refused, slow, CPU-bound, behind dropped SYNs, with a full accept queue, resetting, and a
//! group whose servers are all down; the real agent and collector (Loki stand-in, a real
//! Alertmanager for its notifier) and a real Prometheus evaluating the rules, while traffic
//! keeps flowing.
use std::{
    io::{BufRead, BufReader},
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread::JoinHandle,
    time::Duration,
};

use vigil_e2e::{
    agent::AgentRun,
    alertmanager::Alertmanager,
    collector::Collector,
    free_port, http,
    loki::LokiServer,
    nft::SynDrop,
    nginx::{Nginx, Route},
    prometheus::Prometheus,
    python::{self, PythonUpstream},
    scratch_dir,
    upstreams::{self, Upstream},
};

/// The upstream label of each case, as the agent names a loopback port.
pub struct Upstreams {
    pub healthy: String,
    pub refused: String,
    pub slow: String,
    pub saturated: String,
    pub unreachable: String,
    pub backlog_full: String,
    pub reset: String,
    /// The `upstream` block whose servers all refuse (nginx logs `no live upstreams`).
    pub group: String,
}

pub const GROUP: &str = "vigil_pool";

pub struct Scenario {
    pub upstreams: Upstreams,
    pub prometheus: Prometheus,
    pub loki: LokiServer,
    _collector: Collector,
    stop: Arc<AtomicBool>,
    traffic: Vec<JoinHandle<()>>,
    // Held for their lifetime only; dropped after the traffic stops.
    _agent: AgentRun,
    _nginx: Nginx,
    pub alertmanager: Alertmanager,
    _kept: Kept,
}

struct Kept {
    _healthy: Upstream,
    _slow: PythonListener,
    _spinning: PythonUpstream,
    _syn_drop: SynDrop,
    _backlog: PythonListener,
    _reset: PythonListener,
}

fn loopback(port: u16) -> String {
    format!("127.0.0.1:{port}")
}

/// An upstream in a python process of its own, so the processes the agent finds behind its
/// port are its own (a listener in this test process would have every server the test
/// started as its "workers").
struct PythonListener {
    child: Child,
    port: u16,
}

/// Accepts and keeps every connection, never answers: requests time out reading (slow).
const SILENT: &str = r#"
import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(64)
print(s.getsockname()[1], flush=True)
held = []
while True:
    held.append(s.accept()[0])
"#;

/// A backlog of 1, never accepting: two connects fill the queue, then the kernel drops SYNs.
const FULL_BACKLOG: &str = r#"
import socket, time
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(1)
print(s.getsockname()[1], flush=True)
while True:
    time.sleep(3600)
"#;

/// Reads the request, then closes with SO_LINGER 0: nginx gets an RST instead of a response
/// (`recv() failed (104: Connection reset by peer)`, 502).
const RESETTING: &str = r#"
import socket, struct
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(64)
print(s.getsockname()[1], flush=True)
while True:
    c = s.accept()[0]
    c.recv(4096)
    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    c.close()
"#;

impl PythonListener {
    fn start(script: &str) -> PythonListener {
        let mut child = Command::new("/usr/bin/python3")
            .args(["-c", script])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("/usr/bin/python3");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("python said {line:?}"));
        PythonListener { child, port }
    }
}

impl Drop for PythonListener {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Scenario {
    pub fn start(rule_files: &[PathBuf]) -> Scenario {
        let healthy = upstreams::http_ok(Duration::from_millis(20));
        let refused = free_port();
        let slow = PythonListener::start(SILENT);
        // Two workers for the two cores here: with one, the idle owner counts as room to spare.
        let spinning = python::spinning(2);
        let unreachable = free_port();
        let syn_drop = SynDrop::new(unreachable);
        let backlog = PythonListener::start(FULL_BACKLOG);
        let reset = PythonListener::start(RESETTING);
        let (group_a, group_b, group_port) = (free_port(), free_port(), free_port());

        let routes = [
            ("/healthy", healthy.port),
            ("/refused", refused),
            ("/slow", slow.port),
            ("/saturated", spinning.port),
            ("/unreachable", unreachable),
            ("/backlog", backlog.port),
            ("/reset", reset.port),
        ];
        // http-level directives: the timeouts, and a second server proxying to a group.
        let http = format!(
            "proxy_connect_timeout 1s; proxy_read_timeout 1s;\n  \
             upstream {GROUP} {{ server 127.0.0.1:{group_a} max_fails=1 fail_timeout=60s; \
             server 127.0.0.1:{group_b} max_fails=1 fail_timeout=60s; }}\n  \
             server {{ listen 127.0.0.1:{group_port}; location / {{ proxy_pass http://{GROUP}; }} }}"
        );
        let nginx_routes: Vec<Route> = routes
            .iter()
            .map(|&(path, upstream_port)| Route {
                path,
                upstream_port,
            })
            .collect();
        let nginx = Nginx::start("dashboards", &nginx_routes, &http);

        let loki = LokiServer::start();
        let alertmanager = Alertmanager::start();
        let collector = Collector::start(
            "dashboards",
            &format!(
                "loki_url = \"{}\"\n[loki]\nbatch_age_ms = 200\n[alerts]\nfor_ms = 1000\n\
                 [notify]\nalertmanager_url = \"{}\"\ngroup_wait_ms = 200\n",
                loki.url(),
                alertmanager.url()
            ),
        );
        let prometheus = Prometheus::start_with_rules(collector.port, rule_files);
        let ports: Vec<u16> = routes.iter().map(|(_, p)| *p).collect();
        let d = nginx.dir.display();
        let agent = AgentRun::start(
            &collector.url(),
            &ports,
            &scratch_dir("dashboards-agent"),
            &[
                "--nginx-error-log",
                &format!("{d}/error.log"),
                "--nginx-access-log",
                &format!("{d}/access.log"),
            ],
        );

        let stop = Arc::new(AtomicBool::new(false));
        let mut targets: Vec<(u16, &str)> =
            routes.iter().map(|(path, _)| (nginx.port, *path)).collect();
        targets.push((group_port, "/"));
        let traffic = targets
            .into_iter()
            .map(|(port, path)| {
                // The spinning workers never accept: each request leaves a connection in
                // their queue of 64, and once it is full the connects time out as well.
                // Slowly, so that takes minutes, not one.
                let pause = Duration::from_millis(if path == "/saturated" { 1000 } else { 200 });
                let stop = stop.clone();
                let path = path.to_owned();
                std::thread::spawn(move || {
                    while !stop.load(Ordering::SeqCst) {
                        // Failures are the point; the answer is nginx's 502/504.
                        let _ = http::get(port, &path);
                        std::thread::sleep(pause);
                    }
                })
            })
            .collect();

        Scenario {
            upstreams: Upstreams {
                healthy: loopback(healthy.port),
                refused: loopback(refused),
                slow: loopback(slow.port),
                saturated: loopback(spinning.port),
                unreachable: loopback(unreachable),
                backlog_full: loopback(backlog.port),
                reset: loopback(reset.port),
                group: GROUP.to_owned(),
            },
            prometheus,
            loki,
            _collector: collector,
            stop,
            traffic,
            _agent: agent,
            _nginx: nginx,
            alertmanager,
            _kept: Kept {
                _healthy: healthy,
                _slow: slow,
                _spinning: spinning,
                _syn_drop: syn_drop,
                _backlog: backlog,
                _reset: reset,
            },
        }
    }
}

impl Drop for Scenario {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.traffic.drain(..) {
            let _ = t.join();
        }
    }
}
