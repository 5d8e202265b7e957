//! The collector under load: the release binary configured as deployed (a token, the
//! write-ahead log and dedup state under `state_dir`, a Loki URL with its spool, alert
//! state), started in a directory of its own; what /proc says it uses; its /metrics.
use std::{
    collections::HashMap,
    net::{Ipv4Addr, SocketAddr, TcpListener},
    os::unix::{fs::OpenOptionsExt, process::CommandExt},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::Context;

use super::http1::Client;

pub struct Collector {
    pub addr: SocketAddr,
    pub token: String,
    pub log: PathBuf,
    child: Child,
}

/// A free loopback port (bound, then released for the collector to take).
fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port())
}

impl Collector {
    /// Starts `bin` with its state under `dir` (emptied first), shipping to `loki`, with
    /// `extra` top-level settings (e.g. `max_concurrent_ingests = 64`); returns once it
    /// serves.
    pub fn start(
        bin: &Path,
        dir: &Path,
        loki: SocketAddr,
        extra: &str,
    ) -> anyhow::Result<Collector> {
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let token = format!("fleet-bench-{}", std::process::id());
        let token_file = dir.join("token");
        std::fs::OpenOptions::new()
            .create_new(true)
            .write(true)
            .mode(0o600)
            .open(&token_file)
            .and_then(|mut f| std::io::Write::write_all(&mut f, token.as_bytes()))
            .with_context(|| format!("writing {}", token_file.display()))?;
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()?));
        let config = dir.join("collector.toml");
        let d = dir.display();
        std::fs::write(
            &config,
            format!(
                "{extra}\nlisten = \"{addr}\"\ntoken_file = \"{d}/token\"\nstate_dir = \"{d}/state\"\n\
                 loki_url = \"http://{loki}\"\n\n[loki]\nspool_dir = \"{d}/loki-spool\"\n\n\
                 [alerts]\nstate_dir = \"{d}/alerts\"\n"
            ),
        )?;
        let log = dir.join("collector.log");
        let out = std::fs::File::create(&log)?;
        let mut cmd = Command::new(bin);
        cmd.arg("--config")
            .arg(&config)
            .env("VIGIL_LOG", "info")
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out);
        // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            // Stopped with the bench, Ctrl-C included.
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let mut collector = Collector {
            addr,
            token,
            log,
            child,
        };
        collector.wait_ready()?;
        Ok(collector)
    }

    /// Until /readyz answers 200; fails with the log's tail if it exits or takes 20 s.
    fn wait_ready(&mut self) -> anyhow::Result<()> {
        let end = Instant::now() + Duration::from_secs(20);
        loop {
            let ready = Client::connect(self.addr, Duration::from_secs(1))
                .ok()
                .and_then(|mut c| c.request("GET", "/readyz", "", b"").ok())
                .is_some_and(|r| r.status == 200);
            if ready {
                return Ok(());
            }
            let exited = self.child.try_wait()?;
            if exited.is_some() || Instant::now() >= end {
                let log = std::fs::read_to_string(&self.log).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(12).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                anyhow::bail!(
                    "the collector {} (log {}):\n{}",
                    exited.map_or("is not ready after 20 s".into(), |s| format!(
                        "exited ({s})"
                    )),
                    self.log.display(),
                    tail.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn proc_file(&self, name: &str) -> anyhow::Result<String> {
        let path = format!("/proc/{}/{name}", self.child.id());
        std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))
    }

    /// CPU used so far (user + system).
    pub fn cpu(&self) -> anyhow::Result<Duration> {
        proc_cpu(&self.proc_file("stat")?)
    }

    /// Each thread's name and CPU so far, by thread id (a thread that ends between two
    /// calls takes its CPU with it: the tokio blocking pool's idle threads do).
    pub fn threads(&self) -> anyhow::Result<HashMap<u32, (String, Duration)>> {
        let dir = format!("/proc/{}/task", self.child.id());
        let mut out = HashMap::new();
        for entry in std::fs::read_dir(&dir).with_context(|| format!("reading {dir}"))? {
            let entry = entry?;
            let Ok(tid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            // Gone since the listing: not counted.
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            let name = stat
                .split_once('(')
                .and_then(|(_, rest)| rest.rsplit_once(')'))
                .map_or("?", |(name, _)| name)
                .to_owned();
            out.insert(tid, (name, proc_cpu(&stat)?));
        }
        Ok(out)
    }

    /// A `VmRSS`-style field of /proc/PID/status, in bytes.
    pub fn memory(&self, field: &str) -> anyhow::Result<u64> {
        status_bytes(&self.proc_file("status")?, field)
    }

    /// Stops it (SIGTERM, its drain and checkpoint, SIGKILL after a grace) and says how it
    /// exited.
    pub fn stop(mut self) -> Option<String> {
        let end = Instant::now() + Duration::from_secs(20);
        // SAFETY: a signal to our own child, not reaped yet.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        while Instant::now() < end {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status.to_string());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// utime + stime of a /proc/PID/stat or /proc/self/stat text.
pub fn proc_cpu(stat: &str) -> anyhow::Result<Duration> {
    let after_comm = stat.rsplit_once(')').context("bad /proc stat")?.1;
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    // utime and stime are fields 14 and 15; after ") " field 3 is at index 0.
    let ticks = fields[11].parse::<u64>()? + fields[12].parse::<u64>()?;
    // SAFETY: no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    Ok(Duration::from_millis(ticks * 1000 / hz))
}

fn status_bytes(status: &str, field: &str) -> anyhow::Result<u64> {
    let line = status
        .lines()
        .find(|l| l.split(':').next() == Some(field))
        .with_context(|| format!("no {field} in /proc status"))?;
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("bad line {line:?}"))?;
    Ok(kib << 10)
}

/// One /metrics scrape over a kept-alive connection, as Prometheus scrapes.
pub struct Scrape {
    pub text: String,
    pub took: Duration,
}

pub fn scrape(client: &mut Client) -> anyhow::Result<Scrape> {
    let start = Instant::now();
    let response = client.request("GET", "/metrics", "", b"")?;
    let took = start.elapsed();
    anyhow::ensure!(
        response.status == 200,
        "/metrics answered {}",
        response.status
    );
    let text = String::from_utf8(response.body).context("/metrics is not UTF-8")?;
    Ok(Scrape { text, took })
}

/// Every sample of `family` (a counter or gauge) with its label text: `{result="busy"}`.
pub fn samples<'a>(text: &'a str, family: &str) -> Vec<(&'a str, f64)> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let rest = l.strip_prefix(family)?;
            let (labels, value) = rest.rsplit_once(' ')?;
            let labels = labels.trim();
            (labels.is_empty() || labels.starts_with('{')).then_some(())?;
            Some((labels, value.parse().ok()?))
        })
        .collect()
}

