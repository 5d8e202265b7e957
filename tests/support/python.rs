//! Upstreams that need real processes of their own: a pre-fork server whose workers spin on
//! the CPU, and a listener that exits with a chosen status when told to.
use std::{
    io::{BufRead, BufReader, Write},
    os::unix::process::CommandExt,
    process::{Child, ChildStdin, Command, Stdio},
};

pub struct PythonUpstream {
    pub child: Child,
    pub port: u16,
    stdin: Option<ChildStdin>,
}

const SPINNING: &str = r#"
import os, socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 0)); s.listen(64)
workers = int(sys.argv[1])
for _ in range(workers):
    if os.fork() == 0:
        while True:
            pass
print(s.getsockname()[1], flush=True)
sys.stdin.readline()
"#;

const EXIT_ON_LINE: &str = r#"
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 0)); s.listen(64)
print(s.getsockname()[1], flush=True)
sys.stdin.readline()
sys.exit(int(sys.argv[1]))
"#;

fn start(script: &str, arg: &str) -> PythonUpstream {
    // Debian's python3 is on every machine the tests run on; pyenv's may shadow it.
    let python = if std::path::Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    };
    let mut child = Command::new(python)
        // Its own process group, so the forked workers die with it.
        .process_group(0)
        .args(["-c", script, arg])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port = line
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("python said {line:?}"));
    let stdin = child.stdin.take();
    PythonUpstream { child, port, stdin }
}

/// A listener whose `workers` forked children spin at 100% CPU (and never accept).
pub fn spinning(workers: u32) -> PythonUpstream {
    start(SPINNING, &workers.to_string())
}

/// A listener that exits with `status` once `finish` is called.
pub fn exits_with(status: i32) -> PythonUpstream {
    start(EXIT_ON_LINE, &status.to_string())
}

impl PythonUpstream {
    pub fn finish(&mut self) {
        if let Some(mut stdin) = self.stdin.take() {
            let _ = stdin.write_all(b"\n");
        }
        let _ = self.child.wait();
    }
}

impl Drop for PythonUpstream {
    fn drop(&mut self) {
        // The spinning workers are our grandchildren: end the whole process group.
        unsafe { libc::kill(-(self.child.id() as i32), libc::SIGKILL) };
        let _ = self.child.wait();
    }
}
