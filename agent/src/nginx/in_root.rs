//! A process's root filesystem, read the way that process sees it and never beyond it.
//!
//! Every path is resolved by openat2(2) against a directory fd of `/proc/PID/root` with
//! `RESOLVE_IN_ROOT`: `..` and absolute symlinks stop at that root, exactly as they do for the
//! process itself (chroot, container), so nothing its configuration names can lead the agent
//! to a file outside it. Magic links (`/proc/self/fd/N`, `/dev/stdout` in many images) are
//! refused: they jump out of any root, and `/proc/self` would be the agent itself.
//! Files are opened non-blocking and must be regular files, so a FIFO cannot stall the agent.

use std::{
    ffi::{CStr, CString, OsString},
    fs::{File, Metadata, OpenOptions},
    io::{self, Read},
    os::{
        fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd},
        unix::{
            ffi::{OsStrExt, OsStringExt},
            fs::{MetadataExt, OpenOptionsExt},
        },
    },
    path::{Path, PathBuf},
};

/// openat2 returns EAGAIN when a rename raced with a `..` lookup; a few retries suffice.
const EAGAIN_RETRIES: usize = 8;

/// What identifies a file whatever path reached it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FileId {
    pub dev: u64,
    pub ino: u64,
}

impl FileId {
    pub fn of(meta: &Metadata) -> FileId {
        FileId {
            dev: meta.dev(),
            ino: meta.ino(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RootError {
    #[error("cannot open {root} as a root directory")]
    OpenRoot {
        root: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot open {path} inside {root}")]
    Open {
        root: PathBuf,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} inside {root} is larger than {limit} bytes; refused")]
    TooLarge {
        root: PathBuf,
        path: PathBuf,
        limit: u64,
    },
    #[error("cannot read {path} inside {root}")]
    Read {
        root: PathBuf,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot list {path} inside {root}")]
    List {
        root: PathBuf,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} inside {root} has more than {limit} entries; refused")]
    TooManyEntries {
        root: PathBuf,
        path: PathBuf,
        limit: usize,
    },
}

/// A directory fd that every lookup is confined to.
#[derive(Debug)]
pub struct RootDir {
    fd: OwnedFd,
    /// What the root was opened as (`/proc/PID/root`), for messages.
    label: PathBuf,
    id: FileId,
}

impl RootDir {
    /// Opens `path` (normally `/proc/PID/root`, a link the kernel follows to the process's
    /// root) as the root for later lookups.
    pub fn open(path: &Path) -> Result<RootDir, RootError> {
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_PATH | libc::O_DIRECTORY)
            .open(path)
            .map_err(|source| RootError::OpenRoot {
                root: path.to_path_buf(),
                source,
            })?;
        Self::from_file(file, path.to_path_buf())
    }

    /// Takes an already opened directory (`O_PATH` is enough) as the root.
    pub fn from_file(file: File, label: PathBuf) -> Result<RootDir, RootError> {
        let meta = file.metadata().map_err(|source| RootError::OpenRoot {
            root: label.clone(),
            source,
        })?;
        Ok(RootDir {
            fd: file.into(),
            id: FileId::of(&meta),
            label,
        })
    }

    pub fn label(&self) -> &Path {
        &self.label
    }

    /// The root directory's identity: two masters with the same root share their files.
    pub fn id(&self) -> FileId {
        self.id
    }

    /// Opens a regular file for reading. Errors keep their kind (NotFound means "not there").
    pub fn open_file(&self, path: &Path) -> io::Result<File> {
        let flags = libc::O_RDONLY | libc::O_NOCTTY | libc::O_NONBLOCK;
        let file = File::from(self.openat2(path, flags)?);
        if !file.metadata()?.is_file() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a regular file",
            ));
        }
        Ok(file)
    }

    /// Metadata of what `path` names (symlinks followed inside the root), without opening it
    /// for reading.
    pub fn metadata(&self, path: &Path) -> io::Result<Metadata> {
        File::from(self.openat2(path, libc::O_PATH)?).metadata()
    }

    /// Reads a whole regular file of at most `limit` bytes (lossy UTF-8) and its identity.
    pub fn read_text(&self, path: &Path, limit: u64) -> Result<(String, FileId), RootError> {
        let file = self.open_file(path).map_err(|source| RootError::Open {
            root: self.label.clone(),
            path: path.to_path_buf(),
            source,
        })?;
        let read_error = |source| RootError::Read {
            root: self.label.clone(),
            path: path.to_path_buf(),
            source,
        };
        let meta = file.metadata().map_err(read_error)?;
        let too_large = || RootError::TooLarge {
            root: self.label.clone(),
            path: path.to_path_buf(),
            limit,
        };
        if meta.len() > limit {
            return Err(too_large());
        }
        let mut bytes = Vec::with_capacity(meta.len() as usize);
        // The file may grow while read: take one byte more than allowed to notice.
        file.take(limit + 1)
            .read_to_end(&mut bytes)
            .map_err(read_error)?;
        if bytes.len() as u64 > limit {
            return Err(too_large());
        }
        let text = String::from_utf8(bytes)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
        Ok((text, FileId::of(&meta)))
    }

    /// Names in directory `path` (without `.` and `..`), unsorted; at most `limit` of them.
    pub fn list_dir(&self, path: &Path, limit: usize) -> Result<Vec<OsString>, RootError> {
        let list_error = |source| RootError::List {
            root: self.label.clone(),
            path: path.to_path_buf(),
            source,
        };
        let fd = self
            .openat2(path, libc::O_RDONLY | libc::O_DIRECTORY)
            .map_err(list_error)?;
        let dir = DirStream::new(fd).map_err(list_error)?;
        let mut names = Vec::new();
        while let Some(name) = dir.next_name().map_err(list_error)? {
            if name == b"." || name == b".." {
                continue;
            }
            if names.len() == limit {
                return Err(RootError::TooManyEntries {
                    root: self.label.clone(),
                    path: path.to_path_buf(),
                    limit,
                });
            }
            names.push(OsString::from_vec(name));
        }
        Ok(names)
    }

    fn openat2(&self, path: &Path, flags: libc::c_int) -> io::Result<OwnedFd> {
        let c_path = CString::new(path.as_os_str().as_bytes())
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL"))?;
        // SAFETY: open_how is plain integers; all-zero is its documented neutral value.
        let mut how: libc::open_how = unsafe { std::mem::zeroed() };
        how.flags = (flags | libc::O_CLOEXEC) as u64;
        how.resolve = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS;
        for _ in 0..EAGAIN_RETRIES {
            // SAFETY: a live directory fd, a NUL-terminated path, and `how` with its size.
            let fd = unsafe {
                libc::syscall(
                    libc::SYS_openat2,
                    self.fd.as_raw_fd(),
                    c_path.as_ptr(),
                    &how as *const libc::open_how,
                    std::mem::size_of::<libc::open_how>(),
                )
            };
            if fd >= 0 {
                // SAFETY: the kernel just returned this fd to us; nothing else owns it.
                return Ok(unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) });
            }
            let err = io::Error::last_os_error();
            if err.raw_os_error() != Some(libc::EAGAIN) {
                return Err(err);
            }
        }
        Err(io::Error::from_raw_os_error(libc::EAGAIN))
    }
}

