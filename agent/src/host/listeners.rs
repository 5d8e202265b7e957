//! Listening TCP sockets with their accept queues, from NETLINK_SOCK_DIAG (what `ss -lt`
//! uses): for a listener, rqueue is the current accept queue and wqueue its backlog limit,
//! which /proc/net/tcp does not show.
use std::{
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    pub addr: SocketAddr,
    pub inode: u64,
    pub accept_queue: u32,
    pub backlog: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum ListenerError {
    #[error("sock_diag netlink: {0}")]
    Netlink(#[from] io::Error),
    #[error("sock_diag answered with error {0}")]
    Kernel(i32),
}

const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const TCP_LISTEN: u32 = 10;
const NLMSG_HDR: usize = 16;
/// inet_diag_msg: family, state, timer, retrans, sockid (48 bytes), expires, rqueue, wqueue,
/// uid, inode.
const DIAG_MSG_LEN: usize = 72;

/// All TCP listeners, IPv4 and IPv6.
pub fn tcp_listeners() -> Result<Vec<Listener>, ListenerError> {
    let mut all = dump(libc::AF_INET as u8)?;
    all.extend(dump(libc::AF_INET6 as u8)?);
    Ok(all)
}

fn request(family: u8) -> Vec<u8> {
    let len = (NLMSG_HDR + 56) as u32;
    let mut msg = Vec::with_capacity(len as usize);
    msg.extend_from_slice(&len.to_ne_bytes());
    msg.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    let flags = (libc::NLM_F_REQUEST | libc::NLM_F_DUMP) as u16;
    msg.extend_from_slice(&flags.to_ne_bytes());
    msg.extend_from_slice(&[0; 8]); // seq, pid
                                    // inet_diag_req_v2: family, protocol, ext, pad, states, then a zeroed sockid.
    msg.extend_from_slice(&[family, libc::IPPROTO_TCP as u8, 0, 0]);
    msg.extend_from_slice(&(1u32 << TCP_LISTEN).to_ne_bytes());
    msg.resize(len as usize, 0);
    msg
}

fn dump(family: u8) -> Result<Vec<Listener>, ListenerError> {
    // SAFETY: plain socket(2); the fd is owned right away.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            libc::NETLINK_SOCK_DIAG,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error().into());
    }
    // SAFETY: fd is a fresh, valid descriptor.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let req = request(family);
    // SAFETY: buffer and length are valid; the kernel is the default destination.
    if unsafe { libc::send(fd.as_raw_fd(), req.as_ptr().cast(), req.len(), 0) } < 0 {
        return Err(io::Error::last_os_error().into());
    }
    let mut listeners = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        // SAFETY: buf is writable for its length.
        let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            return Err(io::Error::last_os_error().into());
        }
        if parse_messages(&buf[..n as usize], family, &mut listeners)? {
            return Ok(listeners);
        }
    }
}

/// Parses one datagram of netlink messages; true once NLMSG_DONE is seen.
fn parse_messages(
    mut data: &[u8],
    family: u8,
    out: &mut Vec<Listener>,
) -> Result<bool, ListenerError> {
    let u32_at = |b: &[u8], at: usize| u32::from_ne_bytes(b[at..at + 4].try_into().unwrap());
    while data.len() >= NLMSG_HDR {
        let len = u32_at(data, 0) as usize;
        let kind = u16::from_ne_bytes([data[4], data[5]]);
        if len < NLMSG_HDR || len > data.len() {
            break;
        }
        let body = &data[NLMSG_HDR..len];
        match kind {
            NLMSG_DONE => return Ok(true),
            NLMSG_ERROR => {
                let errno = i32::from_ne_bytes(body[..4].try_into().unwrap());
                if errno != 0 {
                    return Err(ListenerError::Kernel(-errno));
                }
            }
            SOCK_DIAG_BY_FAMILY if body.len() >= DIAG_MSG_LEN => {
                out.push(parse_diag_msg(body, family));
            }
            _ => {}
        }
        data = &data[(len + 3) & !3..];
    }
    Ok(false)
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

    #[test]
    fn kernel_errors_are_typed() {
        let mut msg = vec![0u8; 20];
        msg[0..4].copy_from_slice(&20u32.to_ne_bytes());
        msg[4..6].copy_from_slice(&NLMSG_ERROR.to_ne_bytes());
        msg[16..20].copy_from_slice(&(-13i32).to_ne_bytes());
        assert!(matches!(
            parse_messages(&msg, 2, &mut Vec::new()),
            Err(ListenerError::Kernel(13))
        ));
    }
}
