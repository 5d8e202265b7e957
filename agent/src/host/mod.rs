//! What the agent reads from the node itself: listening sockets (sock_diag), who owns them
//! (/proc fds and cgroups), the upstreams' state over time, per-process CPU and memory, and
//! an exited owner's last stderr lines.
pub mod listeners;
pub mod owners;
pub mod proc_files;
pub mod sampler;
pub mod stderr;
pub mod upstreams;
