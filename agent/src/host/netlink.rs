//! One netlink dump (request, then datagrams until NLMSG_DONE) on a fresh socket, and the
//! interface addresses of the calling thread's network namespace (RTM_GETADDR). A socket
//! belongs to the namespace its creator was in, so a thread that setns()'d elsewhere dumps
//! that namespace.
use std::{
    io,
    net::IpAddr,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
};

use super::listeners::ip_from;

#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    #[error("netlink socket: {0}")]
    Io(#[from] io::Error),
    #[error("netlink answered with error {0}")]
    Kernel(i32),
    #[error("netlink dump longer than {0} messages; refused")]
    TooLong(usize),
}

pub const NLMSG_HDR: usize = 16;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
/// Messages read from one dump at most: a bound on a namespace with absurdly many sockets.
pub const MAX_DUMP_MESSAGES: usize = 1 << 20;
const RTM_GETADDR: u16 = 22;
const RTM_NEWADDR: u16 = 20;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
/// Addresses kept per namespace; pods have a handful.
pub const MAX_ADDRESSES: usize = 1024;

/// A netlink request header + `body`, asking for a dump.
pub fn dump_request(kind: u16, body: &[u8]) -> Vec<u8> {
    let len = (NLMSG_HDR + body.len()) as u32;
    let mut msg = Vec::with_capacity(len as usize);
    msg.extend_from_slice(&len.to_ne_bytes());
    msg.extend_from_slice(&kind.to_ne_bytes());
    let flags = (libc::NLM_F_REQUEST | libc::NLM_F_DUMP) as u16;
    msg.extend_from_slice(&flags.to_ne_bytes());
    msg.extend_from_slice(&[0; 8]); // seq, pid
    msg.extend_from_slice(body);
    msg
}

/// Sends `request` on a new `protocol` socket and hands each message (type, body) over.
pub fn dump(
    protocol: libc::c_int,
    request: &[u8],
    mut on_message: impl FnMut(u16, &[u8]),
) -> Result<(), NetlinkError> {
    // SAFETY: plain socket(2); the fd is owned right away.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            protocol,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error().into());
    }
    // SAFETY: fd is a fresh, valid descriptor.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: buffer and length are valid; the kernel is the default destination.
    if unsafe { libc::send(fd.as_raw_fd(), request.as_ptr().cast(), request.len(), 0) } < 0 {
        return Err(io::Error::last_os_error().into());
    }
    let mut buf = vec![0u8; 64 * 1024];
    let mut seen = 0;
    loop {
        // SAFETY: buf is writable for its length.
        let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(err.into());
        }
        if parse_datagram(&buf[..n as usize], &mut seen, &mut on_message)? {
            return Ok(());
        }
    }
}

/// One datagram of messages; true once NLMSG_DONE is seen.
pub fn parse_datagram(
    mut data: &[u8],
    seen: &mut usize,
    on_message: &mut impl FnMut(u16, &[u8]),
) -> Result<bool, NetlinkError> {
    while data.len() >= NLMSG_HDR {
        let len = u32::from_ne_bytes(data[0..4].try_into().unwrap()) as usize;
        let kind = u16::from_ne_bytes([data[4], data[5]]);
        if len < NLMSG_HDR || len > data.len() {
            break;
        }
        let body = &data[NLMSG_HDR..len];
        match kind {
            NLMSG_DONE => return Ok(true),
            NLMSG_ERROR if body.len() >= 4 => {
                let errno = i32::from_ne_bytes(body[..4].try_into().unwrap());
                if errno != 0 {
                    return Err(NetlinkError::Kernel(-errno));
                }
            }
            _ => {
                *seen += 1;
                if *seen > MAX_DUMP_MESSAGES {
                    return Err(NetlinkError::TooLong(MAX_DUMP_MESSAGES));
                }
                on_message(kind, body);
            }
        }
        data = &data[((len + 3) & !3).min(data.len())..];
    }
    Ok(false)
}

