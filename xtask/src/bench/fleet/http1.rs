//! HTTP/1.1 over blocking TcpStreams, kept alive, for the synthetic agents and the scraper
//! (client) and the Loki stand-in (server): a head read line by line (bounded), a body by
//! Content-Length (bounded). Chunked bodies are refused: neither hyper's fixed-size answers
//! nor the collector's pushes use them.
use std::{
    io::{self, BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpStream},
    time::Duration,
};

const MAX_HEAD_BYTES: u64 = 16 << 10;
/// /metrics of a few thousand nodes is tens of MB; an ingest answer a line.
const MAX_BODY_BYTES: usize = 512 << 20;

#[derive(Debug, thiserror::Error)]
pub enum Http1Error {
    #[error(transparent)]
    Io(#[from] io::Error),
    #[error("connection closed in the middle of a message")]
    Truncated,
    #[error("malformed HTTP message: {0}")]
    Malformed(String),
}

/// A message's start line and what frames its body.
pub struct Head {
    pub start_line: String,
    pub content_length: usize,
    /// `Connection: close`: the peer closes after this message.
    pub close: bool,
}

/// The next message's head; None at a clean end of the connection (before any byte).
pub fn read_head(r: &mut impl BufRead) -> Result<Option<Head>, Http1Error> {
    let mut budget = MAX_HEAD_BYTES;
    let mut line = String::new();
    let mut next_line = |line: &mut String| -> Result<usize, Http1Error> {
        line.clear();
        let n = r.by_ref().take(budget).read_line(line)?;
        budget -= n as u64;
        if n > 0 && !line.ends_with('\n') {
            return Err(if budget == 0 {
                Http1Error::Malformed(format!("head over {MAX_HEAD_BYTES} bytes"))
            } else {
                Http1Error::Truncated
            });
        }
        Ok(n)
    };
    if next_line(&mut line)? == 0 {
        return Ok(None);
    }
    let mut head = Head {
        start_line: line.trim_end().to_owned(),
        content_length: 0,
        close: false,
    };
    loop {
        if next_line(&mut line)? == 0 {
            return Err(Http1Error::Truncated);
        }
        let header = line.trim_end();
        if header.is_empty() {
            return Ok(Some(head));
        }
        let Some((name, value)) = header.split_once(':') else {
            return Err(Http1Error::Malformed(format!("header line {header:?}")));
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            head.content_length = value
                .parse()
                .ok()
                .filter(|n| *n <= MAX_BODY_BYTES)
                .ok_or_else(|| Http1Error::Malformed(format!("Content-Length {value:?}")))?;
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(Http1Error::Malformed(format!("Transfer-Encoding {value}")));
        } else if name.eq_ignore_ascii_case("connection") {
            head.close = value.eq_ignore_ascii_case("close");
        }
    }
}

/// The body that follows `head`.
pub fn read_body(r: &mut impl Read, head: &Head) -> Result<Vec<u8>, Http1Error> {
    let mut body = vec![0; head.content_length];
    r.read_exact(&mut body).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => Http1Error::Truncated,
        _ => Http1Error::Io(e),
    })?;
    Ok(body)
}

pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

/// One kept-alive connection to a server on loopback.
pub struct Client {
    reader: BufReader<TcpStream>,
    host: String,
    closed: bool,
}

impl Client {
    /// `timeout` bounds the connect and every read and write.
    pub fn connect(addr: SocketAddr, timeout: Duration) -> io::Result<Client> {
        let stream = TcpStream::connect_timeout(&addr, timeout)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        stream.set_nodelay(true)?;
        Ok(Client {
            reader: BufReader::with_capacity(8 << 10, stream),
            host: addr.to_string(),
            closed: false,
        })
    }

    /// Whether the server said it closes the connection: the next request needs a new one.
    pub fn closed(&self) -> bool {
        self.closed
    }

    /// `method path` with `headers` (each ending in CRLF) and `body`; the whole answer.
    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &str,
        body: &[u8],
    ) -> Result<Response, Http1Error> {
        let mut request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\n{headers}Content-Length: {}\r\n\r\n",
            self.host,
            body.len()
        )
        .into_bytes();
        // One write: head and body leave in the same segments, as a client's buffered write.
        request.extend_from_slice(body);
        self.reader.get_mut().write_all(&request)?;
        let head = read_head(&mut self.reader)?.ok_or(Http1Error::Truncated)?;
        let status = head
            .start_line
            .strip_prefix("HTTP/1.")
            .and_then(|s| s.get(2..5))
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| Http1Error::Malformed(format!("status line {:?}", head.start_line)))?;
        let body = read_body(&mut self.reader, &head)?;
        self.closed = head.close;
        Ok(Response { status, body })
    }
}

/// Thread CPU time, for what one helper thread costs (CLOCK_THREAD_CPUTIME_ID).
pub fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid timespec for the calling thread's clock.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_and_bodies_are_framed_by_content_length() {
        let raw =
            b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\nConnection: close\r\n\r\naccepted\nHTTP/1.1";
        let mut r = BufReader::new(&raw[..]);
        let head = read_head(&mut r).unwrap().unwrap();
        assert_eq!(head.start_line, "HTTP/1.1 200 OK");
        assert!(head.close);
        assert_eq!(read_body(&mut r, &head).unwrap(), b"accepted\n");
        assert!(matches!(read_head(&mut r), Err(Http1Error::Truncated)));
        assert!(read_head(&mut BufReader::new(&b""[..])).unwrap().is_none());
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert!(matches!(
            read_head(&mut BufReader::new(&chunked[..])),
            Err(Http1Error::Malformed(_))
        ));
    }
}
