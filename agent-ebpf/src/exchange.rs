//! Request/response timing on tracked sockets: the first send (`tcp_sendmsg_locked`, as a raw
//! tracepoint because its classic format has no socket) and the first response byte
//! (raw `sk_data_ready` with `bytes_received > 0`, or on older kernels the classic
//! `tcp/tcp_probe` with `data_len > 0`). No first byte before the client closes = silent close.
use aya_ebpf::{
    macros::{raw_tracepoint, tracepoint},
    programs::{RawTracePointContext, TracePointContext},
};
use vigil_agent_ebpf::{fields::tcp_probe as tp, setting};

use crate::{
    maps::{now_ns, tracked},
    read::{kernel_field, record},
};

#[raw_tracepoint(tracepoint = "tcp_sendmsg_locked")]
pub fn tcp_sendmsg_locked(ctx: RawTracePointContext) -> i32 {
    // TP_PROTO(const struct sock *sk, ...): args[0] is the socket.
    let skaddr: u64 = ctx.arg(0);
    if let Some(conn) = tracked(skaddr) {
        // SAFETY: pointer into the map value.
        let conn = unsafe { &mut *conn };
        if conn.first_send_ns == 0 {
            conn.first_send_ns = now_ns();
        }
    }
    0
}

#[raw_tracepoint(tracepoint = "sk_data_ready")]
pub fn sk_data_ready(ctx: RawTracePointContext) -> i32 {
    // TP_PROTO(const struct sock *sk)
    let skaddr: u64 = ctx.arg(0);
    let Some(conn) = tracked(skaddr) else {
        return 0;
    };
    // SAFETY: pointer into the map value.
    let conn = unsafe { &mut *conn };
    if conn.first_byte_ns != 0 {
        return 0;
    }
    // A bare FIN wakes readers too: only bytes actually received count.
    // SAFETY: the socket of a tracked connection; offset from BTF.
    let received = unsafe { kernel_field::<u64>(skaddr, setting::TCP_BYTES_RECEIVED) };
    if received.unwrap_or(0) > 0 {
        conn.first_byte_ns = now_ns();
    }
    0
}

#[tracepoint(category = "tcp", name = "tcp_probe")]
pub fn tcp_probe(ctx: TracePointContext) -> u32 {
    // SAFETY: offsets from the tracepoint's format file.
    let skaddr: u64 = unsafe { record(&ctx, tp::SKADDR) };
    let Some(conn) = tracked(skaddr) else {
        return 0;
    };
    // SAFETY: pointer into the map value.
    let conn = unsafe { &mut *conn };
    if conn.first_byte_ns == 0 && unsafe { record::<u16>(&ctx, tp::DATA_LEN) } > 0 {
        conn.first_byte_ns = now_ns();
    }
    0
}
