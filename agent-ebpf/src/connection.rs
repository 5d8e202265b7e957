//! A connection to a watched upstream: the per-socket state the probes keep from connect()
//! to close, and the record they emit when it closes. Kernel side: `programs/connect.rs`,
//! `programs/exchange.rs`; user side: the agent's `probes/connection.rs`.

/// `WATCHED_PORTS` is a bitmap of all 65536 ports in u64 words.
pub const PORT_BITMAP_WORDS: u32 = 65_536 / 64;
/// Size of the `CONNECTION_EVENTS` ring buffer in bytes (power-of-two multiple of the page size).
pub const CONNECTION_RING_BYTES: u32 = 1 << 22;

/// TCP states as in include/net/tcp_states.h.
pub mod tcp_state {
    pub const ESTABLISHED: i32 = 1;
    pub const SYN_SENT: i32 = 2;
    pub const FIN_WAIT1: i32 = 4;
    pub const CLOSE: i32 = 7;
    pub const CLOSE_WAIT: i32 = 8;
}

/// Bits of [`Connection::flags`].
pub mod conn_flags {
    /// SYN_SENT → ESTABLISHED happened.
    pub const ESTABLISHED: u32 = 1 << 0;
    /// An RST arrived on this socket (`tcp_receive_reset`).
    pub const RESET_RECEIVED: u32 = 1 << 1;
    /// This socket sent an RST (`tcp_send_reset`).
    pub const RESET_SENT: u32 = 1 << 2;
    /// The connecting side closed first (ESTABLISHED → FIN_WAIT1).
    pub const CLIENT_CLOSED_FIRST: u32 = 1 << 3;
    /// The upstream closed first (ESTABLISHED → CLOSE_WAIT).
    pub const UPSTREAM_CLOSED_FIRST: u32 = 1 << 4;
}

/// Per-socket state kept in `SOCKETS` from connect() to close; small, because it is written
/// inside connect().
/// Times are `bpf_ktime_get_ns` (CLOCK_MONOTONIC) nanoseconds; 0 = did not happen.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Connection {
    pub connect_ns: u64,
    pub established_ns: u64,
    pub first_send_ns: u64,
    pub first_byte_ns: u64,
    pub tgid: u32,
    pub pid: u32,
    pub comm: [u8; 16],
    pub dport: u16,
    pub syn_retransmits: u16,
    pub retransmits: u32,
    pub flags: u32,
    pub _pad: u32,
}

/// Emitted once per tracked socket when it reaches TCP_CLOSE.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConnectionClosed {
    pub conn: Connection,
    /// Addresses are read at close, not in connect(), to keep connect() cheap; the socket
    /// still holds them. IPv4 in the first 4 bytes when `family` is AF_INET.
    pub saddr: [u8; 16],
    pub daddr: [u8; 16],
    pub family: u16,
    pub sport: u16,
    pub _pad: u32,
    pub closed_ns: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    /// `sk->sk_err` at close (111 refused, 110 timed out, 104 reset, 113/101 unreachable);
    /// -1 when the offset is unknown.
    pub sk_err: i32,
    /// The state the socket left for CLOSE (SYN_SENT = the connect failed).
    pub old_state: i32,
}
