//! Connect outcome: `inet_sock_set_state` from SYN_SENT to CLOSE, plus the SYN retransmits
//! and resets that explain a failure.
//!
//! Two entry points share one state machine: a raw tracepoint reading the socket at offsets
//! the agent found in BTF (preferred: no per-event record is built, so untracked sockets
//! cost one map lookup), and the classic tracepoint reading its record (fallback when BTF is
//! missing; offsets from its `format` file, checked by the agent at load time).
use aya_ebpf::{
    bindings::BPF_RB_NO_WAKEUP,
    helpers::{bpf_get_current_comm, bpf_get_current_pid_tgid},
    macros::{raw_tracepoint, tracepoint},
    programs::{RawTracePointContext, TracePointContext},
};
use vigil_agent_ebpf::{
    conn_flags, layouts::inet_sock_set_state as ss, offsets, stats, tcp_state, Connection,
    ConnectionClosed,
};

use crate::{
    maps::{count, now_ns, port_watched, CONNECTION_EVENTS},
    read::{kernel_field, record},
    socket_table::{track, tracked},
};

const IPPROTO_TCP: u16 = 6;
const AF_INET: u16 = 2;

/// Where a state change's socket fields come from.
enum Source<'a> {
    Record(&'a TracePointContext),
    Sock(u64),
}

impl Source<'_> {
    #[inline(always)]
    unsafe fn sock<T: Default>(sk: u64, which: u32) -> T {
        unsafe { kernel_field(sk, which) }.unwrap_or_default()
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
            Source::Sock(sk) => u16::from_be(unsafe { Self::sock(*sk, offsets::SOCK_SPORT) }),
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

#[raw_tracepoint(tracepoint = "inet_sock_set_state")]
pub fn inet_sock_set_state_raw(ctx: RawTracePointContext) -> i32 {
    // TP_PROTO(const struct sock *sk, const int oldstate, const int newstate)
    let sk: u64 = ctx.arg(0);
    let (old, new) = (ctx.arg::<u64>(1) as i32, ctx.arg::<u64>(2) as i32);
    // SAFETY: socket offsets come from the running kernel's BTF.
    unsafe { on_state_change(Source::Sock(sk), sk, old, new) };
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
        on_state_change(Source::Record(&ctx), sk, old, new);
    }
    0
}

#[inline(always)]
unsafe fn on_state_change(src: Source, skaddr: u64, old: i32, new: i32) {
    if old == tcp_state::CLOSE && new == tcp_state::SYN_SENT {
        unsafe { start_tracking(&src, skaddr) };
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
    let Some(socket) = tracked(skaddr) else {
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
unsafe fn start_tracking(src: &Source, skaddr: u64) {
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
    track(skaddr, conn);
}

unsafe fn emit_closed(src: &Source, conn: &Connection, skaddr: u64, old_state: i32) {
    if unsafe { src.protocol() } != IPPROTO_TCP {
        return;
    }
    let Some(mut entry) = CONNECTION_EVENTS.reserve::<ConnectionClosed>(0) else {
        count(stats::EVENTS_LOST);
        return;
    };
    let sk_err = unsafe { kernel_field::<i32>(skaddr, offsets::SOCK_SK_ERR) }.unwrap_or(-1);
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

// The retransmit and reset tracepoints are attached raw: their first argument is the socket,
// and the classic ones would build a record (addresses, a socket cookie) for every
// retransmit and RST on the node before the program could look at it.

#[raw_tracepoint(tracepoint = "tcp_retransmit_skb")]
pub fn tcp_retransmit_skb(ctx: RawTracePointContext) -> i32 {
    // TP_PROTO(const struct sock *sk, const struct sk_buff *skb, ...)
    if let Some(socket) = tracked(ctx.arg(0)) {
        let conn = socket.conn;
        // A tracked socket is SYN_SENT until it is established: then this is a SYN.
        if conn.flags & conn_flags::ESTABLISHED == 0 {
            conn.syn_retransmits = conn.syn_retransmits.saturating_add(1);
        } else {
            conn.retransmits = conn.retransmits.saturating_add(1);
        }
    }
    0
}

#[raw_tracepoint(tracepoint = "tcp_receive_reset")]
pub fn tcp_receive_reset(ctx: RawTracePointContext) -> i32 {
    // TP_PROTO(struct sock *sk)
    mark(ctx.arg(0), conn_flags::RESET_RECEIVED);
    0
}

#[raw_tracepoint(tracepoint = "tcp_send_reset")]
pub fn tcp_send_reset(ctx: RawTracePointContext) -> i32 {
    // TP_PROTO(const struct sock *sk, const struct sk_buff *skb, ...); sk may be NULL.
    mark(ctx.arg(0), conn_flags::RESET_SENT);
    0
}

#[inline(always)]
fn mark(skaddr: u64, flag: u32) {
    if let Some(socket) = tracked(skaddr) {
        socket.conn.flags |= flag;
    }
}
