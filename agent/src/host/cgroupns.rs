//! The node's cgroup namespace. On cgroup v2 containerd gives an unprivileged container a
//! cgroup namespace of its own, so from inside the agent's pod `/proc/PID/cgroup` of every
//! other process reads `0::/../../kubepods.slice/…`: relative to the agent's own cgroup, not
//! a path under the node's `/sys/fs/cgroup` (no `cpu.max` can be read for it). The agent joins
//! the node's namespace — that of the node's init, `/proc/1/ns/cgroup` with hostPID — once at
//! start, before it starts threads (a cgroup namespace is per thread; new threads inherit it).
//! setns needs CAP_SYS_ADMIN; without it the agent says so and carries on with relative paths
//! (units and pods are still recognised from them).
use std::{
    fs::File,
    io,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    sync::OnceLock,
};

use tracing::{debug, info, warn};

use super::netns::enter;

/// The node's init's cgroup namespace (with hostPID, pid 1 is the node's).
pub const NODE_CGROUP_NS: &str = "/proc/1/ns/cgroup";

#[derive(Debug, thiserror::Error)]
pub enum CgroupNsError {
    #[error("cannot open {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("setns into the cgroup namespace {path} (needs CAP_SYS_ADMIN)")]
    Enter {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Joined {
    /// The agent already was in it (a host process, or a privileged container).
    AlreadyThere,
    /// The agent was in another one (nsfs inode) and is now in the node's.
    Switched { from: u64, to: u64 },
}

/// Joins the cgroup namespace at `target` unless the calling thread is in it already.
pub fn join(target: &Path) -> Result<Joined, CgroupNsError> {
    let open_error = |source| CgroupNsError::Open {
        path: target.to_path_buf(),
        source,
    };
    let file = File::open(target).map_err(open_error)?;
    let to = file.metadata().map_err(open_error)?.ino();
    let own = Path::new("/proc/thread-self/ns/cgroup");
    let from = std::fs::metadata(own)
        .map_err(|source| CgroupNsError::Open {
            path: own.to_path_buf(),
            source,
        })?
        .ino();
    if from == to {
        return Ok(Joined::AlreadyThere);
    }
    enter(&file, libc::CLONE_NEWCGROUP).map_err(|source| CgroupNsError::Enter {
        path: target.to_path_buf(),
        source,
    })?;
    Ok(Joined::Switched { from, to })
}

/// Whether other processes' cgroups read as relative to ours: a namespace not the node's.
pub fn looks_nested(proc_root: &Path) -> bool {
    std::fs::read_to_string(proc_root.join("1/cgroup"))
        .is_ok_and(|text| text.lines().any(|l| l.starts_with("0::/..")))
}

/// Once per process, at start: join the node's cgroup namespace (`VIGIL_NODE_CGROUP_NS`
/// names another file holding it, e.g. where pid 1 is not the node's init).
pub fn join_node_once() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        let target = std::env::var_os("VIGIL_NODE_CGROUP_NS")
            .map_or_else(|| PathBuf::from(NODE_CGROUP_NS), PathBuf::from);
        match join(&target) {
            Ok(Joined::AlreadyThere) => debug!("already in the node's cgroup namespace"),
            Ok(Joined::Switched { from, to }) => info!(
                from,
                to, "joined the node's cgroup namespace: cgroup paths are the node's"
            ),
            Err(e) if looks_nested(Path::new("/proc")) => warn!(
                "{}; cgroup paths of other processes read relative to the agent's \
                 (0::/../..): CPU limits of upstream workers are not read",
                super::error_chain(&e)
            ),
            Err(e) => debug!("{}", super::error_chain(&e)),
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joining_the_namespace_we_are_in_changes_nothing() {
        let ours = Path::new("/proc/thread-self/ns/cgroup");
        assert_eq!(join(ours).unwrap(), Joined::AlreadyThere);
    }

    #[test]
    fn a_missing_namespace_file_is_a_clear_error() {
        let err = join(Path::new("/proc/0/ns/cgroup")).unwrap_err();
        assert!(err.to_string().contains("/proc/0/ns/cgroup"), "{err}");
    }

    #[test]
    fn a_thread_in_a_child_namespace_joins_the_node_s_again() {
        // A thread of our own unshares a cgroup namespace (rooted at our cgroup), then joins
        // the test process's namespace (the node's here) through the main thread's file.
        let node = format!(
            "/proc/{}/task/{}/ns/cgroup",
            std::process::id(),
            std::process::id()
        );
        let node = PathBuf::from(node);
        let node_inode = std::fs::metadata(&node).unwrap().ino();
        std::thread::spawn(move || {
            // SAFETY: unshare affects this thread only for CLONE_NEWCGROUP.
            assert_eq!(
                unsafe { libc::unshare(libc::CLONE_NEWCGROUP) },
                0,
                "root needed"
            );
            let joined = join(&node).unwrap();
            assert!(matches!(joined, Joined::Switched { to, .. } if to == node_inode));
            let now = std::fs::metadata("/proc/thread-self/ns/cgroup")
                .unwrap()
                .ino();
            assert_eq!(now, node_inode);
        })
        .join()
        .unwrap();
    }
}
