//! A stand-in collector for the agent benchmark: answers every ingest with 200 and counts
//! what came, so the bytes on the wire per connection can be measured. It decodes each batch
//! (the connections it holds, alone and summarised) and snappy-compresses the connection
//! part alone again, to tell connection bytes from log lines and samples.
use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{TcpListener, TcpStream},
    sync::{Arc, Mutex},
};

use anyhow::Context;
use vigil_wire::{Batch, DecodeLimits};

/// What has arrived so far.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Received {
    pub batches: u64,
    /// Compressed request bodies.
    pub body_bytes: u64,
    /// Connections, sent alone or counted in summaries.
    pub connections: u64,
    pub summaries: u64,
    /// The connection records and summaries of each batch alone, compressed.
    pub connection_bytes: u64,
    pub undecodable: u64,
    /// The agent's latest count of probe events lost (ring buffer full).
    pub events_lost: u64,
}

pub(super) struct Sink {
    pub port: u16,
    received: Arc<Mutex<Received>>,
}

const LIMITS: DecodeLimits = DecodeLimits {
    max_decoded_bytes: 64 << 20,
    max_records: 1 << 20,
};

impl Sink {
    pub(super) fn start() -> anyhow::Result<Sink> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        let received = Arc::new(Mutex::new(Received::default()));
        let shared = received.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let shared = shared.clone();
                std::thread::spawn(move || {
                    let _ = serve(stream, &shared);
                });
            }
        });
        Ok(Sink { port, received })
    }

    pub(super) fn received(&self) -> Received {
        *self.received.lock().expect("sink lock")
    }
}

/// HTTP/1.1 requests on one connection, kept alive until the agent closes it.
fn serve(stream: TcpStream, received: &Mutex<Received>) -> anyhow::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    loop {
        let mut length = None;
        let mut line = String::new();
        loop {
            line.clear();
            if reader.read_line(&mut line)? == 0 {
                return Ok(());
            }
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = Some(value.trim().parse::<usize>()?);
                }
            }
        }
        let mut body = vec![0; length.context("request without Content-Length")?];
        reader.read_exact(&mut body)?;
        count(&body, received);
        writer.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\naccepted")?;
    }
}

fn count(body: &[u8], received: &Mutex<Received>) {
    let decoded = Batch::decode_compressed(body, &LIMITS);
    let mut r = received.lock().expect("sink lock");
    r.batches += 1;
    r.body_bytes += body.len() as u64;
    let Ok(batch) = decoded else {
        r.undecodable += 1;
        return;
    };
    if let Some(health) = &batch.health {
        r.events_lost = r.events_lost.max(health.probe_events_lost);
    }
    r.connections += batch.connections.len() as u64;
    r.connections += batch.summaries.iter().map(|s| s.count).sum::<u64>();
    r.summaries += batch.summaries.len() as u64;
    let connection_part = Batch {
        connections: batch.connections,
        summaries: batch.summaries,
        ..Default::default()
    };
    if !connection_part.connections.is_empty() || !connection_part.summaries.is_empty() {
        r.connection_bytes += connection_part.encode_compressed().len() as u64;
    }
}