/// The one value of `family` whose labels hold `label` (e.g. `result="accepted"`, or "" for
/// an unlabelled one); a missing series is an error, never 0.
pub fn value(text: &str, family: &str, label: &str) -> anyhow::Result<f64> {
    samples(text, family)
        .into_iter()
        .find(|(labels, _)| labels.contains(label))
        .map(|(_, v)| v)
        .with_context(|| format!("/metrics has no {family}{{{label}}}"))
}

/// Series in a scrape (sample lines).
pub fn series(text: &str) -> usize {
    text.lines().filter(|l| !l.starts_with('#')).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_are_read_by_family_and_label() {
        let text = "# TYPE vigil_ingest_batches_total counter\n\
                    vigil_ingest_batches_total{result=\"accepted\"} 1200\n\
                    vigil_ingest_batches_total{result=\"busy\"} 3\n\
                    vigil_ingest_batches_total_other 9\n\
                    vigil_loki_lines_sent_total 5e3\n";
        let all = samples(text, "vigil_ingest_batches_total");
        assert_eq!(all.len(), 2);
        assert_eq!(
            value(text, "vigil_ingest_batches_total", "result=\"busy\"").unwrap(),
            3.0
        );
        assert_eq!(
            value(text, "vigil_loki_lines_sent_total", "").unwrap(),
            5000.0
        );
        assert!(value(text, "vigil_ingest_batches_total", "result=\"wal_full\"").is_err());
        assert_eq!(series(text), 4);
        assert_eq!(
            status_bytes("VmRSS:\t   2048 kB\nVmHWM:\t4096 kB\n", "VmHWM").unwrap(),
            4 << 20
        );
    }
}
