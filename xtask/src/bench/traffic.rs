//! Load for the agent benchmark: paced HTTP-like exchanges over many upstream ports (connect,
//! a request, a response, close), and nginx access-log lines appended to a file the agent
//! follows. Closed loop, as in connect.rs: each connection is accepted by the same thread
//! before the next connect, so no accept queue overflows into SYN retransmits.
use std::{
    fs::OpenOptions,
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    os::fd::AsRawFd,
    path::PathBuf,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

const REQUEST: &[u8] = b"GET /api/items?page=2 HTTP/1.1\r\nHost: app\r\n\r\n";
const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

/// Background load, stopped (and joined) by `stop`.
pub(super) struct Load {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<anyhow::Result<()>>>,
    pub exchanges: Arc<AtomicU64>,
    pub log_lines: Arc<AtomicU64>,
}

impl Load {
    pub(super) fn new() -> Load {
        Load {
            stop: Arc::new(AtomicBool::new(false)),
            threads: Vec::new(),
            exchanges: Arc::new(AtomicU64::new(0)),
            log_lines: Arc::new(AtomicU64::new(0)),
        }
    }

    /// `rate` exchanges a second, round robin over `listeners`.
    pub(super) fn exchanges(&mut self, listeners: Arc<Vec<TcpListener>>, rate: u64) {
        let (stop, done) = (self.stop.clone(), self.exchanges.clone());
        self.threads.push(std::thread::spawn(move || {
            let start = Instant::now();
            let interval = Duration::from_nanos(1_000_000_000 / rate);
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let due = start + interval * i as u32;
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
                exchange(&listeners[(i % listeners.len() as u64) as usize])?;
                done.fetch_add(1, Ordering::Relaxed);
                i += 1;
            }
            Ok(())
        }));
    }

    /// `rate` combined-format lines a second appended to `path`, in tenths of a second.
    pub(super) fn access_log(&mut self, path: PathBuf, rate: u64) {
        let (stop, done) = (self.stop.clone(), self.log_lines.clone());
        self.threads.push(std::thread::spawn(move || {
            let mut file = OpenOptions::new().append(true).create(true).open(&path)?;
            let start = Instant::now();
            let mut written = 0u64;
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(100));
                let due = (start.elapsed().as_secs_f64() * rate as f64) as u64;
                let mut chunk = String::new();
                for n in written..due {
                    chunk += &access_line(n);
                }
                file.write_all(chunk.as_bytes())?;
                done.fetch_add(due - written, Ordering::Relaxed);
                written = due;
            }
            Ok(())
        }));
    }

    pub(super) fn stop(self) -> anyhow::Result<()> {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            t.join().expect("load thread")?;
        }
        Ok(())
    }
}

/// Connect, send a request, accept it, answer, read the first byte, close with RST
/// (SO_LINGER 0) so no TIME_WAIT exhausts ephemeral ports.
fn exchange(listener: &TcpListener) -> anyhow::Result<()> {
    let mut client = TcpStream::connect(listener.local_addr()?)?;
    client.write_all(REQUEST)?;
    let (mut server, _) = listener.accept()?;
    let mut buf = [0u8; 256];
    let _ = server.read(&mut buf)?;
    server.write_all(RESPONSE)?;
    let _ = client.read(&mut buf)?;
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: valid fd and option struct.
    unsafe {
        libc::setsockopt(
            client.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    drop(client);
    drop(server);
    Ok(())
}

/// A combined-format line, varied like a real site's.
fn access_line(n: u64) -> String {
    const PATHS: [&str; 4] = ["/", "/api/items", "/static/app.js", "/login"];
    const STATUSES: [u16; 8] = [200, 200, 200, 304, 200, 404, 200, 502];
    format!(
        "10.0.{}.{} - - [25/Nov/2026:10:33:58 +0000] \"GET {}?id={n} HTTP/1.1\" {} {} \"-\" \"Mozilla/5.0 (X11; Linux x86_64) bench/{n}\"\n",
        n % 7,
        n % 251,
        PATHS[(n % 4) as usize],
        STATUSES[(n % 8) as usize],
        512 + n % 4096
    )
}
