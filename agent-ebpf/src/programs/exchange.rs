//! Request/response timing on tracked sockets: the first send (`tcp_sendmsg_locked`, whose
//! classic format has no socket: BTF-typed, or raw beside the classic state program) and the
//! first response byte (the first segment with payload in `tcp/tcp_probe`: BTF-typed, raw,
//! or classic with its `data_len` when BTF offsets are missing). No first byte before the
//! client closes = silent close. Table keys as in `connect.rs`.
use aya_ebpf::{
    helpers::bpf_probe_read_kernel,
    macros::{btf_tracepoint, raw_tracepoint, tracepoint},
    programs::{BtfTracePointContext, RawTracePointContext, TracePointContext},
};
use vigil_agent_ebpf::{layouts::tcp_probe as tp, offsets};

use crate::{
    maps::now_ns,
    read::{kernel_field, record},
    socket_table::{tracked, typed_key},
};

#[btf_tracepoint(function = "tcp_sendmsg_locked")]
pub fn tcp_sendmsg_locked_btf(ctx: BtfTracePointContext) -> i32 {
    // TP_PROTO(const struct sock *sk, ...)
    let sk: u64 = ctx.arg(0);
    if sk != 0 {
        on_send(typed_key(sk));
    }
    0
}

#[raw_tracepoint(tracepoint = "tcp_sendmsg_locked")]
pub fn tcp_sendmsg_locked(ctx: RawTracePointContext) -> i32 {
    on_send(ctx.arg(0));
    0
}

#[inline(always)]
fn on_send(key: u64) {
    if let Some(socket) = tracked(key) {
        let conn = socket.conn;
        if conn.first_send_ns == 0 {
            conn.first_send_ns = now_ns();
        }
    }
}

// TP_PROTO(struct sock *sk, const struct sk_buff *skb), at the top of tcp_rcv_established:
// every segment of an established socket, but never a handshake or a listener's wakeup, so
// connect() itself pays nothing here.

#[btf_tracepoint(function = "tcp_probe")]
pub fn tcp_probe_btf(ctx: BtfTracePointContext) -> i32 {
    let sk: u64 = ctx.arg(0);
    if sk != 0 {
        on_segment(typed_key(sk), ctx.arg(1));
    }
    0
}

#[raw_tracepoint(tracepoint = "tcp_probe")]
pub fn tcp_probe_raw(ctx: RawTracePointContext) -> i32 {
    on_segment(ctx.arg(0), ctx.arg(1));
    0
}

#[inline(always)]
fn on_segment(key: u64, skb: u64) {
    let Some(socket) = tracked(key) else {
        return;
    };
    let conn = socket.conn;
    if conn.first_byte_ns == 0 && unsafe { segment_carries_data(skb) } {
        conn.first_byte_ns = now_ns();
    }
}

/// `skb->len` exceeds the TCP header (`skb->data` points at it here): the segment has
/// payload, not only an ACK or a FIN.
///
/// SAFETY: `skb` must be the `struct sk_buff *` of `tcp_rcv_established`.
#[inline(always)]
unsafe fn segment_carries_data(skb: u64) -> bool {
    let (Some(len), Some(header)) = (
        unsafe { kernel_field::<u32>(skb, offsets::SKB_LEN) },
        unsafe { kernel_field::<u64>(skb, offsets::SKB_DATA) },
    ) else {
        return false;
    };
    // Byte 12 of the TCP header: data offset in 32-bit words, in the high nibble.
    let doff = unsafe { bpf_probe_read_kernel((header + 12) as *const u8) }.unwrap_or(0) >> 4;
    len > u32::from(doff) * 4
}

#[tracepoint(category = "tcp", name = "tcp_probe")]
pub fn tcp_probe(ctx: TracePointContext) -> u32 {
    // SAFETY: offsets from the tracepoint's format file.
    let skaddr: u64 = unsafe { record(&ctx, tp::SKADDR) };
    let Some(socket) = tracked(skaddr) else {
        return 0;
    };
    let conn = socket.conn;
    if conn.first_byte_ns == 0 && unsafe { record::<u16>(&ctx, tp::DATA_LEN) } > 0 {
        conn.first_byte_ns = now_ns();
    }
    0
}
