//! `vigil-agent` as a child process: `trace` (records read as they come), `inspect`, `run`.
use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    thread::JoinHandle,
    time::Duration,
};

use serde_json::Value;

use crate::bin;

/// The records for 127.0.0.1:`port`; the machine is shared, other traffic is ignored.
pub fn records_for(records: &[Value], port: u16) -> Vec<&Value> {
    let dst = format!("127.0.0.1:{port}");
    records
        .iter()
        .filter(|r| r["dst"] == dst.as_str())
        .collect()
}

pub struct Trace {
    child: Child,
    records: Arc<Mutex<Vec<Value>>>,
    reader: Option<JoinHandle<()>>,
}

impl Trace {
    pub fn start(ports: &[u16]) -> Trace {
        Self::start_with_env(ports, &[])
    }

    pub fn start_with_env(ports: &[u16], env: &[(&str, &str)]) -> Trace {
        let ports: Vec<String> = ports.iter().map(u16::to_string).collect();
        let mut child = spawn_ready(
            Command::new(bin("vigil-agent"))
                .envs(env.iter().copied())
                .args(["trace", "--ports", &ports.join(",")])
                .stdout(Stdio::piped()),
            "vigil-agent trace: ready",
        );
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let records = Arc::new(Mutex::new(Vec::new()));
        let sink = records.clone();
        let reader = std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                let v = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("bad JSON {line:?}: {e}"));
                sink.lock().unwrap().push(v);
            }
        });
        Trace {
            child,
            records,
            reader: Some(reader),
        }
    }

    /// Waits (up to 20 s) until `n` records for 127.0.0.1:`port` were printed: a connection is
    /// reported when it closes, which can trail the HTTP exchange on a busy machine.
    pub fn wait_for(self, port: u16, n: usize) -> Self {
        self.wait_within(port, n, Duration::from_secs(20))
    }

    /// As `wait_for`, up to `limit`.
    pub fn wait_within(self, port: u16, n: usize, limit: Duration) -> Self {
        crate::wait_for(limit, || {
            records_for(&self.records.lock().unwrap(), port).len() >= n
        });
        self
    }

    /// SIGTERM, then every JSON record printed.
    pub fn stop(mut self) -> Vec<Value> {
        crate::terminate(&self.child);
        let status = self.child.wait().unwrap();
        assert!(status.success(), "vigil-agent trace failed: {status}");
        self.reader.take().unwrap().join().unwrap();
        std::mem::take(&mut *self.records.lock().unwrap())
    }
}

impl Drop for Trace {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Spawns `cmd` with stderr piped, returns once the agent prints `marker` on stderr (the
/// probes are live); the rest of its stderr is forwarded to ours.
fn spawn_ready(cmd: &mut Command, marker: &str) -> Child {
    let mut child = cmd
        .stderr(Stdio::piped())
        .spawn()
        .expect("start vigil-agent");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = Vec::new();
    while let Some(Ok(line)) = lines.next() {
        if line.contains(marker) {
            std::thread::spawn(move || {
                lines.for_each(|l| eprintln!("agent: {}", l.unwrap_or_default()))
            });
            return child;
        }
        seen.push(line);
    }
    let _ = child.wait();
    panic!("vigil-agent exited before `{marker}`:\n{}", seen.join("\n"));
}

/// `vigil-agent inspect ARGS` run to completion; its JSON lines.
pub fn inspect(args: &[&str]) -> Vec<Value> {
    inspect_with_env(args, &[])
}

pub fn inspect_with_env(args: &[&str], env: &[(&str, &str)]) -> Vec<Value> {
    let out = Command::new(bin("vigil-agent"))
        .envs(env.iter().copied())
        .arg("inspect")
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "inspect failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    parse_lines(&String::from_utf8_lossy(&out.stdout))
}

/// `vigil-agent inspect --watch ARGS` in the background; `finish` waits for its --duration.
pub struct Inspect(Child);

impl Inspect {
    pub fn watch(args: &[&str]) -> Inspect {
        Self::watch_with_env(args, &[])
    }

    pub fn watch_with_env(args: &[&str], env: &[(&str, &str)]) -> Inspect {
        Inspect(spawn_ready(
            Command::new(bin("vigil-agent"))
                .envs(env.iter().copied())
                .args(["inspect", "--watch"])
                .args(args)
                .stdout(Stdio::piped()),
            "vigil-agent inspect: ready",
        ))
    }

    pub fn finish(self) -> Vec<Value> {
        let out = self.0.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "inspect --watch failed: {}",
            out.status
        );
        parse_lines(&String::from_utf8_lossy(&out.stdout))
    }
}

fn parse_lines(out: &str) -> Vec<Value> {
    out.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON {l:?}: {e}")))
        .collect()
}

/// `vigil-agent run` streaming to a collector.
pub struct AgentRun(Child);

impl AgentRun {
    pub fn start(
        collector: &str,
        ports: &[u16],
        state_dir: &std::path::Path,
        extra: &[&str],
    ) -> AgentRun {
        let ports: Vec<String> = ports.iter().map(u16::to_string).collect();
        AgentRun(spawn_ready(
            Command::new(bin("vigil-agent"))
                // The default health port would clash between agents; `extra` may set one.
                .env("VIGIL_LISTEN_HEALTH", "off")
                .args([
                    "run",
                    "--collector",
                    collector,
                    "--ports",
                    &ports.join(","),
                    "--node",
                    "test-node",
                    "--interval",
                    "500ms",
                ])
                .arg("--state-dir")
                .arg(state_dir)
                .args(extra)
                .stdout(Stdio::null()),
            "vigil-agent run: ready",
        ))
    }

    /// SIGTERM and wait: the agent delivers or spools what it has.
    pub fn stop(mut self) {
        crate::terminate(&self.0);
        let _ = self.0.wait();
    }
}

impl Drop for AgentRun {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
