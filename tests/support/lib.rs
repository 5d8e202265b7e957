//! Test harness: real nginx with its own prefix, small upstreams, nft rules and the
//! `vigil-agent` binary, all on 127.0.0.1 with ports picked per test.
pub mod agent;
pub mod alertmanager;
pub mod collector;
pub mod crash;
pub mod elsewhere;
pub mod http;
pub mod loki;
pub mod netns;
pub mod nft;
pub mod nginx;
pub mod prometheus;
pub mod python;
pub mod smtp;
pub mod upstreams;

use std::{net::TcpListener, path::PathBuf, time::Duration};

/// A port nothing listens on right now (the kernel's pick, released at once).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Where `cargo xtask test` put the binaries (VIGIL_BIN_DIR), else target/debug.
pub fn bin(name: &str) -> PathBuf {
    let dir = std::env::var_os("VIGIL_BIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
                || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"),
                PathBuf::from,
            );
            target.join("debug")
        });
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} missing: run `cargo xtask test`",
        path.display()
    );
    path
}

/// SIGTERM to a child we started: the graceful stop every binary here handles.
pub fn terminate(child: &std::process::Child) {
    // SAFETY: a signal to our own child's pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
}

/// A fresh scratch directory under the system temp dir.
pub fn scratch_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("vigil-test-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A GET through nginx; its status code (panics when nothing answers).
pub fn http_get(port: u16, path: &str) -> u16 {
    match http::get(port, path) {
        Ok(response) if response.status != 0 => response.status,
        Ok(_) => panic!("no HTTP status from port {port}"),
        Err(e) => panic!("GET {path} on port {port}: {e}"),
    }
}

/// Now as Unix nanoseconds, the unit Loki timestamps use.
pub fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64
}

/// Parent pid from /proc/PID/status.
pub fn ppid(pid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("PPid:"))
        .and_then(|v| v.trim().parse().ok())
}

/// Polls `done` every 100 ms for up to `limit`; whether it became true. Tests assert the
/// values afterwards, so a timeout reports what was actually seen.
pub fn wait_for(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + limit;
    while !done() {
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    true
}
