//! Whether a process that calls itself an nginx master may be believed. Its name and title
//! prove nothing: any user can `exec -a "nginx: master process ..."`. What an unprivileged
//! user cannot forge is root:
//! - its real and effective uids, as the agent sees them in `/proc/PID/status`, are 0; or
//! - it lives in another user namespace whose owner (`NS_GET_OWNER_UID`) is uid 0 as the agent
//!   sees it (a namespace a container runtime made), and inside it its real and effective uids
//!   map to 0. `unshare -r` gives anyone uid 0 in a namespace, but one owned by that user.
//!
//! Everything else is ignored.

use std::{fmt, fs, io, os::fd::AsRawFd, os::unix::fs::MetadataExt, path::Path};

use serde::Serialize;

use super::procdir::ProcDir;
use crate::host::proc_files::status_text_field;

/// Why a master is believed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Trusted {
    /// uid 0 in the agent's view.
    Root,
    /// uid 0 in a user namespace owned by root (a container runtime's).
    NamespaceRoot,
}

/// Why a master is ignored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Untrusted {
    Unreadable { what: &'static str, error: String },
    NotRoot(Uids),
    NamespaceOwner { owner: u32 },
    NotRootInNamespace { uids: Uids, inside: Option<u32> },
}

impl fmt::Display for Untrusted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Untrusted::Unreadable { what, error } => write!(f, "cannot read its {what}: {error}"),
            Untrusted::NotRoot(u) => write!(
                f,
                "runs as uid {} (effective {}), not root, in the agent's user namespace",
                u.real, u.effective
            ),
            Untrusted::NamespaceOwner { owner } => write!(
                f,
                "runs in a user namespace owned by uid {owner}, not by root"
            ),
            Untrusted::NotRootInNamespace { uids, inside } => write!(
                f,
                "uid {} (effective {}) is not root in its user namespace (it is {})",
                uids.real,
                uids.effective,
                inside.map_or("unmapped".to_string(), |u| format!("uid {u}"))
            ),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Uids {
    pub real: u32,
    pub effective: u32,
}

/// `Uid:\treal\teffective\tsaved\tfs` from a `status` file.
pub fn parse_uids(status: &str) -> Option<Uids> {
    let mut ids = status_text_field(status, "Uid")?.split_whitespace();
    let mut next = || ids.next()?.parse().ok();
    Some(Uids {
        real: next()?,
        effective: next()?,
    })
}

/// One `inside outside count` line of a `uid_map`; `outside` as the reader sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UidRange {
    pub inside: u32,
    pub outside: u32,
    pub count: u32,
}

pub fn parse_uid_map(text: &str) -> Option<Vec<UidRange>> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let mut n = line.split_whitespace().map(|w| w.parse::<u32>().ok());
            Some(UidRange {
                inside: n.next()??,
                outside: n.next()??,
                count: n.next()??,
            })
        })
        .collect()
}

/// What `uid` (as the agent sees it) is inside the namespace the map belongs to.
pub fn inside_uid(map: &[UidRange], uid: u32) -> Option<u32> {
    map.iter().find_map(|r| {
        let offset = uid.checked_sub(r.outside)?;
        (offset < r.count)
            .then(|| r.inside.checked_add(offset))
            .flatten()
    })
}

/// A process's user namespace as the agent sees it, when it is not the agent's own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForeignNamespace {
    pub owner: u32,
    pub uid_map: Vec<UidRange>,
}

/// The decision for a non-root process; `ns` is None when it shares the agent's namespace.
pub fn decide(uids: Uids, ns: Option<&ForeignNamespace>) -> Result<Trusted, Untrusted> {
    if uids.real == 0 && uids.effective == 0 {
        return Ok(Trusted::Root);
    }
    let Some(ns) = ns else {
        return Err(Untrusted::NotRoot(uids));
    };
    if ns.owner != 0 {
        return Err(Untrusted::NamespaceOwner { owner: ns.owner });
    }
    let real = inside_uid(&ns.uid_map, uids.real);
    let effective = inside_uid(&ns.uid_map, uids.effective);
    match (real, effective) {
        (Some(0), Some(0)) => Ok(Trusted::NamespaceRoot),
        (Some(0), other) | (other, _) => Err(Untrusted::NotRootInNamespace {
            uids,
            inside: other,
        }),
    }
}

/// Reads what the decision needs through the held `/proc/PID` directory.
pub fn check(proc: &ProcDir) -> Result<Trusted, Untrusted> {
    let unreadable = |what| {
        move |e: io::Error| Untrusted::Unreadable {
            what,
            error: e.to_string(),
        }
    };
    let status = proc.read_text("status").map_err(unreadable("status"))?;
    let uids = parse_uids(&status).ok_or(Untrusted::Unreadable {
        what: "uids",
        error: "no Uid line in status".into(),
    })?;
    if uids.real == 0 && uids.effective == 0 {
        return Ok(Trusted::Root);
    }
    let ns = foreign_namespace(proc).map_err(unreadable("user namespace"))?;
    decide(uids, ns.as_ref())
}

fn foreign_namespace(proc: &ProcDir) -> io::Result<Option<ForeignNamespace>> {
    let ns = proc.open_at("ns/user", libc::O_RDONLY)?;
    let theirs = ns.metadata()?;
    let ours = fs::metadata(Path::new("/proc/self/ns/user"))?;
    if (theirs.dev(), theirs.ino()) == (ours.dev(), ours.ino()) {
        return Ok(None);
    }
    let owner = namespace_owner(&ns)?;
    let map = proc.read_text("uid_map")?;
    let uid_map = parse_uid_map(&map).ok_or_else(|| {
        io::Error::new(io::ErrorKind::InvalidData, format!("bad uid_map {map:?}"))
    })?;
    Ok(Some(ForeignNamespace { owner, uid_map }))
}

/// NS_GET_OWNER_UID: the namespace creator's uid, as the agent's namespace sees it.
pub fn namespace_owner(ns: &fs::File) -> io::Result<u32> {
    let mut uid: libc::uid_t = 0;
    // SAFETY: a user namespace fd and a uid_t the kernel writes into.
    let rc = unsafe { libc::ioctl(ns.as_raw_fd(), libc::NS_GET_OWNER_UID, &mut uid) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(uid)
}

#[cfg(test)]
mod tests;