/// A `DIR*` over an fd we opened; closed on drop.
struct DirStream(*mut libc::DIR);

impl DirStream {
    fn new(fd: OwnedFd) -> io::Result<DirStream> {
        let raw = fd.into_raw_fd();
        // SAFETY: `raw` is an open directory fd; on success the DIR owns it.
        let dir = unsafe { libc::fdopendir(raw) };
        if dir.is_null() {
            let err = io::Error::last_os_error();
            // SAFETY: fdopendir failed, so the fd is still ours to close.
            unsafe { libc::close(raw) };
            return Err(err);
        }
        Ok(DirStream(dir))
    }

    fn next_name(&self) -> io::Result<Option<Vec<u8>>> {
        // readdir reports errors only through errno, so clear it first.
        // SAFETY: errno is thread-local; `self.0` is a live DIR used by this thread only.
        let entry = unsafe {
            *libc::__errno_location() = 0;
            libc::readdir(self.0)
        };
        if entry.is_null() {
            let err = io::Error::last_os_error();
            return match err.raw_os_error() {
                Some(0) | None => Ok(None),
                Some(_) => Err(err),
            };
        }
        // SAFETY: readdir returned a valid entry whose d_name is NUL-terminated; it stays
        // valid until the next readdir, and we copy it out before that.
        let name = unsafe { CStr::from_ptr((*entry).d_name.as_ptr()) };
        Ok(Some(name.to_bytes().to_vec()))
    }
}

impl Drop for DirStream {
    fn drop(&mut self) {
        // SAFETY: the DIR was opened by fdopendir and is closed once, here.
        unsafe { libc::closedir(self.0) };
    }
}

#[cfg(test)]
mod tests;
