//! Connect outcome: `inet_sock_set_state` from SYN_SENT to CLOSE, plus the SYN retransmits
//! and resets that explain a failure.
//!
//! Two entry points share one state machine: a BTF-typed tracepoint (tp_btf) reading the
//! socket with plain loads at offsets the agent found in BTF (preferred: no record is built
//! per event, so untracked sockets cost one map lookup, and no helper call per field), and
//! the classic tracepoint reading its record (fallback when BTF is missing; offsets from its
//! `format` file, checked by the agent at load time). Each kind keys the socket table its
//! own way (`typed_key` or the address) and comes with its own retransmit and reset
//! programs; the agent attaches one kind.
use aya_ebpf::{
    bindings::BPF_RB_NO_WAKEUP,
    helpers::{bpf_get_current_comm, bpf_get_current_pid_tgid},
    macros::{btf_tracepoint, raw_tracepoint, tracepoint},
    programs::{BtfTracePointContext, RawTracePointContext, TracePointContext},
};
use vigil_agent_ebpf::{
    conn_flags, layouts::inet_sock_set_state as ss, offsets, stats, tcp_state, Connection,
    ConnectionClosed,
};

use crate::{
    maps::{count, now_ns, port_watched, CONNECTION_EVENTS},
    read::{kernel_field, record, typed_field},
    socket_table::{track, tracked, typed_key},
};

const IPPROTO_TCP: u16 = 6;
const AF_INET: u16 = 2;

/// Where a state change's socket fields come from.
enum Source<'a> {
    Record(&'a TracePointContext),
    /// The tp_btf argument: a `struct sock *` whose type the verifier knows.
    Sock(u64),
}

impl Source<'_> {
    #[inline(always)]
    unsafe fn sock<T: Default>(sk: u64, which: u32) -> T {
        unsafe { typed_field(sk, which) }.unwrap_or_default()
    }

    /// `sk_err`, -1 when its offset is unknown.
    #[inline(always)]
    unsafe fn sk_err(&self, skaddr: u64) -> i32 {
        let err = match self {
            Source::Record(_) => unsafe { kernel_field::<i32>(skaddr, offsets::SOCK_SK_ERR) },
            Source::Sock(sk) => unsafe { typed_field::<i32>(*sk, offsets::SOCK_SK_ERR) },
        };
        err.unwrap_or(-1)
    }

    unsafe fn dport(&self) -> u16 {
        match self {
            Source::Record(ctx) => unsafe { record(ctx, ss::DPORT) },
            Source::Sock(sk) => u16::from_be(unsafe { Self::sock(*sk, offsets::SOCK_DPORT) }),
        }
    }

    unsafe fn sport(&self) -> u16 {
        match self {
            Source::Record(ctx) => unsafe { record(ctx, ss::SPORT) },
            // In `inet_sock`, past `struct sock`: a plain load there is refused.
            Source::Sock(sk) => {
                u16::from_be(unsafe { kernel_field(*sk, offsets::SOCK_SPORT) }.unwrap_or_default())
            }
        }
    }

    unsafe fn family(&self) -> u16 {
        match self {
            Source::Record(ctx) => unsafe { record(ctx, ss::FAMILY) },
            Source::Sock(sk) => unsafe { Self::sock(*sk, offsets::SOCK_FAMILY) },
        }
    }

    unsafe fn protocol(&self) -> u16 {
        match self {
            Source::Record(ctx) => unsafe { record(ctx, ss::PROTOCOL) },
            Source::Sock(sk) => unsafe { Self::sock(*sk, offsets::SOCK_PROTOCOL) },
        }
    }

    /// Source (`local`) or destination address; IPv4 in the first 4 bytes.
    unsafe fn addr(&self, family: u16, local: bool) -> [u8; 16] {
        let mut addr = [0u8; 16];
        match self {
            // The verifier refuses ctx loads at computed offsets (the compiler merges the
            // two constants into one): read these through the helper.
            Source::Record(ctx) if family == AF_INET => {
                let v4: [u8; 4] = unsafe { ctx.read_at(if local { ss::SADDR } else { ss::DADDR }) }
                    .unwrap_or_default();
                addr[..4].copy_from_slice(&v4);
            }
            Source::Record(ctx) => {
                let at = if local { ss::SADDR_V6 } else { ss::DADDR_V6 };
                addr = unsafe { ctx.read_at(at) }.unwrap_or_default();
            }
            Source::Sock(sk) if family == AF_INET => {
                let which = if local {
                    offsets::SOCK_SADDR
                } else {
                    offsets::SOCK_DADDR
                };
                let v4: u32 = unsafe { Self::sock(*sk, which) };
                addr[..4].copy_from_slice(&v4.to_ne_bytes());
            }
            Source::Sock(sk) => {
                let which = if local {
                    offsets::SOCK_V6_SADDR
                } else {
                    offsets::SOCK_V6_DADDR
                };
                addr = unsafe { Self::sock(*sk, which) };
            }
        }
        addr
    }
}

