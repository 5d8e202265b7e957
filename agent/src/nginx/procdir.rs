//! One process's `/proc/PID` directory, held open. Everything read through it is about that
//! very process: if it exits and its pid is reused, reads fail instead of describing the
//! newcomer (procfs ties the directory to the process, not to the number).

use std::{
    ffi::{CString, OsString},
    fs::{File, OpenOptions},
    io::{self, Read},
    os::{
        fd::{AsRawFd, FromRawFd},
        unix::{
            ffi::{OsStrExt, OsStringExt},
            fs::OpenOptionsExt,
        },
    },
    path::{Path, PathBuf},
};

use super::in_root::{RootDir, RootError};

/// `/proc/PID` files the agent reads (status, cmdline, uid_map) are far smaller.
pub const MAX_PROC_FILE: u64 = 64 * 1024;

#[derive(Debug)]
pub struct ProcDir {
    pid: u32,
    dir: File,
    /// `/proc/PID`, for messages.
    path: PathBuf,
}

impl ProcDir {
    pub fn open(proc_root: &Path, pid: u32) -> io::Result<ProcDir> {
        let path = proc_root.join(pid.to_string());
        let dir = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY)
            .open(&path)?;
        Ok(ProcDir { pid, dir, path })
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Opens `name` below this directory (links such as `exe` and `root` are followed).
    pub fn open_at(&self, name: &str, flags: libc::c_int) -> io::Result<File> {
        let c_name = c_string(name)?;
        // SAFETY: a live directory fd and a NUL-terminated relative name.
        let fd = unsafe {
            libc::openat(
                self.dir.as_raw_fd(),
                c_name.as_ptr(),
                flags | libc::O_CLOEXEC | libc::O_NOCTTY,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the kernel just returned this fd to us.
        Ok(unsafe { File::from_raw_fd(fd) })
    }

    /// A whole small file (`status`, `cmdline`, ...), at most [`MAX_PROC_FILE`] bytes.
    pub fn read(&self, name: &str) -> io::Result<Vec<u8>> {
        let mut bytes = Vec::new();
        self.open_at(name, libc::O_RDONLY)?
            .take(MAX_PROC_FILE)
            .read_to_end(&mut bytes)?;
        Ok(bytes)
    }

    pub fn read_text(&self, name: &str) -> io::Result<String> {
        let bytes = self.read(name)?;
        Ok(String::from_utf8(bytes)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()))
    }

    /// The target of a link such as `cwd` or `root`, as the kernel prints it.
    pub fn read_link(&self, name: &str) -> io::Result<PathBuf> {
        let c_name = c_string(name)?;
        let mut buf = vec![0u8; libc::PATH_MAX as usize];
        // SAFETY: a live directory fd, a NUL-terminated name, and a buffer of buf.len() bytes.
        let n = unsafe {
            libc::readlinkat(
                self.dir.as_raw_fd(),
                c_name.as_ptr(),
                buf.as_mut_ptr().cast(),
                buf.len(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        // A target filling the buffer may have been cut: not a path to trust.
        if n as usize == buf.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "link target too long",
            ));
        }
        buf.truncate(n as usize);
        Ok(PathBuf::from(OsString::from_vec(buf)))
    }

    /// The process's root directory (`/proc/PID/root`) for lookups confined to it.
    pub fn root(&self) -> Result<RootDir, RootError> {
        let label = self.path.join("root");
        let file = self
            .open_at("root", libc::O_PATH | libc::O_DIRECTORY)
            .map_err(|source| RootError::OpenRoot {
                root: label.clone(),
                source,
            })?;
        RootDir::from_file(file, label)
    }

    /// The process's working directory as a path inside its own root; None when unknown
    /// (deleted, or outside the root after a chroot without chdir).
    pub fn cwd_in_root(&self) -> Option<PathBuf> {
        let cwd = self.read_link("cwd").ok()?;
        let root = self.read_link("root").ok()?;
        in_root_path(&cwd, &root)
    }
}

/// `cwd` and `root` are both printed from the agent's view of the filesystem: a chroot at
/// `/srv/jail` shows its cwd as `/srv/jail/www`, which the process itself calls `/www`.
fn in_root_path(cwd: &Path, root: &Path) -> Option<PathBuf> {
    if cwd.as_os_str().as_bytes().ends_with(b" (deleted)") || !cwd.is_absolute() {
        return None;
    }
    let inside = cwd.strip_prefix(root).ok()?;
    Some(Path::new("/").join(inside))
}

fn c_string(name: &str) -> io::Result<CString> {
    CString::new(name).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in name"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cwd_is_translated_into_the_root() {
        let p = |s: &str| PathBuf::from(s);
        assert_eq!(in_root_path(&p("/srv/www"), &p("/")), Some(p("/srv/www")));
        assert_eq!(in_root_path(&p("/jail/www"), &p("/jail")), Some(p("/www")));
        assert_eq!(in_root_path(&p("/jail"), &p("/jail")), Some(p("/")));
        assert_eq!(in_root_path(&p("/jailbreak"), &p("/jail")), None);
        assert_eq!(in_root_path(&p("/elsewhere"), &p("/jail")), None);
        assert_eq!(in_root_path(&p("/gone (deleted)"), &p("/")), None);
    }

    #[test]
    fn reads_follow_the_process_not_its_number() {
        let me = ProcDir::open(Path::new("/proc"), std::process::id()).unwrap();
        assert!(me.read_text("status").unwrap().contains("Uid:"));
        assert_eq!(
            me.read_link("cwd").unwrap(),
            std::env::current_dir().unwrap()
        );
        assert_eq!(me.cwd_in_root(), Some(std::env::current_dir().unwrap()));
        assert!(me.root().is_ok());

        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let dir = ProcDir::open(Path::new("/proc"), child.id()).unwrap();
        // The child may not have exec'd yet.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while dir.read_text("comm").unwrap() != "sleep\n" {
            assert!(std::time::Instant::now() < deadline, "sleep never started");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(dir.read_text("cmdline").unwrap(), "sleep\x0030\0");
        child.kill().unwrap();
        child.wait().unwrap();
        let err = dir.read("cmdline").unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ESRCH), "{err}");
    }
}
