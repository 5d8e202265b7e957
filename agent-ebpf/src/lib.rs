//! The contract between vigil's eBPF programs (kernel side, `programs/`) and `vigil-agent`
//! (user side): `#[repr(C)]` plain data the probes write into maps and ring buffers and the
//! agent reads back as the same bytes, the map indices, and the offsets the programs read.
//! Keep field order and sizes stable.
//!
//! - `connection`: per-socket state and the record emitted at close
//! - `socket_table`: the set-associative table of tracked sockets
//! - `exit`: the exit of a watched upstream owner
//! - `offsets`: kernel struct offsets (found in BTF by the agent) and where they come from
//! - `layouts`: classic tracepoint record layouts the programs read
//! - `stats`: the programs' counters
#![no_std]

pub mod connection;
pub mod exit;
pub mod layouts;
pub mod offsets;
pub mod socket_table;
pub mod stats;

pub use connection::{conn_flags, tcp_state, Connection, ConnectionClosed};
pub use exit::ProcessExit;

#[cfg(feature = "user")]
mod user {
    // SAFETY: plain #[repr(C)] data without padding-dependent invariants.
    unsafe impl aya::Pod for super::Connection {}
    unsafe impl aya::Pod for super::ConnectionClosed {}
    unsafe impl aya::Pod for super::ProcessExit {}
}
