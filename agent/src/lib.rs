//! vigil-agent: watches upstream connections in the kernel (eBPF), who owns the upstream
//! ports, how busy their workers are, and what nginx logs about them.
//!
//! Data path: `probes` (load, attach, read) → `tracker` (events → outcomes) → `upstreams`
//! (listeners, owners, exits) and `procs` (CPU/RSS) → `nginx` (config, logs) → the commands
//! `trace` and `inspect`.
pub mod btf;
pub mod clock;
pub mod inspect;
pub mod listeners;
pub mod nginx;
pub mod nginx_view;
pub mod outbox;
pub mod owners;
pub mod poll;
pub mod ports;
pub mod probes;
pub mod proc_files;
pub mod procs;
pub mod run;
pub mod ship;
#[cfg(test)]
mod test_support;
pub mod trace;
pub mod tracker;
pub mod upstreams;
pub mod watch;
