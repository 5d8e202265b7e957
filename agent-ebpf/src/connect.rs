//! Connect outcome: `sock/inet_sock_set_state` from SYN_SENT to CLOSE, plus the SYN
//! retransmits and resets that explain a failure. Field offsets are those of the tracepoint
//! `format` files (checked by the agent at load time).
use aya_ebpf::{
    bindings::BPF_RB_NO_WAKEUP,
    helpers::{bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_probe_read_kernel},
    macros::tracepoint,
    programs::TracePointContext,
};
use vigil_agent_ebpf::{
    conn_flags,
    fields::{
        inet_sock_set_state as ss, tcp_receive_reset as rr, tcp_retransmit_skb as rt,
        tcp_send_reset as sr,
    },
    setting, stat, tcp_state, Connection, ConnectionClosed,
};

use crate::maps::{
    count, now_ns, setting, tracked, CONNECTIONS, CONNECTION_EVENTS, WATCHED_PORTS,
};

const IPPROTO_TCP: u16 = 6;
const AF_INET: u16 = 2;


#[tracepoint(category = "sock", name = "inet_sock_set_state")]
pub fn inet_sock_set_state(ctx: TracePointContext) -> u32 {
    // SAFETY: offsets from the tracepoint's format file.
    let _ = unsafe { on_state_change(&ctx) };
    0
}

unsafe fn on_state_change(ctx: &TracePointContext) -> Result<(), i32> {
    if unsafe { ctx.read_at::<u16>(ss::PROTOCOL)? } != IPPROTO_TCP {
        return Ok(());
    }
    let skaddr: u64 = unsafe { ctx.read_at(ss::SKADDR)? };
    let old: i32 = unsafe { ctx.read_at(ss::OLDSTATE)? };
    let new: i32 = unsafe { ctx.read_at(ss::NEWSTATE)? };
    if old == tcp_state::CLOSE && new == tcp_state::SYN_SENT {
        return unsafe { start_tracking(ctx, skaddr) };
    }
    let Some(conn) = tracked(skaddr) else {
        return Ok(());
    };
    // SAFETY: pointer into the map value, valid for this program run.
    let conn = unsafe { &mut *conn };
    match (old, new) {
        (tcp_state::SYN_SENT, tcp_state::ESTABLISHED) => {
            conn.established_ns = now_ns();
            conn.flags |= conn_flags::ESTABLISHED;
            // The source port is still 0 at SYN_SENT; here it is known.
            conn.sport = unsafe { ctx.read_at(ss::SPORT)? };
            conn.saddr = unsafe { read_addr(ctx, conn.family, ss::SADDR, ss::SADDR_V6)? };
        }
        (tcp_state::ESTABLISHED, tcp_state::FIN_WAIT1) => {
            conn.flags |= conn_flags::CLIENT_CLOSED_FIRST;
        }
        (tcp_state::ESTABLISHED, tcp_state::CLOSE_WAIT) => {
            conn.flags |= conn_flags::UPSTREAM_CLOSED_FIRST;
        }
        (_, tcp_state::CLOSE) => {
            // A failed connect never saw ESTABLISHED; its address is bound by now.
            if conn.sport == 0 {
                conn.sport = unsafe { ctx.read_at(ss::SPORT)? };
                conn.saddr = unsafe { read_addr(ctx, conn.family, ss::SADDR, ss::SADDR_V6)? };
            }
            unsafe { emit_closed(conn, skaddr, old) };
            let _ = CONNECTIONS.remove(skaddr);
        }
        _ => {}
    }
    Ok(())
}

