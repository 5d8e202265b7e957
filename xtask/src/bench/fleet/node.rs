//! What a busy node's agent sees in a second: nginx proxying 200 requests to 5 upstreams
//! over 100 upstream connections (`Shape::access_lines` sets the requests). Every second, besides the healthy traffic: 2 connections
//! reset by the upstream after answering (idle keep-alive closes) and 1 answered slowly
//! (1.2 s), which travel alone; 3 error-log lines not about upstreams (a missing file, a
//! body too large) and a few 404s. Once a minute per node, a failure: a refused connect with
//! its error line and its 502 — isolated, so no alert fires (a fleet is mostly healthy; a
//! failing one pays for alerts on top). Every 5th second the agent's sample: 5 upstream
//! listeners with their owners, 20 processes, 10 routes, its health.
use vigil_wire::{
    buckets::{BucketCounts, CONNECT_BUCKETS, FIRST_BYTE_BUCKETS},
    AgentHealth, Batch, ConnectResult, ConnectionOutcome, ConnectionSummary, NginxAccessRecord,
    NginxErrorRecord, NginxRoute, ProcessIdentity, ProcessRole, ProcessSample, UpstreamStatus,
};

const CONNECTIONS: usize = 100;
const UPSTREAMS: usize = 5;
const PATHS: [&str; 5] = [
    "/api/cart",
    "/api/items",
    "/api/user",
    "/checkout",
    "/search",
];

/// How healthy connections travel (the agent's `--connection-records`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionRecords {
    /// Counted per client and upstream in `Batch.summaries` (the agent's default).
    Failures,
    /// Every connection alone.
    All,
}

/// What a node's nginx does in a second, as far as its agent's batch shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    pub connections: ConnectionRecords,
    /// Access-log lines a second (each a Loki line); 200 on a busy node.
    pub access_lines: usize,
}

pub struct XorShift(pub u64);

