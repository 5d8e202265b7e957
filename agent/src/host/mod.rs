//! What the agent reads from the node itself: listening sockets (sock_diag, `netlink`) in
//! every network namespace (`netns`: pods' too) and which of them nginx reaches
//! (`placement`), who owns them (/proc fds and cgroups, in the node's cgroup namespace:
//! `cgroupns`; pods named by `pods`), the upstreams' state over time, per-process CPU and
//! memory, and an exited owner's last stderr lines.
pub mod cgroupns;
pub mod listeners;
pub mod netlink;
pub mod netns;
pub mod owners;
pub mod placement;
pub mod pods;
pub mod proc_files;
pub mod sampler;
pub mod stderr;
pub mod upstreams;

/// An error and its sources on one line, for logs.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
