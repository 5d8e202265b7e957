//! Decodes what the probes recorded about one socket (`ConnectionClosed`, see
//! `vigil_agent_ebpf::connection`) into a `ConnectionRecord`: the connect result and its
//! cause, connect time, time to first response byte and silent closes.
use std::net::SocketAddr;

use serde::Serialize;
use vigil_agent_ebpf::{conn_flags, tcp_state, ConnectionClosed};
use vigil_wire::ConnectResult;

use crate::{clock::MonotonicClock, host::listeners::ip_from};

/// Who ended an established connection; serialized as its label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClosedBy {
    Client,
    Upstream,
    Reset,
}

impl Serialize for ClosedBy {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.label())
    }
}

impl ClosedBy {
    pub fn label(self) -> &'static str {
        match self {
            ClosedBy::Client => "client",
            ClosedBy::Upstream => "upstream",
            ClosedBy::Reset => "reset",
        }
    }
}

/// One finished connection to a watched upstream, as `vigil-agent trace` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct ConnectionRecord {
    /// Wall-clock time of the connect() call (Unix ns), printed as `ts` in RFC 3339 UTC.
    #[serde(rename = "ts", serialize_with = "crate::clock::serialize_rfc3339")]
    pub unix_ns: i128,
    pub pid: u32,
    pub tid: u32,
    pub comm: String,
    pub src: SocketAddr,
    pub dst: SocketAddr,
    #[serde(serialize_with = "serialize_result")]
    pub result: ConnectResult,
    /// `sk_err` when the kernel recorded one (111, 110, 104, 113, ...).
    pub errno: Option<i32>,
    /// Handshake time for `ok`; time until the connect failed or was abandoned otherwise.
    pub connect_ms: f64,
    /// From the request's first send to the response's first byte; null when none came.
    pub first_byte_ms: Option<f64>,
    /// The client sent a request and closed before any response byte (a read timeout).
    pub silent_close: bool,
    pub syn_retransmits: u16,
    pub retransmits: u32,
    pub reset: bool,
    pub closed_by: Option<ClosedBy>,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    /// connect() to close.
    pub duration_ms: f64,
}

/// Classify a connect that never reached ESTABLISHED.
///
/// sk_err is set before the socket moves to CLOSE when the kernel gives up (RST, ICMP, SYN
/// retries exhausted). sk_err 0 means the application closed the socket while SYNs were
/// unanswered: nginx abandoning at `proxy_connect_timeout`, i.e. a timeout.
pub fn failed_connect_result(sk_err: i32, flags: u32) -> ConnectResult {
    match ConnectResult::from_errno(sk_err) {
        Some(result) => result,
        // Unknown sk_err offset: an RST answering a SYN is a refusal.
        None if flags & conn_flags::RESET_RECEIVED != 0 => ConnectResult::Refused,
        None if sk_err == 0 || sk_err == -1 => ConnectResult::Timeout,
        None => ConnectResult::Error,
    }
}

/// `trace` prints the result as its metric label.
fn serialize_result<S: serde::Serializer>(r: &ConnectResult, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(r.label())
}

fn millis(from_ns: u64, to_ns: u64) -> f64 {
    to_ns.saturating_sub(from_ns) as f64 / 1e6
}

fn addr(family: u16, bytes: [u8; 16], port: u16) -> SocketAddr {
    SocketAddr::new(ip_from(family == libc::AF_INET as u16, bytes), port)
}

