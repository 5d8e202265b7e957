//! The synthetic agents: one thread each (small stack), each with its own agent id, node
//! name and kept-alive connection, sealing one batch a second at its own offset in the second
//! (agents are spread over it, as real ones are) and delivering it as the agent's sender
//! does: oldest first, retried with the agent's backoff (100 ms … 30 s, jittered) on 5xx,
//! 401/403/408/429 and connection errors, on a new connection after an error or a
//! `Connection: close`; another 4xx drops the batch (the agent's rule; here a bench bug).
use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, RwLock,
    },
    thread::JoinHandle,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use vigil_wire::backoff::Backoff;

use super::{
    batches::{body, Header, Second},
    http1::Client,
    node::Shape,
};

/// The agent's request timeout (`vigil-agent run` builds its client with 15 s).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
const PERIOD: Duration = Duration::from_secs(1);

/// What every agent thread shares: where to send, the current second's records, and the
/// run's timeline.
pub struct Fleet {
    pub agents: usize,
    shape: Shape,
    collector: SocketAddr,
    headers: String,
    second: RwLock<Arc<Second>>,
    run_id: String,
    pub start: Instant,
    /// Requests and batches in [window.0, window.1) are the measured ones.
    pub window: (Instant, Instant),
    /// No batch is sealed from `window.1` on; those sealed are delivered until this.
    pub give_up: Instant,
    stop: AtomicBool,
}

/// Why a request was retried.
#[derive(Default, Clone, Copy)]
pub struct Retries {
    pub busy: u64,
    pub wal_full: u64,
    pub other_status: u64,
    pub connection: u64,
}

#[derive(Default)]
pub struct AgentStats {
    pub sealed: u64,
    pub accepted: u64,
    pub duplicate: u64,
    /// Sealed and never answered 200 (gave up at `give_up`, or a 4xx dropped it).
    pub lost: u64,
    pub records: u64,
    /// Compressed bytes of the batches answered 200.
    pub body_bytes: u64,
    /// Loki lines of the batches answered 200.
    pub loki_lines: u64,
    pub retries: Retries,
    /// Connections opened after the first (an error or `Connection: close`).
    pub reconnects: u64,
    /// Requests started in the window: send → whole answer, microseconds.
    pub request_us: Vec<u32>,
    /// Batches due in the window: due → 200, microseconds (retries and queueing included).
    pub delivery_us: Vec<u32>,
    /// When each `busy` answer to a request of the window came.
    pub busy_at: Vec<Instant>,
    /// The first answer that dropped a batch (4xx), to show.
    pub refusal: Option<String>,
}

impl Fleet {
    pub fn new(
        agents: usize,
        shape: Shape,
        collector: SocketAddr,
        token: &str,
        warmup: Duration,
        window: Duration,
        drain: Duration,
    ) -> Arc<Fleet> {
        let start = Instant::now();
        let unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let window = (start + warmup, start + warmup + window);
        Arc::new(Fleet {
            agents,
            shape,
            collector,
            headers: format!(
                "Content-Type: {}\r\nAuthorization: Bearer {token}\r\n",
                vigil_wire::CONTENT_TYPE
            ),
            second: RwLock::new(Arc::new(Second::build(unix.as_nanos() as i64, 0, shape))),
            run_id: format!("{}-{}", unix.as_millis(), std::process::id()),
            start,
            window,
            give_up: window.1 + drain,
            stop: AtomicBool::new(false),
        })
    }

    /// Stops sealing at once (the measurement failed).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }

    fn sealing(&self, due: Instant) -> bool {
        due < self.window.1 && !self.stop.load(Ordering::SeqCst)
    }

    fn in_window(&self, t: Instant) -> bool {
        t >= self.window.0 && t < self.window.1
    }
}

/// The thread that builds each second's records at the start of the second.
pub fn spawn_clock(fleet: Arc<Fleet>) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("fleet-clock".into())
        .spawn(move || {
            for tick in 1.. {
                let due = fleet.start + PERIOD * tick;
                if !fleet.sealing(due) {
                    return;
                }
                std::thread::sleep(due.saturating_duration_since(Instant::now()));
                let unix = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default();
                let second = Arc::new(Second::build(
                    unix.as_nanos() as i64,
                    u64::from(tick),
                    fleet.shape,
                ));
                *fleet.second.write().expect("second lock") = second;
            }
        })
}

