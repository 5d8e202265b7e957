//! Kernel struct offsets the probes read (CO-RE by hand: Rust eBPF has no relocations). The
//! agent looks each one up in the kernel's BTF by the struct/member path given here and writes
//! it to the `OFFSETS` map at its index, stored as offset + 1 so that an unset slot (0) means
//! unknown (`skc_daddr` really is at offset 0); a probe skips the reads whose offset is unknown.
//! Socket offsets are relative to the `struct sock *` (sock_common sits at its start).

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

/// (offset index, capability it serves, [(struct, member)] whose offsets add up).
pub type OffsetPath = (u32, &'static str, &'static [(&'static str, &'static str)]);

/// `struct sock` starts with its `sock_common`.
const SK_COMMON: (&str, &str) = ("sock", "__sk_common");

/// Where in BTF each offset is found.
pub const PATHS: &[OffsetPath] = &[
    (SOCK_SK_ERR, "connect_errno", &[("sock", "sk_err")]),
    (
        TASK_EXIT_CODE,
        "exit_status",
        &[("task_struct", "exit_code")],
    ),
    (TCP_BYTES_SENT, "bytes_sent", &[("tcp_sock", "bytes_sent")]),
    (
        TCP_BYTES_RECEIVED,
        "bytes_received",
        &[("tcp_sock", "bytes_received")],
    ),
    (
        SOCK_FAMILY,
        "socket_fields",
        &[SK_COMMON, ("sock_common", "skc_family")],
    ),
    (
        SOCK_DPORT,
        "socket_fields",
        &[SK_COMMON, ("sock_common", "skc_dport")],
    ),
    (SOCK_SPORT, "socket_fields", &[("inet_sock", "inet_sport")]),
    (
        SOCK_DADDR,
        "socket_fields",
        &[SK_COMMON, ("sock_common", "skc_daddr")],
    ),
    (
        SOCK_SADDR,
        "socket_fields",
        &[SK_COMMON, ("sock_common", "skc_rcv_saddr")],
    ),
    (
        SOCK_V6_DADDR,
        "socket_fields",
        &[SK_COMMON, ("sock_common", "skc_v6_daddr")],
    ),
    (
        SOCK_V6_SADDR,
        "socket_fields",
        &[SK_COMMON, ("sock_common", "skc_v6_rcv_saddr")],
    ),
    (SOCK_PROTOCOL, "socket_fields", &[("sock", "sk_protocol")]),
    (SKB_LEN, "segment_fields", &[("sk_buff", "len")]),
    (SKB_DATA, "segment_fields", &[("sk_buff", "data")]),
];
