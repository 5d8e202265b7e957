//! A Loki stand-in for load: it answers 204 to every push and tells a 3.x version from
//! buildinfo (so the collector sends structured metadata, as to a current Loki), counting
//! pushes, bytes and the CPU its threads use. It reads every body whole but does not decode
//! it: the lines Loki acknowledged are counted by the collector
//! (`vigil_loki_lines_sent_total`), which the bench compares with what the agents sent.
use std::{
    io::{BufReader, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use super::http1::{read_body, read_head, thread_cpu};

const PUSH_PATH: &str = "/loki/api/v1/push";
const BUILDINFO_PATH: &str = "/loki/api/v1/status/buildinfo";

#[derive(Default)]
pub struct SinkCounts {
    pub pushes: AtomicU64,
    pub bytes: AtomicU64,
    /// CPU of the connection threads, in microseconds.
    pub cpu_us: AtomicU64,
}

pub struct LokiSink {
    pub addr: SocketAddr,
    pub counts: Arc<SinkCounts>,
}

impl LokiSink {
    /// Listens on 127.0.0.1 (a free port); a thread per connection, for the process's life.
    pub fn start() -> std::io::Result<LokiSink> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let counts = Arc::new(SinkCounts::default());
        let shared = counts.clone();
        std::thread::Builder::new()
            .name("loki-sink".into())
            .spawn(move || {
                for stream in listener.incoming().flatten() {
                    let counts = shared.clone();
                    let _ = std::thread::Builder::new()
                        .name("loki-conn".into())
                        .stack_size(256 << 10)
                        .spawn(move || serve(stream, &counts));
                }
            })?;
        Ok(LokiSink { addr, counts })
    }
}

/// Answers the connection's requests until it closes; its CPU goes to `counts.cpu_us`.
fn serve(stream: TcpStream, counts: &SinkCounts) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(300)));
    let _ = stream.set_nodelay(true);
    let mut reader = BufReader::new(stream);
    let mut cpu = thread_cpu();
    while let Ok(Some(head)) = read_head(&mut reader) {
        let Ok(body) = read_body(&mut reader, &head) else {
            break;
        };
        let mut parts = head.start_line.split(' ');
        let answer: &[u8] = match (parts.next(), parts.next()) {
            (Some("POST"), Some(PUSH_PATH)) => {
                counts.pushes.fetch_add(1, Ordering::Relaxed);
                counts.bytes.fetch_add(body.len() as u64, Ordering::Relaxed);
                b"HTTP/1.1 204 No Content\r\n\r\n"
            }
            (Some("GET"), Some(BUILDINFO_PATH)) => {
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 20\r\n\r\n{\"version\":\"3.4.2\"}\n"
            }
            _ => b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n",
        };
        if reader.get_mut().write_all(answer).is_err() {
            break;
        }
        let now = thread_cpu();
        counts
            .cpu_us
            .fetch_add((now - cpu).as_micros() as u64, Ordering::Relaxed);
        cpu = now;
    }
}
