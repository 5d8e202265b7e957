//! vigil-agent: watches upstream connections in the kernel (eBPF), who owns the upstream
//! ports, how busy their workers are, and what nginx logs about them.
//!
//! Data path: `probes` (load, attach, decode what the kernel sends) → `host` (listeners,
//! owners, process samples, from sock_diag and /proc) and `nginx` (discovery, configuration,
//! logs) → `watch` (all of it for one node) → `ship` (records → wire batches → collector).
//! `cmd` holds the commands: `trace`, `inspect`, `run`.
pub mod clock;
pub mod cmd;
pub mod host;
pub mod nginx;
pub mod probes;
pub mod ship;
#[cfg(test)]
mod test_support;
pub mod watch;