impl ConnectionRecord {
    pub fn from_event(ev: &ConnectionClosed, clock: &MonotonicClock) -> Self {
        let c = &ev.conn;
        let established = c.flags & conn_flags::ESTABLISHED != 0;
        let reset = c.flags & conn_flags::RESET_RECEIVED != 0;
        let result = if established && ev.old_state != tcp_state::SYN_SENT {
            ConnectResult::Ok
        } else {
            failed_connect_result(ev.sk_err, c.flags)
        };
        let closed_by = established.then_some(if reset {
            ClosedBy::Reset
        } else if c.flags & conn_flags::UPSTREAM_CLOSED_FIRST != 0 {
            ClosedBy::Upstream
        } else {
            ClosedBy::Client
        });
        let request_ns = if c.first_send_ns != 0 {
            c.first_send_ns
        } else {
            c.established_ns
        };
        let first_byte_ms =
            (c.first_byte_ns != 0 && established).then(|| millis(request_ns, c.first_byte_ns));
        let silent_close =
            closed_by == Some(ClosedBy::Client) && c.first_send_ns != 0 && c.first_byte_ns == 0;
        let connect_end = if result == ConnectResult::Ok {
            c.established_ns
        } else {
            ev.closed_ns
        };
        ConnectionRecord {
            unix_ns: clock.unix_ns(c.connect_ns),
            pid: c.tgid,
            tid: c.pid,
            comm: super::exit::comm_str(&c.comm),
            src: addr(ev.family, ev.saddr, ev.sport),
            dst: addr(ev.family, ev.daddr, c.dport),
            result,
            errno: (ev.sk_err > 0).then_some(ev.sk_err),
            connect_ms: millis(c.connect_ns, connect_end),
            first_byte_ms,
            silent_close,
            syn_retransmits: c.syn_retransmits,
            retransmits: c.retransmits,
            reset,
            closed_by,
            bytes_sent: ev.bytes_sent,
            bytes_received: ev.bytes_received,
            duration_ms: millis(c.connect_ns, ev.closed_ns),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_agent_ebpf::Connection;

    fn event(flags: u32, old_state: i32, sk_err: i32) -> ConnectionClosed {
        let mut daddr = [0u8; 16];
        daddr[..4].copy_from_slice(&[127, 0, 0, 1]);
        ConnectionClosed {
            conn: Connection {
                connect_ns: 1_000_000,
                established_ns: if flags & conn_flags::ESTABLISHED != 0 {
                    1_500_000
                } else {
                    0
                },
                tgid: 42,
                pid: 43,
                comm: *b"nginx\0\0\0\0\0\0\0\0\0\0\0",
                dport: 8084,
                flags,
                ..Connection::default()
            },
            daddr,
            saddr: daddr,
            family: libc::AF_INET as u16,
            sport: 40000,
            closed_ns: 61_000_000,
            sk_err,
            old_state,
            ..ConnectionClosed::default()
        }
    }

    #[test]
    fn failed_connects_are_classified_by_errno() {
        let clock = MonotonicClock::now();
        let rec = |flags, err| ConnectionRecord::from_event(&event(flags, 2, err), &clock).result;
        assert_eq!(rec(conn_flags::RESET_RECEIVED, 111), ConnectResult::Refused);
        assert_eq!(rec(conn_flags::RESET_RECEIVED, -1), ConnectResult::Refused);
        assert_eq!(rec(0, 110), ConnectResult::Timeout);
        assert_eq!(rec(0, 0), ConnectResult::Timeout, "abandoned by nginx");
        assert_eq!(rec(0, 113), ConnectResult::Unreachable);
        assert_eq!(rec(0, 101), ConnectResult::Unreachable);
        assert_eq!(rec(0, 12), ConnectResult::Error);
    }

    #[test]
    fn silent_close_needs_a_request_and_no_byte() {
        let clock = MonotonicClock::now();
        let flags = conn_flags::ESTABLISHED | conn_flags::CLIENT_CLOSED_FIRST;
        let mut ev = event(flags, tcp_state::CLOSE_WAIT, 0);
        ev.conn.first_send_ns = 1_600_000;
        let r = ConnectionRecord::from_event(&ev, &clock);
        assert_eq!(r.result, ConnectResult::Ok);
        assert!(r.silent_close);
        assert_eq!(r.first_byte_ms, None);
        assert_eq!(r.connect_ms, 0.5);
        assert_eq!(r.dst.to_string(), "127.0.0.1:8084");
        assert_eq!(r.comm, "nginx");

        ev.conn.first_byte_ns = 201_600_000;
        let r = ConnectionRecord::from_event(&ev, &clock);
        assert!(!r.silent_close);
        assert_eq!(r.first_byte_ms, Some(200.0));

        let mut no_request = event(flags, tcp_state::CLOSE_WAIT, 0);
        no_request.conn.first_send_ns = 0;
        assert!(!ConnectionRecord::from_event(&no_request, &clock).silent_close);
    }

    #[test]
    fn reset_mid_response_is_not_a_silent_close() {
        let clock = MonotonicClock::now();
        let flags = conn_flags::ESTABLISHED | conn_flags::RESET_RECEIVED;
        let mut ev = event(flags, tcp_state::ESTABLISHED, 104);
        ev.conn.first_send_ns = 1_600_000;
        let r = ConnectionRecord::from_event(&ev, &clock);
        assert_eq!(r.closed_by, Some(ClosedBy::Reset));
        assert!(r.reset && !r.silent_close);
    }
}
