//! Processes titled as nginx masters somewhere unusual, for the trust tests: a real nginx in a
//! chroot built from the installed binary, and programs that only pretend to be nginx.
use std::{
    fs,
    io::{BufRead, BufReader, Write},
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use serde_json::Value;

use crate::{bin, wait_for};

/// A child stopped and reaped when dropped: SIGTERM first, so that an nginx master takes its
/// workers with it (killed outright, it would leave them running and holding our pipes).
pub struct Running(pub Child);

impl Running {
    pub fn pid(&self) -> u32 {
        self.0.id()
    }

    /// Waits until the process's title starts with `title` (after its execs).
    pub fn wait_titled(self, title: &str) -> Running {
        let cmdline = format!("/proc/{}/cmdline", self.pid());
        let titled = || {
            fs::read(&cmdline)
                .map(|raw| String::from_utf8_lossy(&raw).starts_with(title))
                .unwrap_or(false)
        };
        assert!(
            wait_for(Duration::from_secs(10), titled),
            "pid {} never got the title {title:?}",
            self.pid()
        );
        self
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        crate::terminate(&self.0);
        let exited = || matches!(self.0.try_wait(), Ok(Some(_)) | Err(_));
        if !wait_for(Duration::from_secs(10), exited) {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

/// Becomes uid 0 of a new user namespace once the parent has written its maps, then execs.
const USERNS_ROOT: &str = r#"
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
if libc.unshare(0x10000000) != 0:  # CLONE_NEWUSER
    err = ctypes.get_errno()
    raise OSError(err, os.strerror(err))
print("unshared", flush=True)
sys.stdin.readline()
os.setresgid(0, 0, 0)
os.setresuid(0, 0, 0)
os.execvp(sys.argv[1], sys.argv[1:])
"#;

/// First uid and gid outside that uid 0 inside maps to, as container runtimes pick them.
pub const USERNS_BASE: u32 = 100_000;

/// `argv` as uid 0 of a user namespace that root creates, mapping 0..65536 inside to
/// [`USERNS_BASE`].. outside: how a container runtime starts a pod with user namespaces.
pub fn as_root_of_a_user_namespace(argv: &[&str]) -> Running {
    let mut child = Command::new("/usr/bin/python3")
        .args(["-c", USERNS_ROOT])
        .args(argv)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "unshared", "python could not unshare");
    let map = format!("0 {USERNS_BASE} 65536\n");
    for file in ["uid_map", "gid_map"] {
        fs::write(format!("/proc/{}/{file}", child.id()), &map).unwrap();
    }
    child.stdin.as_mut().unwrap().write_all(b"go\n").unwrap();
    Running(child)
}

/// Gives a tree to the namespace's root (uid and gid [`USERNS_BASE`] outside).
pub fn chown_to_userns_root(path: &Path) {
    let status = Command::new("chown")
        .args(["-R", &format!("{USERNS_BASE}:{USERNS_BASE}")])
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success(), "chown {}", path.display());
}

/// Writes each `(path, text)` under `base` (paths may be absolute: taken relative to base).
pub fn write_files(base: &Path, files: &[(&str, &str)]) {
    for (path, text) in files {
        let path = base.join(path.trim_start_matches('/'));
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, text).unwrap();
    }
}

pub fn make_executable(path: &Path) {
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
}

/// A root directory holding the installed nginx and the libraries `ldd` lists for it, the
/// accounts nginx looks up, and the directories its configuration below will use.
pub fn nginx_chroot(root: &Path) {
    copy_into(root, Path::new("/usr/sbin/nginx"));
    let ldd = Command::new("ldd").arg("/usr/sbin/nginx").output().unwrap();
    assert!(ldd.status.success(), "ldd /usr/sbin/nginx failed");
    for line in String::from_utf8_lossy(&ldd.stdout).lines() {
        // `libz.so.1 => /lib/x86_64-linux-gnu/libz.so.1 (0x...)` or `/lib64/ld-linux... (0x...)`
        let path = line.split("=>").last().unwrap().trim();
        let path = path.split(" (").next().unwrap();
        if path.starts_with('/') {
            copy_into(root, Path::new(path));
        }
    }
    write_files(
        root,
        &[
            (
                "/etc/passwd",
                "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
            ),
            ("/etc/group", "root:x:0:\nnogroup:x:65534:\n"),
        ],
    );
    for dir in ["var/log/nginx", "run", "tmp"] {
        fs::create_dir_all(root.join(dir)).unwrap();
    }
    fs::set_permissions(root.join("tmp"), fs::Permissions::from_mode(0o1777)).unwrap();
}

/// Copies a host file to the same path under `root` (symlinks followed).
fn copy_into(root: &Path, file: &Path) {
    let to = root.join(file.strip_prefix("/").unwrap());
    fs::create_dir_all(to.parent().unwrap()).unwrap();
    fs::copy(file, &to).unwrap_or_else(|e| panic!("copy {}: {e}", file.display()));
}

/// `chroot ROOT /usr/sbin/nginx -c CONF -g 'daemon off;'`; returns once it listens on `port`.
pub fn start_chrooted_nginx(root: &Path, conf: &str, port: u16) -> Running {
    let child = Command::new("chroot")
        .arg(root)
        .args(["/usr/sbin/nginx", "-c", conf, "-g", "daemon off;"])
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let nginx = Running(child);
    let listening = || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok();
    assert!(
        wait_for(Duration::from_secs(10), listening),
        "chrooted nginx did not listen on {port}"
    );
    nginx
}

/// `vigil-agent inspect ARGS` run to completion: its JSON lines and its stderr.
pub fn inspect_with_log(args: &[&str]) -> (Vec<Value>, String) {
    let out = Command::new(bin("vigil-agent"))
        .arg("inspect")
        .args(args)
        .output()
        .unwrap();
    let stderr = without_ansi(&String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "inspect failed: {stderr}");
    let lines = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON {l:?}: {e}")))
        .collect();
    (lines, stderr)
}

/// The log with its colours (`ESC [ ... m`) taken out.
fn without_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            chars.by_ref().find(|&c| c == 'm');
        } else {
            out.push(c);
        }
    }
    out
}

