//! Where a master's configuration lives and what its relative paths are relative to, worked
//! out as nginx does (src/core/nginx.c, ngx_process_options) without running anything:
//! - prefix: `-p`, else the compiled-in `--prefix` (`/usr/local/nginx` by default); a relative
//!   one is relative to the master's working directory;
//! - main file: `-c`, else the compiled-in `--conf-path` (`conf/nginx.conf`), relative to the
//!   prefix when relative (`nginx -c rel.conf` reads `/usr/share/nginx/rel.conf` on Debian);
//! - includes are relative to the main file's directory, log files to the prefix.
//!
//! The compiled-in values come from the binary's configure arguments: `nginx -V` prints them
//! from one string literal, `"configure arguments:" NGX_CONFIGURE`, which is read from
//! `/proc/PID/exe` as bytes.

use std::{
    io::{self, Read},
    path::{Path, PathBuf},
};

const CONFIGURE_MARKER: &[u8] = b"configure arguments:";
/// Bytes of the executable scanned at most (nginx with every module is a few MiB).
pub const MAX_EXE_SCAN: u64 = 256 * 1024 * 1024;
/// Length of the configure arguments at most (Debian's are under 2 KiB).
pub const MAX_CONFIGURE_ARGS: usize = 64 * 1024;
const CHUNK: usize = 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum PathsError {
    #[error("cannot read the nginx binary")]
    Read(#[source] io::Error),
    #[error("configure arguments longer than {MAX_CONFIGURE_ARGS} bytes")]
    ArgsTooLong,
    #[error("relative path {path} needs nginx's working directory, which is unknown")]
    NoWorkingDir { path: PathBuf },
}

/// The paths an nginx binary was built with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompiledPaths {
    /// None for `--prefix=!`: the prefix is then the working directory.
    pub prefix: Option<PathBuf>,
    /// Absolute, or relative to the prefix.
    pub conf_path: PathBuf,
}

impl Default for CompiledPaths {
    /// `./configure` without path options.
    fn default() -> Self {
        CompiledPaths {
            prefix: Some(PathBuf::from("/usr/local/nginx")),
            conf_path: PathBuf::from("conf/nginx.conf"),
        }
    }
}

impl CompiledPaths {
    pub fn from_configure_args(args: &str) -> CompiledPaths {
        let mut paths = CompiledPaths::default();
        for word in shell_words(args) {
            if let Some(prefix) = word.strip_prefix("--prefix=") {
                paths.prefix = (prefix != "!").then(|| PathBuf::from(prefix));
            } else if let Some(conf) = word.strip_prefix("--conf-path=") {
                paths.conf_path = PathBuf::from(conf);
            }
        }
        paths
    }
}

/// Finds `configure arguments:...` in an executable's bytes and returns what follows, up to
/// the newline that ends the literal. None when the binary has no such string.
pub fn scan_configure_args(mut exe: impl Read) -> Result<Option<String>, PathsError> {
    let mut window: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; CHUNK];
    let mut scanned = 0u64;
    while scanned < MAX_EXE_SCAN {
        let n = match exe.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(PathsError::Read(e)),
        };
        scanned += n as u64;
        window.extend_from_slice(&chunk[..n]);
        let Some(at) = find(&window, CONFIGURE_MARKER) else {
            // Keep what could be the start of a marker cut by the chunk boundary.
            let keep = window.len().min(CONFIGURE_MARKER.len() - 1);
            window.drain(..window.len() - keep);
            continue;
        };
        window.drain(..at + CONFIGURE_MARKER.len());
        if let Some(end) = window.iter().position(|&b| b == b'\n' || b == 0) {
            return Ok(Some(String::from_utf8_lossy(&window[..end]).into_owned()));
        }
        if window.len() > MAX_CONFIGURE_ARGS {
            return Err(PathsError::ArgsTooLong);
        }
        // The literal continues in the next chunk: put the marker back and read on.
        window.splice(0..0, CONFIGURE_MARKER.iter().copied());
    }
    Ok(None)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Splits configure arguments as the shell that ran configure did: configure quotes values
/// with spaces (`--with-cc-opt='-g -O2'`).
fn shell_words(text: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut quote: Option<char> = None;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (None, '\'' | '"') => {
                quote = Some(c);
                word.get_or_insert_with(String::new);
            }
            (None, '\\') => word.get_or_insert_with(String::new).extend(chars.next()),
            (None, c) if c.is_whitespace() => words.extend(word.take()),
            (_, c) => word.get_or_insert_with(String::new).push(c),
        }
    }
    words.extend(word);
    words
}

/// A master's prefix and main configuration file, as absolute paths inside its root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MasterPaths {
    pub prefix: PathBuf,
    pub conf_file: PathBuf,
}

impl MasterPaths {
    /// Relative `-p`/`-c` arguments are resolved like nginx resolves them. `compiled` is
    /// asked only when `-p` or `-c` is missing, `cwd` (inside the root) only for a relative
    /// prefix.
    pub fn resolve(
        prefix_arg: Option<&Path>,
        conf_arg: Option<&Path>,
        compiled: impl FnOnce() -> CompiledPaths,
        cwd: impl FnOnce() -> Option<PathBuf>,
    ) -> Result<MasterPaths, PathsError> {
        // With both given, the binary's own paths do not matter and are not read.
        let compiled = if prefix_arg.is_none() || conf_arg.is_none() {
            compiled()
        } else {
            CompiledPaths::default()
        };
        let prefix = match prefix_arg {
            Some(p) => Some(p.to_path_buf()),
            None => compiled.prefix,
        };
        let prefix = match prefix {
            Some(p) if p.is_absolute() => p,
            relative => {
                let relative = relative.unwrap_or_default();
                let cwd = cwd().ok_or_else(|| PathsError::NoWorkingDir {
                    path: relative.clone(),
                })?;
                cwd.join(relative)
            }
        };
        let conf = conf_arg.map_or(compiled.conf_path, Path::to_path_buf);
        Ok(MasterPaths {
            conf_file: prefix.join(conf),
            prefix,
        })
    }

    /// Where relative `include`s start: the main file's directory.
    pub fn conf_dir(&self) -> &Path {
        self.conf_file.parent().unwrap_or(Path::new("/"))
    }
}

#[cfg(test)]
mod tests;
