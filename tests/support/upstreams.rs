//! Small upstreams for nginx to proxy to: one that answers after a delay and one that
//! accepts connections and never answers.
use std::{
    io::{Read, Write},
    net::TcpListener,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread,
    time::Duration,
};

pub struct Upstream {
    pub port: u16,
    stop: Arc<AtomicBool>,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop.
        let _ = std::net::TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn serve(handle: impl Fn(std::net::TcpStream) + Send + Sync + 'static) -> Upstream {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = stop.clone();
    let handle = Arc::new(handle);
    thread::spawn(move || {
        for stream in listener.incoming() {
            if stopped.load(Ordering::SeqCst) {
                break;
            }
            if let Ok(stream) = stream {
                let handle = handle.clone();
                thread::spawn(move || handle(stream));
            }
        }
    });
    Upstream { port, stop }
}

/// Reads the request, waits `delay`, answers 200.
pub fn http_ok(delay: Duration) -> Upstream {
    serve(move |mut s| {
        let mut buf = [0u8; 4096];
        let _ = s.read(&mut buf);
        thread::sleep(delay);
        let _ = s.write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok");
    })
}

/// Accepts, reads the request, never answers (holds the socket until the peer closes).
pub fn silent() -> Upstream {
    serve(|mut s| {
        let mut buf = [0u8; 4096];
        while matches!(s.read(&mut buf), Ok(n) if n > 0) {}
    })
}
