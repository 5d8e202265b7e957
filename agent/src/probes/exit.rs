//! Decodes a watched process's exit (`ProcessExit`, see `vigil_agent_ebpf::exit`): the exit
//! status of a normal exit or the signal that killed it.
use serde::Serialize;
use vigil_agent_ebpf::ProcessExit;

use crate::clock::MonotonicClock;

/// How a process ended, from `task->exit_code`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ProcessExitInfo {
    pub pid: u32,
    pub comm: String,
    #[serde(serialize_with = "crate::clock::serialize_rfc3339")]
    pub at: i128,
    /// Exit status of a normal exit.
    pub status: Option<i32>,
    /// Signal that killed it.
    pub signal: Option<i32>,
    /// The last lines it wrote to stderr, oldest first (see `host::stderr`); empty until read.
    pub stderr_tail: Vec<String>,
    /// Where they came from: `journal:UNIT`, `pod:NS/POD/CONTAINER`, `file:PATH`, or "".
    pub stderr_source: String,
}

impl ProcessExitInfo {
    pub fn from_exit_code(pid: u32, comm: String, at: i128, exit_code: i32) -> Self {
        let (status, signal) = if exit_code < 0 {
            (None, None)
        } else if exit_code & 0x7f != 0 {
            (None, Some(exit_code & 0x7f))
        } else {
            (Some((exit_code >> 8) & 0xff), None)
        };
        ProcessExitInfo {
            pid,
            comm,
            at,
            status,
            signal,
            stderr_tail: Vec::new(),
            stderr_source: String::new(),
        }
    }

    pub fn from_event(ev: &ProcessExit, clock: &MonotonicClock) -> Self {
        Self::from_exit_code(
            ev.tgid,
            comm_str(&ev.comm),
            clock.unix_ns(ev.ts_ns),
            ev.exit_code,
        )
    }
}

/// A kernel `comm` (NUL-padded, at most 16 bytes) as text.
pub fn comm_str(comm: &[u8; 16]) -> String {
    let end = comm.iter().position(|&b| b == 0).unwrap_or(comm.len());
    String::from_utf8_lossy(&comm[..end]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_decode_into_status_or_signal() {
        let exit = |code| ProcessExitInfo::from_exit_code(1, "x".into(), 0, code);
        assert_eq!(exit(1 << 8).status, Some(1));
        assert_eq!(exit(0).status, Some(0));
        assert_eq!(exit(9).signal, Some(9));
        assert_eq!(exit(9).status, None);
        assert_eq!(exit(-1).status, None);
    }
}
