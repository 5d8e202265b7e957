//! A small HTTP/1.0 client for loopback servers the xtasks start or talk to: nginx (with a
//! `Host` header, to pick a `server_name`) and the collector's JSON and metrics. HTTP/1.0
//! and one request per connection, so every answer ends at EOF, never chunked.
use std::{
    io::{Read, Write},
    net::{Ipv4Addr, SocketAddr, TcpStream},
    time::Duration,
};

/// Largest response read; the collector's alert list and /metrics stay far below it.
const MAX_RESPONSE_BYTES: u64 = 32 << 20;

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("127.0.0.1:{port}{path}: {source}")]
    Io {
        port: u16,
        path: String,
        source: std::io::Error,
    },
    #[error("127.0.0.1:{port}{path}: answer over {MAX_RESPONSE_BYTES} bytes")]
    TooLarge { port: u16, path: String },
    #[error("127.0.0.1:{port}{path}: no HTTP status line in the answer")]
    NoStatus { port: u16, path: String },
}

pub struct Response {
    pub status: u16,
    pub body: String,
}

/// `GET path` on 127.0.0.1:`port`; `host` goes in the `Host` header (nginx picks the
/// server block by it). `timeout` bounds the connect and each read.
pub fn get(port: u16, path: &str, host: &str, timeout: Duration) -> Result<Response, HttpError> {
    let io = |source| HttpError::Io {
        port,
        path: path.to_owned(),
        source,
    };
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream = TcpStream::connect_timeout(&addr, timeout).map_err(io)?;
    stream.set_read_timeout(Some(timeout)).map_err(io)?;
    stream.set_write_timeout(Some(timeout)).map_err(io)?;
    let request = format!("GET {path} HTTP/1.0\r\nHost: {host}\r\nUser-Agent: vigil-xtask\r\n\r\n");
    stream.write_all(request.as_bytes()).map_err(io)?;
    let mut raw = Vec::new();
    stream
        .take(MAX_RESPONSE_BYTES + 1)
        .read_to_end(&mut raw)
        .map_err(io)?;
    if raw.len() as u64 > MAX_RESPONSE_BYTES {
        return Err(HttpError::TooLarge {
            port,
            path: path.to_owned(),
        });
    }
    parse(&raw).ok_or_else(|| HttpError::NoStatus {
        port,
        path: path.to_owned(),
    })
}

/// Status line and body of a whole HTTP/1.x answer.
fn parse(raw: &[u8]) -> Option<Response> {
    let text = String::from_utf8_lossy(raw);
    let status = text
        .strip_prefix("HTTP/1.")?
        .get(2..5)
        .and_then(|s| s.parse().ok())?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Some(Response { status, body })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_and_body_of_an_answer() {
        let r = parse(b"HTTP/1.1 504 Gateway Time-out\r\nServer: nginx\r\n\r\n<html>").unwrap();
        assert_eq!((r.status, r.body.as_str()), (504, "<html>"));
        let r = parse(b"HTTP/1.0 200 OK\r\n\r\n").unwrap();
        assert_eq!((r.status, r.body.as_str()), (200, ""));
        assert!(parse(b"SSH-2.0-OpenSSH").is_none());
        assert!(parse(b"").is_none());
    }
}