#[btf_tracepoint(function = "inet_sock_set_state")]
pub fn inet_sock_set_state_btf(ctx: BtfTracePointContext) -> i32 {
    // TP_PROTO(const struct sock *sk, const int oldstate, const int newstate)
    let sk: u64 = ctx.arg(0);
    if sk == 0 {
        return 0;
    }
    let (old, new) = (ctx.arg::<u64>(1) as i32, ctx.arg::<u64>(2) as i32);
    // SAFETY: socket offsets come from the running kernel's BTF.
    unsafe { on_state_change(Source::Sock(sk), sk, typed_key(sk), old, new) };
    0
}

#[tracepoint(category = "sock", name = "inet_sock_set_state")]
pub fn inet_sock_set_state(ctx: TracePointContext) -> u32 {
    // SAFETY: offsets from the tracepoint's format file, checked by the agent.
    unsafe {
        let (sk, old, new) = (
            record(&ctx, ss::SKADDR),
            record(&ctx, ss::OLDSTATE),
            record(&ctx, ss::NEWSTATE),
        );
        on_state_change(Source::Record(&ctx), sk, sk, old, new);
    }
    0
}

/// `skaddr` is the socket, `key` its key in the socket table.
#[inline(always)]
unsafe fn on_state_change(src: Source, skaddr: u64, key: u64, old: i32, new: i32) {
    if old == tcp_state::CLOSE && new == tcp_state::SYN_SENT {
        unsafe { start_tracking(&src, key) };
        return;
    }
    // Only these transitions matter for a tracked (connecting) socket; every other socket's
    // state changes (accepted sockets, listeners) return here without a map lookup.
    let relevant = match new {
        tcp_state::ESTABLISHED => old == tcp_state::SYN_SENT,
        tcp_state::FIN_WAIT1 | tcp_state::CLOSE_WAIT | tcp_state::CLOSE => true,
        _ => false,
    };
    if !relevant {
        return;
    }
    // The hot path for other connecting sockets: one lookup.
    let Some(socket) = tracked(key) else {
        return;
    };
    let conn = &mut *socket.conn;
    match (old, new) {
        (tcp_state::SYN_SENT, tcp_state::ESTABLISHED) => {
            conn.established_ns = now_ns();
            conn.flags |= conn_flags::ESTABLISHED;
        }
        (tcp_state::ESTABLISHED, tcp_state::FIN_WAIT1) => {
            conn.flags |= conn_flags::CLIENT_CLOSED_FIRST;
        }
        (tcp_state::ESTABLISHED, tcp_state::CLOSE_WAIT) => {
            conn.flags |= conn_flags::UPSTREAM_CLOSED_FIRST;
        }
        (_, tcp_state::CLOSE) => {
            unsafe { emit_closed(&src, conn, skaddr, old) };
            socket.forget();
        }
        _ => {}
    }
}

/// CLOSE → SYN_SENT runs inside connect(): `current` is the connecting process, which later
/// transitions (softirq, timers) cannot tell. Record it now.
#[inline(always)]
unsafe fn start_tracking(src: &Source, key: u64) {
    // Only TCP-like sockets reach SYN_SENT; MPTCP's are told apart at close, off the
    // connect() path.
    let dport = unsafe { src.dport() };
    if !port_watched(dport) {
        return;
    }
    count(stats::CONNECTS_SEEN);
    let pid_tgid = bpf_get_current_pid_tgid();
    let conn = Connection {
        connect_ns: now_ns(),
        tgid: (pid_tgid >> 32) as u32,
        pid: pid_tgid as u32,
        comm: bpf_get_current_comm().unwrap_or_default(),
        dport,
        ..Connection::default()
    };
    track(key, conn);
}