/// The addresses configured on this namespace's interfaces, IPv4 and IPv6.
pub fn interface_addresses() -> Result<Vec<IpAddr>, NetlinkError> {
    // struct ifaddrmsg: family, prefixlen, flags, scope, index; AF_UNSPEC asks for all.
    let request = dump_request(RTM_GETADDR, &[0u8; 8]);
    let mut addrs = Vec::new();
    dump(libc::NETLINK_ROUTE, &request, |kind, body| {
        if kind == RTM_NEWADDR && addrs.len() < MAX_ADDRESSES {
            addrs.extend(parse_ifaddr(body));
        }
    })?;
    addrs.sort_unstable();
    addrs.dedup();
    Ok(addrs)
}

/// An RTM_NEWADDR body: the local address (IFA_LOCAL, which differs from IFA_ADDRESS only on
/// point-to-point links), else IFA_ADDRESS.
fn parse_ifaddr(body: &[u8]) -> Option<IpAddr> {
    let family = *body.first()?;
    let width = match i32::from(family) {
        libc::AF_INET => 4,
        libc::AF_INET6 => 16,
        _ => return None,
    };
    let (mut local, mut address) = (None, None);
    let mut attrs = body.get(8..)?;
    while attrs.len() >= 4 {
        let len = usize::from(u16::from_ne_bytes([attrs[0], attrs[1]]));
        let kind = u16::from_ne_bytes([attrs[2], attrs[3]]);
        if len < 4 || len > attrs.len() {
            break;
        }
        let payload = &attrs[4..len];
        if payload.len() == width {
            let mut bytes = [0u8; 16];
            bytes[..width].copy_from_slice(payload);
            let ip = ip_from(width == 4, bytes);
            match kind {
                IFA_LOCAL => local = Some(ip),
                IFA_ADDRESS => address = Some(ip),
                _ => {}
            }
        }
        attrs = &attrs[((len + 3) & !3).min(attrs.len())..];
    }
    local.or(address)
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    #[test]
    fn our_namespace_has_loopback() {
        let addrs = interface_addresses().expect("RTM_GETADDR works");
        assert!(
            addrs.contains(&IpAddr::V4(Ipv4Addr::LOCALHOST)),
            "{addrs:?}"
        );
    }

    #[test]
    fn kernel_errors_are_typed() {
        let mut msg = vec![0u8; 20];
        msg[0..4].copy_from_slice(&20u32.to_ne_bytes());
        msg[4..6].copy_from_slice(&NLMSG_ERROR.to_ne_bytes());
        msg[16..20].copy_from_slice(&(-13i32).to_ne_bytes());
        let result = parse_datagram(&msg, &mut 0, &mut |_, _| {});
        assert!(matches!(result, Err(NetlinkError::Kernel(13))));
    }

    #[test]
    fn truncated_and_odd_attributes_are_skipped() {
        // ifaddrmsg for AF_INET, then an IFA_LOCAL of the wrong width and a cut attribute.
        let mut body = vec![libc::AF_INET as u8, 24, 0, 0, 1, 0, 0, 0];
        body.extend_from_slice(&6u16.to_ne_bytes());
        body.extend_from_slice(&IFA_LOCAL.to_ne_bytes());
        body.extend_from_slice(&[10, 0, 0, 0]);
        body.extend_from_slice(&8u16.to_ne_bytes());
        body.extend_from_slice(&IFA_ADDRESS.to_ne_bytes());
        body.extend_from_slice(&[192, 0]);
        assert_eq!(parse_ifaddr(&body), None);
        let mut good = vec![libc::AF_INET as u8, 24, 0, 0, 1, 0, 0, 0];
        good.extend_from_slice(&8u16.to_ne_bytes());
        good.extend_from_slice(&IFA_ADDRESS.to_ne_bytes());
        good.extend_from_slice(&[192, 0, 2, 1]);
        assert_eq!(
            parse_ifaddr(&good),
            Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)))
        );
    }
}