pub fn spawn_agent(fleet: Arc<Fleet>, index: usize) -> std::io::Result<JoinHandle<AgentStats>> {
    std::thread::Builder::new()
        .name(format!("agent-{index}"))
        .stack_size(128 << 10)
        .spawn(move || run_agent(&fleet, index))
}

fn run_agent(fleet: &Fleet, index: usize) -> AgentStats {
    let node = format!("fleet-node-{index:05}");
    let agent_id = format!("{node}/{}", fleet.run_id);
    let offset = PERIOD * index as u32 / fleet.agents as u32;
    let mut sender = Sender {
        fleet,
        conn: None,
        opened: 0,
        backoff: Backoff::new(Duration::from_millis(100), Duration::from_secs(30)),
        stats: AgentStats::default(),
    };
    for sequence in 1u64.. {
        let due = fleet.start + offset + PERIOD * (sequence - 1) as u32;
        if !fleet.sealing(due) {
            break;
        }
        std::thread::sleep(due.saturating_duration_since(Instant::now()));
        let second = fleet.second.read().expect("second lock").clone();
        let records = second.pick(index, sequence);
        let unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let header = Header {
            agent_id: &agent_id,
            node: &node,
            sequence,
            created_unix_ms: unix.as_millis() as i64,
        };
        let body = body(&header, records);
        sender.stats.sealed += 1;
        if sender.deliver(&body) {
            sender.stats.records += records.records;
            sender.stats.body_bytes += body.len() as u64;
            sender.stats.loki_lines += records.loki_lines;
            if fleet.in_window(due) {
                sender.stats.delivery_us.push(micros(due.elapsed()));
            }
        } else {
            sender.stats.lost += 1;
        }
    }
    sender.stats.reconnects = sender.opened.saturating_sub(1);
    sender.stats
}

fn micros(d: Duration) -> u32 {
    d.as_micros().min(u128::from(u32::MAX)) as u32
}

struct Sender<'a> {
    fleet: &'a Fleet,
    conn: Option<Client>,
    opened: u64,
    backoff: Backoff,
    stats: AgentStats,
}

impl Sender<'_> {
    /// Sends `body` until it is answered 200 (true), a 4xx drops it or time is up (false).
    fn deliver(&mut self, body: &[u8]) -> bool {
        loop {
            if Instant::now() >= self.fleet.give_up {
                return false;
            }
            match self.attempt(body) {
                Attempt::Delivered => {
                    self.backoff.reset();
                    return true;
                }
                Attempt::Dropped => return false,
                Attempt::Retry => {
                    let wait = self.backoff.next_wait();
                    let left = self.fleet.give_up.saturating_duration_since(Instant::now());
                    std::thread::sleep(wait.min(left));
                }
            }
        }
    }

    fn attempt(&mut self, body: &[u8]) -> Attempt {
        let conn = match &mut self.conn {
            Some(conn) => conn,
            None => match Client::connect(self.fleet.collector, REQUEST_TIMEOUT) {
                Ok(conn) => {
                    self.opened += 1;
                    self.conn.insert(conn)
                }
                Err(_) => {
                    self.stats.retries.connection += 1;
                    return Attempt::Retry;
                }
            },
        };
        let sent = Instant::now();
        let answer = conn.request("POST", vigil_wire::INGEST_PATH, &self.fleet.headers, body);
        if self.fleet.in_window(sent) {
            self.stats.request_us.push(micros(sent.elapsed()));
        }
        let response = match answer {
            Ok(response) => response,
            Err(_) => {
                self.conn = None;
                self.stats.retries.connection += 1;
                return Attempt::Retry;
            }
        };
        if conn.closed() {
            self.conn = None;
        }
        let text = String::from_utf8_lossy(&response.body);
        let retries = &mut self.stats.retries;
        match response.status {
            200 if text.starts_with("duplicate") => self.stats.duplicate += 1,
            200 => self.stats.accepted += 1,
            503 if text.contains("max_concurrent_ingests") => {
                retries.busy += 1;
                if self.fleet.in_window(sent) {
                    self.stats.busy_at.push(Instant::now());
                }
            }
            503 if text.contains("write-ahead log is full") => retries.wal_full += 1,
            401 | 403 | 408 | 429 | 500.. => retries.other_status += 1,
            status => {
                let refusal = format!("{status} {}", text.trim_end());
                self.stats.refusal.get_or_insert(refusal);
                return Attempt::Dropped;
            }
        }
        if response.status == 200 {
            Attempt::Delivered
        } else {
            Attempt::Retry
        }
    }
}

enum Attempt {
    Delivered,
    Retry,
    Dropped,
}