impl XorShift {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// The i-th upstream's port on the node, and its address as nginx connects to it.
fn port(i: usize) -> u32 {
    8081 + i as u32
}

fn upstream(i: usize) -> String {
    format!("10.42.{}.{}:{}", i + 1, 10 + i, port(i))
}

/// The connections and nginx lines of the second starting at `unix_ns`; with `failure`,
/// one refused connect, its error line and its 502 besides.
pub fn traffic(unix_ns: i64, rng: &mut XorShift, failure: bool, shape: Shape) -> Batch {
    let mut connections: Vec<ConnectionOutcome> = (0..CONNECTIONS)
        .map(|i| connection(unix_ns + i as i64 * 10_000_000, i, rng))
        .collect();
    let mut nginx_errors: Vec<NginxErrorRecord> = (0..3)
        .map(|i| other_error(unix_ns + i * 300_000_000, i, rng))
        .collect();
    let mut nginx_access: Vec<NginxAccessRecord> = (0..shape.access_lines)
        .map(|i| {
            let status = if rng.below(100) < 3 { 404 } else { 200 };
            access_line(unix_ns + i as i64 * 5_000_000, i, status, rng)
        })
        .collect();
    if failure {
        connections.push(ConnectionOutcome {
            result: ConnectResult::Refused as i32,
            errno: 111,
            first_byte_us: None,
            bytes_sent: 0,
            bytes_received: 0,
            duration_us: 300,
            ..connection(unix_ns + 500_000_000, 2, rng)
        });
        nginx_errors.push(refused_line(unix_ns + 500_000_000, 2, rng));
        nginx_access.push(access_line(unix_ns + 500_000_000, 2, 502, rng));
    }
    let (connections, summaries) = match shape.connections {
        ConnectionRecords::All => (connections, Vec::new()),
        ConnectionRecords::Failures => summarise(connections),
    };
    Batch {
        connections,
        summaries,
        nginx_errors,
        nginx_access,
        ..Default::default()
    }
}

fn connection(unix_ns: i64, i: usize, rng: &mut XorShift) -> ConnectionOutcome {
    ConnectionOutcome {
        unix_ns,
        pid: 1001 + (i % 4) as u32,
        comm: "nginx".into(),
        src: format!("10.42.0.7:{}", 32768 + rng.below(28000)),
        dst: upstream(i % UPSTREAMS),
        result: ConnectResult::Ok as i32,
        connect_us: 150 + rng.below(900),
        // Connection 33 answers slowly; 20 and 70 are reset by the upstream after answering.
        first_byte_us: Some(if i == 33 {
            1_200_000
        } else {
            2000 + rng.below(40_000)
        }),
        reset: i == 20 || i == 70,
        bytes_sent: 600 + rng.below(400),
        bytes_received: 2000 + rng.below(30_000),
        duration_us: 3000 + rng.below(50_000),
        ..Default::default()
    }
}

/// The agent's rule: healthy connections are counted per (client, upstream), the rest
/// travel alone (agent/src/ship/outbox/summary.rs).
fn summarise(all: Vec<ConnectionOutcome>) -> (Vec<ConnectionOutcome>, Vec<ConnectionSummary>) {
    let healthy = |c: &ConnectionOutcome| {
        c.result() == ConnectResult::Ok
            && !c.reset
            && !c.silent_close
            && c.syn_retransmits == 0
            && c.connect_us < 1_000_000
            && c.first_byte_us
                .map_or(c.bytes_sent == 0, |us| us < 1_000_000)
    };
    let (counted, alone): (Vec<_>, Vec<_>) = all.into_iter().partition(healthy);
    let mut summaries: Vec<(ConnectionSummary, BucketCounts, BucketCounts)> = Vec::new();
    for c in counted {
        let at = summaries
            .iter()
            .position(|(s, _, _)| s.dst == c.dst && s.comm == c.comm)
            .unwrap_or_else(|| {
                let first = ConnectionSummary {
                    comm: c.comm.clone(),
                    dst: c.dst.clone(),
                    result: ConnectResult::Ok as i32,
                    first_end_unix_ns: i64::MAX,
                    ..Default::default()
                };
                summaries.push((first, BucketCounts::default(), BucketCounts::default()));
                summaries.len() - 1
            });
        let (s, connect, first_byte) = &mut summaries[at];
        let end = c.unix_ns + c.duration_us as i64 * 1000;
        s.count += 1;
        s.first_end_unix_ns = s.first_end_unix_ns.min(end);
        s.last_end_unix_ns = s.last_end_unix_ns.max(end);
        connect.add(CONNECT_BUCKETS, c.connect_us);
        if let Some(us) = c.first_byte_us {
            first_byte.add(FIRST_BYTE_BUCKETS, us);
        }
    }
    let summaries = summaries
        .into_iter()
        .map(|(s, connect, first_byte)| ConnectionSummary {
            connect_us_buckets: connect.counts,
            connect_us_sum: connect.sum_us,
            first_byte_us_buckets: first_byte.counts,
            first_byte_us_sum: first_byte.sum_us,
            ..s
        })
        .collect();
    (alone, summaries)
}

fn other_error(unix_ns: i64, i: i64, rng: &mut XorShift) -> NginxErrorRecord {
    let (level, text) = match i {
        0 | 1 => (
            "error",
            "open() \"/usr/share/nginx/html/favicon.ico\" failed (2: No such file or directory)",
        ),
        _ => (
            "warn",
            "client intended to send too large body: 10485761 bytes",
        ),
    };
    NginxErrorRecord {
        unix_ns,
        line: format!(
            "2026/11/25 10:13:58 [{level}] 1001#1001: *{} {text}, client: 10.0.3.{}, server: shop.example.com, request: \"POST /upload HTTP/1.1\", host: \"shop.example.com\"",
            100_000 + rng.below(900_000), rng.below(250)
        ),
        parsed: true,
        level: level.into(),
        errno: if i < 2 { 2 } else { 0 },
        server: "shop.example.com".into(),
        request: "POST /upload HTTP/1.1".into(),
        ..Default::default()
    }
}

fn refused_line(unix_ns: i64, i: usize, rng: &mut XorShift) -> NginxErrorRecord {
    let (upstream, path) = (upstream(i % UPSTREAMS), PATHS[i % PATHS.len()]);
    let request = format!("GET {path} HTTP/1.1");
    NginxErrorRecord {
        unix_ns,
        line: format!(
            "2026/11/25 10:13:58 [error] 1003#1003: *{} connect() failed (111: Connection refused) while connecting to upstream, client: 10.0.3.{}, server: shop.example.com, request: \"{request}\", upstream: \"http://{upstream}{path}\", host: \"shop.example.com\"",
            100_000 + rng.below(900_000), rng.below(250)
        ),
        parsed: true,
        level: "error".into(),
        errno: 111,
        upstream_error: "refused".into(),
        upstream,
        server: "shop.example.com".into(),
        request,
        phase: "connecting to upstream".into(),
        ..Default::default()
    }
}

fn access_line(unix_ns: i64, i: usize, status: u32, rng: &mut XorShift) -> NginxAccessRecord {
    let upstream_addr = upstream(i % UPSTREAMS);
    let request_time = (1 + rng.below(250)) as f64 / 1000.0;
    NginxAccessRecord {
        unix_ns,
        line: format!(
            "10.0.3.{} - - [25/Nov/2026:10:13:58 +0000] \"GET {}/{} HTTP/1.1\" {status} {} \"https://shop.example.com/\" \"Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\" rt={request_time:.3} uct=0.001 urt={request_time:.3} ua=\"{upstream_addr}\"",
            rng.below(250), PATHS[i % PATHS.len()], rng.below(100_000), 200 + rng.below(20_000)
        ),
        parsed: true,
        status,
        upstream_addr,
        request_time: Some(request_time),
        ..Default::default()
    }
}

/// What the agent samples every interval: upstream listeners with their owners, nginx's and
/// the upstreams' processes, nginx's routes, the agent's health.
pub fn add_sample(batch: &mut Batch, tick: u64) {
    let owner = |i: usize| ProcessIdentity {
        pid: 2001 + i as u32,
        comm: "java".into(),
        cmdline: format!(
            "java -Xmx2g -jar /app/service-{i}.jar --server.port={}",
            port(i)
        ),
        pod_uid: format!("5f0c8a3e-1b2d-4c5e-8f90-00000000000{i}"),
        container_id: format!("containerd://{:064x}", 0xabcdef_u64 + i as u64),
        ..Default::default()
    };
    batch.upstreams = (0..UPSTREAMS)
        .map(|i| UpstreamStatus {
            port: port(i),
            listening: true,
            addr: upstream(i),
            accept_queue: (tick % 3) as u32,
            backlog: 4096,
            owner: Some(owner(i)),
            upstream: upstream(i),
            ..Default::default()
        })
        .collect();
    let process = |pid: u32, comm: &str, role: ProcessRole, port: u32| ProcessSample {
        pid,
        comm: comm.into(),
        role: role as i32,
        upstream_port: port,
        cpu_ratio: Some(0.05 + (pid % 7) as f64 / 100.0),
        rss_bytes: 50 << 20,
        state: "S".into(),
        threads: 1,
        cpu_cores_available: Some(2.0),
    };
    batch.processes = std::iter::once(process(1000, "nginx", ProcessRole::NginxMaster, 0))
        .chain((1001..1005).map(|p| process(p, "nginx", ProcessRole::NginxWorker, 0)))
        .chain(
            (0..UPSTREAMS)
                .map(|i| process(2001 + i as u32, "java", ProcessRole::UpstreamOwner, port(i))),
        )
        .chain((0..10).map(|i| {
            process(
                3001 + i as u32,
                "java",
                ProcessRole::UpstreamWorker,
                port(i % UPSTREAMS),
            )
        }))
        .collect();
    batch.routes = (0..10)
        .map(|i| NginxRoute {
            server_names: vec!["shop.example.com".into(), "www.shop.example.com".into()],
            location: PATHS[i % PATHS.len()].into(),
            upstream: upstream(i % UPSTREAMS),
            group: format!("service_{}", i % UPSTREAMS),
            connect_timeout_ms: 60_000,
            read_timeout_ms: 60_000,
        })
        .collect();
    batch.health = Some(AgentHealth {
        batches_sent: tick,
        ..Default::default()
    });
}
