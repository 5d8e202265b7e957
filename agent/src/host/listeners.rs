//! Listening TCP sockets with their accept queues, from NETLINK_SOCK_DIAG (what `ss -lt`
//! uses): for a listener, rqueue is the current accept queue and wqueue its backlog limit,
//! which /proc/net/tcp does not show.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::netlink::{self, NetlinkError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    pub addr: SocketAddr,
    pub inode: u64,
    pub accept_queue: u32,
    pub backlog: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum ListenerError {
    #[error("sock_diag: {0}")]
    Netlink(#[from] NetlinkError),
}

const SOCK_DIAG_BY_FAMILY: u16 = 20;
const TCP_LISTEN: u32 = 10;
/// inet_diag_msg: family, state, timer, retrans, sockid (48 bytes), expires, rqueue, wqueue,
/// uid, inode.
const DIAG_MSG_LEN: usize = 72;

/// All TCP listeners, IPv4 and IPv6, of the calling thread's network namespace.
pub fn tcp_listeners() -> Result<Vec<Listener>, ListenerError> {
    tcp_listeners_where(|_| true)
}

/// The TCP listeners whose port `keep` wants (the rest is never kept: a bound on memory).
pub fn tcp_listeners_where(keep: impl Fn(u16) -> bool) -> Result<Vec<Listener>, ListenerError> {
    let mut all = Vec::new();
    for family in [libc::AF_INET as u8, libc::AF_INET6 as u8] {
        dump(&request(family), |kind, body| {
            if kind == SOCK_DIAG_BY_FAMILY && body.len() >= DIAG_MSG_LEN {
                let listener = parse_diag_msg(body, family);
                if keep(listener.addr.port()) {
                    all.push(listener);
                }
            }
        })?;
    }
    Ok(all)
}

fn dump(request: &[u8], on_message: impl FnMut(u16, &[u8])) -> Result<(), ListenerError> {
    Ok(netlink::dump(libc::NETLINK_SOCK_DIAG, request, on_message)?)
}

fn request(family: u8) -> Vec<u8> {
    // inet_diag_req_v2: family, protocol, ext, pad, states, then a zeroed sockid.
    let mut body = vec![family, libc::IPPROTO_TCP as u8, 0, 0];
    body.extend_from_slice(&(1u32 << TCP_LISTEN).to_ne_bytes());
    body.resize(56, 0);
    netlink::dump_request(SOCK_DIAG_BY_FAMILY, &body)
}

/// An address as the kernel hands it over: IPv4 in the first 4 of 16 bytes.
pub fn ip_from(v4: bool, bytes: [u8; 16]) -> IpAddr {
    if v4 {
        IpAddr::V4(Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]))
    } else {
        IpAddr::V6(Ipv6Addr::from(bytes))
    }
}

fn parse_diag_msg(body: &[u8], family: u8) -> Listener {
    let u32_at = |at: usize| u32::from_ne_bytes(body[at..at + 4].try_into().unwrap());
    // sockid starts at 4: sport (be16), dport (be16), src[16], dst[16], if, cookie[2].
    let port = u16::from_be_bytes([body[4], body[5]]);
    let src: [u8; 16] = body[8..24].try_into().unwrap();
    let ip = ip_from(family == libc::AF_INET as u8, src);
    Listener {
        addr: SocketAddr::new(ip, port),
        accept_queue: u32_at(56),
        backlog: u32_at(60),
        inode: u64::from(u32_at(68)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sees_our_own_listener_and_its_queue() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        // Two connects nobody accepts fill the accept queue.
        let _a = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let _b = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let all = tcp_listeners().expect("sock_diag works");
        let mine = all
            .iter()
            .find(|l| l.addr.port() == port)
            .expect("our listener");
        assert_eq!(mine.addr.ip(), IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert_eq!(mine.accept_queue, 2);
        assert_eq!(mine.backlog, 128, "std's listen backlog");
        assert!(mine.inode > 0);
    }
}