// Inlined: as a subprogram returning nothing, whatever it left in r0 (a stack pointer,
// in one build) made the verifier refuse it.
#[inline(always)]
unsafe fn emit_closed(src: &Source, conn: &Connection, skaddr: u64, old_state: i32) {
    if unsafe { src.protocol() } != IPPROTO_TCP {
        return;
    }
    let Some(mut entry) = CONNECTION_EVENTS.reserve::<ConnectionClosed>(0) else {
        count(stats::EVENTS_LOST);
        return;
    };
    let sk_err = unsafe { src.sk_err(skaddr) };
    let bytes_sent = unsafe { kernel_field::<u64>(skaddr, offsets::TCP_BYTES_SENT) }.unwrap_or(0);
    let bytes_received =
        unsafe { kernel_field::<u64>(skaddr, offsets::TCP_BYTES_RECEIVED) }.unwrap_or(0);
    let family = unsafe { src.family() };
    entry.write(ConnectionClosed {
        conn: *conn,
        saddr: unsafe { src.addr(family, true) },
        daddr: unsafe { src.addr(family, false) },
        family,
        sport: unsafe { src.sport() },
        _pad: 0,
        closed_ns: now_ns(),
        bytes_sent,
        bytes_received,
        sk_err,
        old_state,
    });
    // No wakeup: the agent polls, so a connect never costs a userspace wakeup.
    entry.submit(BPF_RB_NO_WAKEUP as u64);
}

// Retransmits and resets: BTF-typed beside the tp_btf state program (same table key);
// raw beside the classic one, because the classic tracepoints would build a record
// (addresses, a socket cookie) for every retransmit and RST on the node before the program
// could look at it.

#[btf_tracepoint(function = "tcp_retransmit_skb")]
pub fn tcp_retransmit_skb_btf(ctx: BtfTracePointContext) -> i32 {
    // TP_PROTO(const struct sock *sk, const struct sk_buff *skb, ...)
    let sk: u64 = ctx.arg(0);
    if sk != 0 {
        on_retransmit(typed_key(sk));
    }
    0
}

#[raw_tracepoint(tracepoint = "tcp_retransmit_skb")]
pub fn tcp_retransmit_skb(ctx: RawTracePointContext) -> i32 {
    on_retransmit(ctx.arg(0));
    0
}

#[btf_tracepoint(function = "tcp_receive_reset")]
pub fn tcp_receive_reset_btf(ctx: BtfTracePointContext) -> i32 {
    // TP_PROTO(struct sock *sk)
    let sk: u64 = ctx.arg(0);
    if sk != 0 {
        mark(typed_key(sk), conn_flags::RESET_RECEIVED);
    }
    0
}

#[raw_tracepoint(tracepoint = "tcp_receive_reset")]
pub fn tcp_receive_reset(ctx: RawTracePointContext) -> i32 {
    mark(ctx.arg(0), conn_flags::RESET_RECEIVED);
    0
}

#[btf_tracepoint(function = "tcp_send_reset")]
pub fn tcp_send_reset_btf(ctx: BtfTracePointContext) -> i32 {
    // TP_PROTO(const struct sock *sk, const struct sk_buff *skb, ...); sk may be NULL.
    let sk: u64 = ctx.arg(0);
    if sk != 0 {
        mark(typed_key(sk), conn_flags::RESET_SENT);
    }
    0
}

#[raw_tracepoint(tracepoint = "tcp_send_reset")]
pub fn tcp_send_reset(ctx: RawTracePointContext) -> i32 {
    mark(ctx.arg(0), conn_flags::RESET_SENT);
    0
}

#[inline(always)]
fn on_retransmit(key: u64) {
    if let Some(socket) = tracked(key) {
        let conn = socket.conn;
        // A tracked socket is SYN_SENT until it is established: then this is a SYN.
        if conn.flags & conn_flags::ESTABLISHED == 0 {
            conn.syn_retransmits = conn.syn_retransmits.saturating_add(1);
        } else {
            conn.retransmits = conn.retransmits.saturating_add(1);
        }
    }
}

#[inline(always)]
fn mark(key: u64, flag: u32) {
    if let Some(socket) = tracked(key) {
        socket.conn.flags |= flag;
    }
}
