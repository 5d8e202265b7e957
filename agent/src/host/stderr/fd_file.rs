//! fd 2 pointing at a regular file (`python app.py 2>>/var/log/app.err`, a unit's
//! `StandardError=append:`): reopened through `/proc/PID/fd/2` while the process lives, which
//! yields exactly the file it writes (inside its own root, whatever its mount namespace, even
//! once renamed or deleted) and nothing a path could be redirected to. The fd is kept until the
//! exit, then its tail is read.
use std::{
    fs::{self, File, OpenOptions},
    os::unix::fs::OpenOptionsExt,
    path::Path,
};

use super::{file_tail, Limits, StderrError, TailLines};

#[derive(Debug)]
pub struct Fd2File {
    file: File,
    /// The path as the process sees it (inside its root).
    pub path: String,
}

impl Fd2File {
    /// None unless fd 2 is a regular file: sockets (journald's stream), pipes (containerd,
    /// a supervisor), terminals and /dev/null are not read here.
    pub fn capture(proc_root: &Path, pid: u32) -> Option<Fd2File> {
        let link = proc_root.join(pid.to_string()).join("fd/2");
        let target = fs::read_link(&link).ok()?;
        let target = target.to_str()?;
        // `socket:[…]`, `pipe:[…]`, `anon_inode:…` are not paths.
        if !target.starts_with('/') || target.starts_with("/dev/") {
            return None;
        }
        if !fs::metadata(&link).ok()?.file_type().is_file() {
            return None;
        }
        // O_NONBLOCK: should fd 2 turn into a FIFO between the check and the open, the open
        // returns at once instead of waiting for a writer; the fstat below then refuses it.
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
            .open(&link)
            .ok()?;
        if !file.metadata().ok()?.file_type().is_file() {
            return None;
        }
        let path = target
            .strip_suffix(" (deleted)")
            .unwrap_or(target)
            .to_owned();
        Some(Fd2File { file, path })
    }

    pub fn read_tail(&self, limits: &Limits, tail: &mut TailLines) -> Result<(), StderrError> {
        let bytes = file_tail(&self.file, Path::new(&self.path), limits.file_tail_bytes)?;
        tail.push_text(&bytes);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::{
        io::Write,
        process::{Command, Stdio},
    };

    use super::*;

    fn scratch(tag: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("vigil-fd2-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_file_on_fd2_is_read_after_the_process_is_gone_even_if_deleted() {
        let dir = scratch("file");
        let path = dir.join("app.err");
        let err = File::create(&path).unwrap();
        let mut child = Command::new("sh")
            .args([
                "-c",
                "read x; for i in $(seq 1 30); do echo \"line $i\" >&2; done",
            ])
            .stdin(Stdio::piped())
            .stderr(err)
            .spawn()
            .unwrap();
        let fd2 = Fd2File::capture(Path::new("/proc"), child.id()).expect("a regular file");
        assert_eq!(fd2.path, path.to_str().unwrap());
        child.stdin.take().unwrap().write_all(b"go\n").unwrap();
        child.wait().unwrap();
        fs::remove_file(&path).unwrap();
        let limits = Limits {
            max_lines: 3,
            ..Limits::default()
        };
        let mut tail = TailLines::new(&limits);
        fd2.read_tail(&limits, &mut tail).unwrap();
        assert_eq!(
            tail.finish(String::new()).lines,
            ["line 28", "line 29", "line 30"]
        );
    }

    #[test]
    fn pipes_and_dev_null_are_not_files() {
        let piped = Command::new("sleep")
            .arg("5")
            .stderr(Stdio::piped())
            .spawn();
        let nulled = Command::new("sleep").arg("5").stderr(Stdio::null()).spawn();
        for mut child in [piped.unwrap(), nulled.unwrap()] {
            assert!(Fd2File::capture(Path::new("/proc"), child.id()).is_none());
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    #[test]
    fn a_tail_window_starts_at_a_full_line() {
        let dir = scratch("window");
        let path = dir.join("big.err");
        let mut f = File::create(&path).unwrap();
        for i in 0..1000 {
            writeln!(f, "entry {i:04} {}", "x".repeat(50)).unwrap();
        }
        let bytes = file_tail(&File::open(&path).unwrap(), &path, 200).unwrap();
        let text = String::from_utf8(bytes).unwrap();
        assert!(text.starts_with("entry 09"), "{text}");
        assert!(text.ends_with(&format!("entry 0999 {}\n", "x".repeat(50))));
    }
}
