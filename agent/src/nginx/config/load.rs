//! Reads a master's configuration as files, inside its root: the main file, then every
//! `include` replaced in place by the directives of the files it names, as nginx does
//! (ngx_conf_include): relative patterns start at the main file's directory, globs match
//! like glob(3) without flags (sorted by bytes, `*` does not match a leading `.`).
//!
//! Bounded: each file at most [`MAX_FILE_BYTES`], [`MAX_FILES`] files and [`MAX_TOTAL_BYTES`]
//! in all, includes nested [`MAX_INCLUDE_DEPTH`] deep; a file beyond a bound, unreadable or
//! unparsable is refused (logged, counted in [`LoadReport`]) and the rest still read.
//! Include cycles (nginx rejects them) are cut by file identity.

use std::{
    ffi::OsStr,
    os::unix::ffi::OsStrExt,
    path::{Component, Path, PathBuf},
};

use serde::Serialize;
use tracing::{debug, warn};

use super::{
    syntax::{glob_match, parse_file},
    ConfigError, Directive,
};
use crate::nginx::{
    error_chain,
    in_root::{FileId, RootDir, RootError},
};

pub const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;
pub const MAX_TOTAL_BYTES: u64 = 64 * 1024 * 1024;
pub const MAX_FILES: usize = 1000;
pub const MAX_INCLUDE_DEPTH: usize = 32;
/// Entries read from one directory while expanding a glob, and paths one glob may yield.
pub const MAX_DIR_ENTRIES: usize = 10_000;
/// Refusals kept with their reason (all are counted).
const MAX_REFUSALS_KEPT: usize = 100;

/// What loading read and what it refused.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct LoadReport {
    pub files_read: usize,
    pub files_refused: usize,
    /// The first refusals with their reasons.
    pub refused: Vec<Refused>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Refused {
    pub path: PathBuf,
    pub reason: String,
}

/// The main file's tree with every include expanded.
pub fn load(root: &RootDir, conf_file: &Path) -> Result<(Vec<Directive>, LoadReport), ConfigError> {
    let (text, id) = root
        .read_text(conf_file, MAX_FILE_BYTES)
        .map_err(ConfigError::Read)?;
    let tree = parse_file(&text, &conf_file.to_string_lossy())?;
    let mut loader = Loader {
        root,
        conf_dir: conf_file.parent().unwrap_or(Path::new("/")).to_path_buf(),
        stack: vec![id],
        total_bytes: text.len() as u64,
        report: LoadReport {
            files_read: 1,
            ..LoadReport::default()
        },
    };
    let tree = loader.expand(tree, 0);
    Ok((tree, loader.report))
}

struct Loader<'a> {
    root: &'a RootDir,
    conf_dir: PathBuf,
    /// Files being expanded, outermost first.
    stack: Vec<FileId>,
    total_bytes: u64,
    report: LoadReport,
}

