//! Request/response timing on tracked sockets: the first send (`tcp_sendmsg_locked`, as a raw
//! tracepoint because its classic format has no socket) and the first received segment carrying
//! data (`tcp/tcp_probe`, `data_len > 0`). No first byte before the client closes = silent close.
use aya_ebpf::{
    macros::{raw_tracepoint, tracepoint},
    programs::{RawTracePointContext, TracePointContext},
};

use vigil_agent_ebpf::fields::tcp_probe as tp;

use crate::maps::{now_ns, tracked};


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

#[tracepoint(category = "tcp", name = "tcp_probe")]
pub fn tcp_probe(ctx: TracePointContext) -> u32 {
    // SAFETY: offsets from the tracepoint's format file.
    let Ok(skaddr) = (unsafe { ctx.read_at::<u64>(tp::SKADDR) }) else {
        return 0;
    };
    let Some(conn) = tracked(skaddr) else {
        return 0;
    };
    // SAFETY: pointer into the map value.
    let conn = unsafe { &mut *conn };
    if conn.first_byte_ns == 0 && unsafe { ctx.read_at::<u16>(tp::DATA_LEN) }.unwrap_or(0) > 0 {
        conn.first_byte_ns = now_ns();
    }
    0
}
