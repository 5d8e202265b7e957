//! Types shared by the eBPF probes (kernel side) and `vigil-agent` (user side).
//!
//! Everything here is `#[repr(C)]` plain data: the probes write it into maps and the ring
//! buffer, the agent reads the same bytes back. Keep field order and sizes stable.
#![no_std]

/// `WATCHED_PORTS` is a bitmap of all 65536 ports in u64 words.
pub const PORT_BITMAP_WORDS: u32 = 65_536 / 64;
/// The table of tracked sockets (`SOCKETS`): 2^14 sets of 4 ways, 65536 sockets, 5 MiB.
/// A full set gives up its oldest connection, so a SYN flood cannot exhaust it.
pub const SOCKET_SET_BITS: u32 = 14;
pub const SOCKET_SETS: u32 = 1 << SOCKET_SET_BITS;
pub const SOCKET_WAYS: usize = 4;
/// Upper bound of processes whose exit is reported (map `WATCHED_PIDS`).
pub const MAX_WATCHED_PIDS: u32 = 4096;
/// Ring buffer sizes in bytes (power-of-two multiple of the page size).
pub const CONNECTION_RING_BYTES: u32 = 1 << 22;
pub const EXIT_RING_BYTES: u32 = 1 << 16;

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

/// Indices of the per-CPU `PROBE_STATS` counters.
pub mod stat {
    /// Connection events that did not fit into the ring buffer.
    pub const EVENTS_LOST: u32 = 0;
    /// Connections whose tracking was lost: a full set of `SOCKETS` gave up its oldest.
    pub const TRACK_FAILED: u32 = 1;
    /// Connects to watched ports seen (CLOSE → SYN_SENT).
    pub const CONNECTS_SEEN: u32 = 2;
    /// Owner exit events that did not fit into their ring buffer.
    pub const EXITS_LOST: u32 = 3;
    pub const COUNT: u32 = 4;
}

/// Indices of the `SETTINGS` array: kernel struct offsets read by the agent from BTF
/// (CO-RE by hand; Rust eBPF has no relocations). Stored as offset + 1 so that an unset
/// slot (0) means unknown (`skc_daddr` really is at offset 0); the probe skips unknown reads.
/// Socket offsets are relative to the `struct sock *` (sock_common sits at its start).
pub mod setting {
    /// `offsetof(struct sock, sk_err)`.
    pub const SOCK_SK_ERR: u32 = 0;
    /// `offsetof(struct task_struct, exit_code)`.
    pub const TASK_EXIT_CODE: u32 = 1;
    /// `offsetof(struct tcp_sock, bytes_sent)`.
    pub const TCP_BYTES_SENT: u32 = 2;
    /// `offsetof(struct tcp_sock, bytes_received)`.
    pub const TCP_BYTES_RECEIVED: u32 = 3;
    /// `skc_family` (u16).
    pub const SOCK_FAMILY: u32 = 4;
    /// `skc_dport` (be16).
    pub const SOCK_DPORT: u32 = 5;
    /// `inet_sock.inet_sport` (be16).
    pub const SOCK_SPORT: u32 = 6;
    /// `skc_daddr` (be32).
    pub const SOCK_DADDR: u32 = 7;
    /// `skc_rcv_saddr` (be32).
    pub const SOCK_SADDR: u32 = 8;
    /// `skc_v6_daddr` (16 bytes).
    pub const SOCK_V6_DADDR: u32 = 9;
    /// `skc_v6_rcv_saddr` (16 bytes).
    pub const SOCK_V6_SADDR: u32 = 10;
    /// `sk_protocol` (u16).
    pub const SOCK_PROTOCOL: u32 = 11;
    /// `offsetof(struct sk_buff, len)` (u32).
    pub const SKB_LEN: u32 = 12;
    /// `offsetof(struct sk_buff, data)` (pointer; the TCP header in `tcp_rcv_established`).
    pub const SKB_DATA: u32 = 13;
    pub const COUNT: u32 = 14;

    /// What the raw `inet_sock_set_state` program reads from the socket itself.
    pub const SOCK_FIELDS: &[u32] = &[
        SOCK_FAMILY,
        SOCK_DPORT,
        SOCK_SPORT,
        SOCK_DADDR,
        SOCK_SADDR,
        SOCK_V6_DADDR,
        SOCK_V6_SADDR,
        SOCK_PROTOCOL,
    ];
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

/// One set of the `SOCKETS` table: the tags (`struct sock` addresses, 0 = free) first, so a
/// lookup compares them within one cache line.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct SocketSet {
    pub sk: [u64; SOCKET_WAYS],
    pub conn: [Connection; SOCKET_WAYS],
}