impl Loader<'_> {
    fn expand(&mut self, dirs: Vec<Directive>, depth: usize) -> Vec<Directive> {
        let mut out = Vec::with_capacity(dirs.len());
        for mut d in dirs {
            if d.name == "include" && d.block.is_none() {
                self.include(&d, depth, &mut out);
                continue;
            }
            d.block = d.block.map(|children| self.expand(children, depth));
            out.push(d);
        }
        out
    }

    fn include(&mut self, include: &Directive, depth: usize, out: &mut Vec<Directive>) {
        let Some(arg) = include.args.first() else {
            return;
        };
        let pattern = self.conf_dir.join(arg);
        if depth >= MAX_INCLUDE_DEPTH {
            self.refuse(
                &pattern,
                format!("includes nested deeper than {MAX_INCLUDE_DEPTH}"),
            );
            return;
        }
        // nginx treats the name as a pattern when it has any of these (strpbrk "*?[").
        let is_glob = pattern
            .as_os_str()
            .as_bytes()
            .iter()
            .any(|b| b"*?[".contains(b));
        let files = if is_glob {
            self.glob(&pattern)
        } else {
            vec![pattern]
        };
        for file in files {
            self.include_file(&file, depth, out);
        }
    }

    fn include_file(&mut self, path: &Path, depth: usize, out: &mut Vec<Directive>) {
        if self.report.files_read >= MAX_FILES {
            self.refuse(path, format!("more than {MAX_FILES} configuration files"));
            return;
        }
        let (text, id) = match self.root.read_text(path, MAX_FILE_BYTES) {
            Ok(read) => read,
            Err(e) => return self.refuse(path, error_chain(&e)),
        };
        if self.stack.contains(&id) {
            warn!(file = %path.display(), "ignoring recursive nginx include");
            return;
        }
        if self.total_bytes + text.len() as u64 > MAX_TOTAL_BYTES {
            self.refuse(
                path,
                format!("configuration larger than {MAX_TOTAL_BYTES} bytes in all"),
            );
            return;
        }
        self.total_bytes += text.len() as u64;
        self.report.files_read += 1;
        let tree = match parse_file(&text, &path.to_string_lossy()) {
            Ok(tree) => tree,
            Err(e) => return self.refuse(path, e.to_string()),
        };
        self.stack.push(id);
        out.extend(self.expand(tree, depth + 1));
        self.stack.pop();
    }

    /// Expands `pattern` component by component, listing directories inside the root.
    fn glob(&mut self, pattern: &Path) -> Vec<PathBuf> {
        let mut candidates = vec![PathBuf::from("/")];
        for component in pattern.components() {
            let name = match component {
                Component::Normal(name) => name,
                // `..` and `.` are left to the kernel, which keeps `..` inside the root.
                other => {
                    candidates.iter_mut().for_each(|c| c.push(other));
                    continue;
                }
            };
            if !name.as_bytes().iter().any(|b| b"*?[".contains(b)) {
                candidates.iter_mut().for_each(|c| c.push(name));
                continue;
            }
            let mut matches = Vec::new();
            for dir in &candidates {
                matches.extend(self.matching_entries(dir, name));
                if matches.len() > MAX_DIR_ENTRIES {
                    self.refuse(
                        pattern,
                        format!("matches more than {MAX_DIR_ENTRIES} paths"),
                    );
                    return Vec::new();
                }
            }
            candidates = matches;
        }
        // glob(3) sorts the whole result by bytes (nginx runs in the C locale).
        candidates.sort_by(|a, b| a.as_os_str().as_bytes().cmp(b.as_os_str().as_bytes()));
        candidates.dedup();
        if candidates.is_empty() {
            debug!(pattern = %pattern.display(), "nginx include matched no file");
        }
        candidates
    }

    fn matching_entries(&mut self, dir: &Path, pattern: &OsStr) -> Vec<PathBuf> {
        let names = match self.root.list_dir(dir, MAX_DIR_ENTRIES) {
            Ok(names) => names,
            // A missing or non-directory path simply matches nothing, as with glob(3).
            Err(RootError::List { source, .. })
                if matches!(source.raw_os_error(), Some(libc::ENOENT | libc::ENOTDIR)) =>
            {
                return Vec::new()
            }
            Err(e) => {
                self.refuse(dir, error_chain(&e));
                return Vec::new();
            }
        };
        let pattern_text = pattern.to_string_lossy();
        names
            .into_iter()
            .filter(|name| {
                let hidden = name.as_bytes().first() == Some(&b'.');
                (!hidden || pattern_text.starts_with('.'))
                    && glob_match(&pattern_text, &name.to_string_lossy())
            })
            .map(|name| dir.join(name))
            .collect()
    }

    fn refuse(&mut self, path: &Path, reason: String) {
        warn!(file = %path.display(), %reason, "nginx configuration file refused");
        self.report.files_refused += 1;
        if self.report.refused.len() < MAX_REFUSALS_KEPT {
            self.report.refused.push(Refused {
                path: path.to_path_buf(),
                reason,
            });
        }
    }
}

#[cfg(test)]
mod tests;