/// The `nginx` part of the last snapshot.
pub fn nginx_snapshot(lines: &[Value]) -> &Value {
    let snap = lines
        .iter()
        .rev()
        .find(|l| l["kind"] == "snapshot")
        .expect("a snapshot");
    &snap["nginx"]
}

/// Whether any snapshot's recent upstream errors name `upstream`. The list keeps the last
/// few errors of every nginx on the machine, so other tests' errors may push ours out of a
/// later snapshot: look at all of them.
pub fn seen_upstream_error(lines: &[Value], upstream: &str) -> bool {
    lines
        .iter()
        .filter(|l| l["kind"] == "snapshot")
        .filter_map(|l| l["nginx"]["recent_upstream_errors"].as_array())
        .flatten()
        .any(|e| e["upstream"].as_str().is_some_and(|u| u.contains(upstream)))
}

/// GETs `path` a few times, spaced out, while an agent watches: 502 each time.
pub fn bad_gateway_a_few_times(port: u16, path: &str) {
    for _ in 0..3 {
        assert_eq!(crate::http_get(port, path), 502);
        std::thread::sleep(Duration::from_millis(400));
    }
}

/// The strings of a JSON array field (paths, targets).
pub fn strings(value: &Value, field: &str) -> Vec<String> {
    value[field]
        .as_array()
        .unwrap_or_else(|| panic!("no {field} in {value}"))
        .iter()
        .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
        .collect()
}

/// Where a test keeps files a process run as nobody must reach (0755 all the way).
pub fn shared_dir(tag: &str) -> PathBuf {
    let dir = crate::scratch_dir(tag);
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
    dir
}