/// The set of `SOCKETS` a socket belongs to. Fibonacci hashing: slab addresses differ in
/// their middle bits, and the top bits of the product depend on all of them.
#[inline(always)]
pub fn socket_set_index(sk: u64) -> u32 {
    (sk.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - SOCKET_SET_BITS)) as u32
}

impl SocketSet {
    /// The way whose connection started first: it gives way when the set is full.
    #[inline(always)]
    pub fn oldest_way(&self) -> usize {
        let mut oldest = 0;
        for way in 1..SOCKET_WAYS {
            if self.conn[way].connect_ns < self.conn[oldest].connect_ns {
                oldest = way;
            }
        }
        oldest
    }
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

/// Field offsets of the classic tracepoints the probes read, from each event's `format` file
/// under tracefs. The probes use the constants; the agent checks them against the running
/// kernel's format files before attaching and skips a probe whose layout differs.
pub mod fields {
    pub mod inet_sock_set_state {
        pub const SKADDR: usize = 8;
        pub const OLDSTATE: usize = 16;
        pub const NEWSTATE: usize = 20;
        pub const SPORT: usize = 24;
        pub const DPORT: usize = 26;
        pub const FAMILY: usize = 28;
        pub const PROTOCOL: usize = 30;
        pub const SADDR: usize = 32;
        pub const DADDR: usize = 36;
        pub const SADDR_V6: usize = 40;
        pub const DADDR_V6: usize = 56;
    }
    pub mod tcp_probe {
        pub const DATA_LEN: usize = 76;
        pub const SKADDR: usize = 128;
    }
    pub mod sched_process_exit {
        pub const GROUP_DEAD: usize = 32;
    }

    /// (category, event, [(field, offset)]) for the agent's layout check.
    pub type Layout = (&'static str, &'static str, &'static [(&'static str, usize)]);

    pub const LAYOUTS: &[Layout] = &[
        (
            "sock",
            "inet_sock_set_state",
            &[
                ("skaddr", inet_sock_set_state::SKADDR),
                ("oldstate", inet_sock_set_state::OLDSTATE),
                ("newstate", inet_sock_set_state::NEWSTATE),
                ("sport", inet_sock_set_state::SPORT),
                ("dport", inet_sock_set_state::DPORT),
                ("family", inet_sock_set_state::FAMILY),
                ("protocol", inet_sock_set_state::PROTOCOL),
                ("saddr", inet_sock_set_state::SADDR),
                ("daddr", inet_sock_set_state::DADDR),
                ("saddr_v6", inet_sock_set_state::SADDR_V6),
                ("daddr_v6", inet_sock_set_state::DADDR_V6),
            ],
        ),
        (
            "tcp",
            "tcp_probe",
            &[
                ("data_len", tcp_probe::DATA_LEN),
                ("skaddr", tcp_probe::SKADDR),
            ],
        ),
        (
            "sched",
            "sched_process_exit",
            &[("group_dead", sched_process_exit::GROUP_DEAD)],
        ),
    ];
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slab_addresses_spread_over_the_sets() {
        // A quarter of the table live, laid out as a slab would: 2304-byte objects
        // (tcp_sock), 14 to a slab, slabs spread over the direct map. Fibonacci hashing spreads
        // such strides evenly (random addresses would overflow ~60 sets' 4 ways; these none).
        let mut per_set = [0u8; SOCKET_SETS as usize];
        let mut sk_count = 0;
        for slab in 0..1170u64 {
            let base = 0xffff_8881_0000_0000 + slab * 0x9_3000;
            for object in 0..14 {
                let set = socket_set_index(base + object * 2304) as usize;
                per_set[set] += 1;
                sk_count += 1;
            }
        }
        assert_eq!(sk_count, 16380);
        let fullest = per_set.iter().max().copied().unwrap();
        assert!(fullest <= 2, "fullest set holds {fullest}");
    }

    #[test]
    fn a_full_set_gives_up_its_oldest_connection() {
        let mut set = SocketSet::default();
        for (way, started) in [40, 10, 30, 20].into_iter().enumerate() {
            set.conn[way].connect_ns = started;
        }
        assert_eq!(set.oldest_way(), 1);
        set.conn[1].connect_ns = 50;
        assert_eq!(set.oldest_way(), 3);
    }
}

#[cfg(feature = "user")]
mod user {
    // SAFETY: plain #[repr(C)] data without padding-dependent invariants.
    unsafe impl aya::Pod for super::Connection {}
    unsafe impl aya::Pod for super::ConnectionClosed {}
    unsafe impl aya::Pod for super::ProcessExit {}
}
