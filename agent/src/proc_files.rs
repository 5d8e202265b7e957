//! Small reads of `/proc/PID` files, shared by the owner lookup, nginx discovery and the
//! privilege check. Each takes the process directory, so tests can point at a fake /proc.
use std::{fs, path::Path};

pub fn comm(dir: &Path) -> Option<String> {
    Some(
        fs::read_to_string(dir.join("comm"))
            .ok()?
            .trim_end()
            .to_owned(),
    )
}

/// The command line, arguments joined by spaces. A title a process rewrote (nginx's
/// `nginx: master process ...`) is NUL-padded; real arguments are NUL-separated.
pub fn cmdline(dir: &Path) -> Option<String> {
    let raw = fs::read(dir.join("cmdline")).ok()?;
    let args: Vec<_> = raw
        .split(|&b| b == 0)
        .filter(|arg| !arg.is_empty())
        .map(String::from_utf8_lossy)
        .collect();
    Some(args.join(" "))
}

/// PPid from `stat`: the field after the state, past the `(comm)` that may hold spaces and
/// parentheses.
pub fn parent_pid(dir: &Path) -> Option<u32> {
    let stat = fs::read_to_string(dir.join("stat")).ok()?;
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// A `Key:\tvalue` line of `status`, value trimmed.
pub fn status_field(dir: &Path, key: &str) -> Option<String> {
    let status = fs::read_to_string(dir.join("status")).ok()?;
    status.lines().find_map(|line| {
        let value = line.strip_prefix(key)?.strip_prefix(':')?;
        Some(value.trim().to_owned())
    })
}
