//! Upstreams that crash the way the seed's did (a python import error after startup), placed
//! where real ones run: stderr in a file, a systemd-like unit cgroup whose journal is written
//! by systemd's own journal writer, or a pod's container cgroup with a containerd-like shim
//! copying stderr into a CRI log under a kubelet-like /var/log/pods tree.
use std::{
    fs::{self, File},
    io::{BufRead, BufReader, Read, Write},
    path::{Path, PathBuf},
    process::{Child, ChildStdin, Command, Stdio},
    thread::JoinHandle,
};

/// Listens, says its port on stdout, logs to stderr, then on a line from stdin imports a
/// module that does not exist: a real traceback and exit status 1.
const CRASHING: &str = r#"
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 0)); s.listen(64)
print(s.getsockname()[1], flush=True)
print("worker booting, settings from /srv/app/settings.py", file=sys.stderr, flush=True)
sys.stdin.readline()
import vigil_missing_dependency
"#;

/// The traceback's last line, what the SRE went looking for.
pub const CRASH_LINE: &str = "ModuleNotFoundError: No module named 'vigil_missing_dependency'";

pub struct CrashingUpstream {
    pub child: Child,
    pub port: u16,
    stdin: Option<ChildStdin>,
}

impl CrashingUpstream {
    pub fn start(stderr: Stdio) -> CrashingUpstream {
        let mut child = Command::new("/usr/bin/python3")
            .args(["-c", CRASHING])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr)
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
        let stdin = child.stdin.take();
        CrashingUpstream { child, port, stdin }
    }

    /// Makes it crash; its exit status.
    pub fn crash(&mut self) -> i32 {
        let _ = self.stdin.take().unwrap().write_all(b"go\n");
        self.child
            .wait()
            .unwrap()
            .code()
            .expect("exited, not killed")
    }
}

impl Drop for CrashingUpstream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A cgroup v2 directory of our own (the unified hierarchy, wherever it is mounted); removed,
/// innermost first, on drop.
pub struct Cgroup {
    created: Vec<PathBuf>,
}

fn unified_mount() -> PathBuf {
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap();
    info.lines()
        .find(|l| l.contains(" - cgroup2 "))
        .and_then(|l| l.split(' ').nth(4))
        .map(PathBuf::from)
        .expect("no cgroup2 (unified) hierarchy mounted")
}

impl Cgroup {
    /// `relative` like `a.slice/b.service`, created under the unified root.
    pub fn create(relative: &str) -> Cgroup {
        let mut dir = unified_mount();
        let mut created = Vec::new();
        for part in relative.split('/') {
            dir.push(part);
            if !dir.exists() {
                fs::create_dir(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
                created.push(dir.clone());
            }
        }
        Cgroup { created }
    }

    pub fn add(&self, pid: u32) {
        let procs = self.created.last().unwrap().join("cgroup.procs");
        fs::write(&procs, pid.to_string()).unwrap();
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        for dir in self.created.iter().rev() {
            let _ = fs::remove_dir(dir);
        }
    }
}

/// What containerd's shim does with a container's stderr: every line becomes a CRI record
/// `<time> stderr <P|F> <text>`, lines longer than `chunk` bytes split into `P` partials.
pub fn cri_shim(
    mut stderr: impl Read + Send + 'static,
    log: &Path,
    chunk: usize,
) -> JoinHandle<()> {
    let mut out = File::create(log).unwrap();
    writeln!(out, "2026-11-25T10:13:57.000000001Z stdout F serving").unwrap();
    std::thread::spawn(move || {
        let mut all = String::new();
        let _ = stderr.read_to_string(&mut all);
        for line in all.lines() {
            let bytes = line.as_bytes();
            let parts: Vec<&[u8]> = bytes.chunks(chunk).collect();
            for (i, part) in parts.iter().enumerate() {
                let tag = if i + 1 == parts.len() { "F" } else { "P" };
                let mut record = format!("2026-11-25T10:13:58.{i:09}Z stderr {tag} ").into_bytes();
                record.extend_from_slice(part);
                record.push(b'\n');
                out.write_all(&record).unwrap();
            }
        }
        out.sync_all().unwrap();
    })
}

/// Journal entries `(unit, realtime µs, message)` written to `path` by systemd's own journal
/// writer (`systemd-journal-remote`, from the export format on stdin).
pub fn write_journal(path: &Path, entries: &[(&str, u64, &str)]) {
    let binary = [
        "/lib/systemd/systemd-journal-remote",
        "/usr/lib/systemd/systemd-journal-remote",
    ]
    .into_iter()
    .find(|p| Path::new(p).exists())
    .expect("systemd-journal-remote missing: `cargo xtask setup` installs it");
    let mut export = String::new();
    for (i, (unit, realtime, message)) in entries.iter().enumerate() {
        export.push_str(&format!(
            "__REALTIME_TIMESTAMP={realtime}\n__MONOTONIC_TIMESTAMP={}\n\
             _BOOT_ID=0123456789abcdef0123456789abcdef\n_TRANSPORT=stdout\n\
             _SYSTEMD_UNIT={unit}\nMESSAGE={message}\n\n",
            i + 1
        ));
    }
    let mut child = Command::new(binary)
        .arg(format!("--output={}", path.display()))
        .arg("-")
        .stdin(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(export.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success(), "journal-remote failed");
}
