//! The exit of a watched process (an upstream owner or worker). Kernel side:
//! `programs/owner.rs`; user side: the agent's `probes/exit.rs`.

/// Upper bound of processes whose exit is reported (map `WATCHED_PIDS`).
pub const MAX_WATCHED_PIDS: u32 = 4096;
/// Size of the `EXIT_EVENTS` ring buffer in bytes.
pub const EXIT_RING_BYTES: u32 = 1 << 16;

/// Emitted when the last thread of a watched process (an upstream owner) exits.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProcessExit {
    pub ts_ns: u64,
    pub tgid: u32,
    pub pid: u32,
    /// `task->exit_code`: (status << 8) | terminating signal; -1 when the offset is unknown.
    pub exit_code: i32,
    pub _pad: u32,
    pub comm: [u8; 16],
}
