//! vigil's kernel side: tracepoint programs only (this kernel has no kprobes or fentry).
//!
//! Data path: `connect.rs` follows a socket to a watched port from SYN_SENT to CLOSE,
//! `exchange.rs` stamps the request's first send and the response's first byte,
//! `owner.rs` reports the exit of upstream owners. One `ConnectionClosed` record per socket
//! goes to a ring buffer submitted without wakeup: the agent polls it, so a connect never
//! wakes userspace.
#![no_std]
#![feature(core_intrinsics)]
#![allow(internal_features)]
#![no_main]

mod connect;
mod exchange;
mod maps;
mod owner;
mod read;
mod socket_table;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