/// CLOSE → SYN_SENT runs inside connect(): `current` is the connecting process, which later
/// transitions (softirq, timers) cannot tell. Record it now.
unsafe fn start_tracking(ctx: &TracePointContext, skaddr: u64) -> Result<(), i32> {
    let dport: u16 = unsafe { ctx.read_at(ss::DPORT)? };
    // SAFETY: lookup only.
    if unsafe { WATCHED_PORTS.get(dport) }.is_none() {
        return Ok(());
    }
    count(stat::CONNECTS_SEEN);
    let family: u16 = unsafe { ctx.read_at(ss::FAMILY)? };
    let pid_tgid = bpf_get_current_pid_tgid();
    let conn = Connection {
        connect_ns: now_ns(),
        tgid: (pid_tgid >> 32) as u32,
        pid: pid_tgid as u32,
        comm: bpf_get_current_comm().unwrap_or_default(),
        daddr: unsafe { read_addr(ctx, family, ss::DADDR, ss::DADDR_V6)? },
        family,
        dport,
        ..Connection::default()
    };
    if CONNECTIONS.insert(skaddr, conn, 0).is_err() {
        count(stat::TRACK_FAILED);
    }
    Ok(())
}

unsafe fn read_addr(
    ctx: &TracePointContext,
    family: u16,
    v4: usize,
    v6: usize,
) -> Result<[u8; 16], i32> {
    let mut addr = [0u8; 16];
    if family == AF_INET {
        let a: [u8; 4] = unsafe { ctx.read_at(v4)? };
        addr[..4].copy_from_slice(&a);
    } else {
        addr = unsafe { ctx.read_at(v6)? };
    }
    Ok(addr)
}

unsafe fn read_sock<T: Default>(skaddr: u64, which: u32) -> Option<T> {
    let offset = setting(which)?;
    unsafe { bpf_probe_read_kernel((skaddr as usize + offset) as *const T) }.ok()
}

unsafe fn emit_closed(conn: &Connection, skaddr: u64, old_state: i32) {
    let Some(mut entry) = CONNECTION_EVENTS.reserve::<ConnectionClosed>(0) else {
        count(stat::EVENTS_LOST);
        return;
    };
    let sk_err = unsafe { read_sock::<i32>(skaddr, setting::SOCK_SK_ERR) }.unwrap_or(-1);
    let bytes_sent = unsafe { read_sock::<u64>(skaddr, setting::TCP_BYTES_SENT) }.unwrap_or(0);
    let bytes_received =
        unsafe { read_sock::<u64>(skaddr, setting::TCP_BYTES_RECEIVED) }.unwrap_or(0);
    entry.write(ConnectionClosed {
        conn: *conn,
        closed_ns: now_ns(),
        bytes_sent,
        bytes_received,
        sk_err,
        old_state,
    });
    // No wakeup: the agent polls, so a connect never costs a userspace wakeup.
    entry.submit(BPF_RB_NO_WAKEUP as u64);
}

#[tracepoint(category = "tcp", name = "tcp_retransmit_skb")]
pub fn tcp_retransmit_skb(ctx: TracePointContext) -> u32 {
    // SAFETY: offsets from the tracepoint's format file.
    let Ok(skaddr) = (unsafe { ctx.read_at::<u64>(rt::SKADDR) }) else {
        return 0;
    };
    if let Some(conn) = tracked(skaddr) {
        let state: i32 = unsafe { ctx.read_at(rt::STATE) }.unwrap_or(0);
        // SAFETY: pointer into the map value.
        let conn = unsafe { &mut *conn };
        if state == tcp_state::SYN_SENT {
            conn.syn_retransmits = conn.syn_retransmits.saturating_add(1);
        } else {
            conn.retransmits = conn.retransmits.saturating_add(1);
        }
    }
    0
}

#[tracepoint(category = "tcp", name = "tcp_receive_reset")]
pub fn tcp_receive_reset(ctx: TracePointContext) -> u32 {
    mark(&ctx, rr::SKADDR, conn_flags::RESET_RECEIVED);
    0
}

#[tracepoint(category = "tcp", name = "tcp_send_reset")]
pub fn tcp_send_reset(ctx: TracePointContext) -> u32 {
    mark(&ctx, sr::SKADDR, conn_flags::RESET_SENT);
    0
}

fn mark(ctx: &TracePointContext, skaddr_offset: usize, flag: u32) {
    // SAFETY: offsets from the tracepoint's format file.
    let Ok(skaddr) = (unsafe { ctx.read_at::<u64>(skaddr_offset) }) else {
        return;
    };
    if let Some(conn) = tracked(skaddr) {
        // SAFETY: pointer into the map value.
        unsafe { (*conn).flags |= flag };
    }
}
