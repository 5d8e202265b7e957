//! The messages. Times are Unix nanoseconds or milliseconds as named; durations microseconds.

/// One POST from an agent.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Batch {
    /// Unique per agent process: `node/start-ms-pid`; with `sequence`, the dedupe key.
    #[prost(string, tag = "1")]
    pub agent_id: String,
    /// Starts at 1 for each agent_id and increases by one per batch.
    #[prost(uint64, tag = "2")]
    pub sequence: u64,
    #[prost(string, tag = "3")]
    pub node: String,
    #[prost(int64, tag = "4")]
    pub created_unix_ms: i64,
    #[prost(message, repeated, tag = "5")]
    pub connections: Vec<ConnectionOutcome>,
    #[prost(message, repeated, tag = "6")]
    pub upstreams: Vec<UpstreamStatus>,
    #[prost(message, repeated, tag = "7")]
    pub processes: Vec<ProcessSample>,
    #[prost(message, repeated, tag = "8")]
    pub nginx_errors: Vec<NginxErrorRecord>,
    #[prost(message, repeated, tag = "9")]
    pub nginx_access: Vec<NginxAccessRecord>,
    #[prost(message, optional, tag = "10")]
    pub health: Option<AgentHealth>,
    /// nginx's proxy routes, the whole set with each sample (empty between samples).
    #[prost(message, repeated, tag = "11")]
    pub routes: Vec<NginxRoute>,
    /// Healthy connections counted per (client, upstream, result) over the batch's interval;
    /// the rest travel one by one in `connections`.
    #[prost(message, repeated, tag = "12")]
    pub summaries: Vec<ConnectionSummary>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum ConnectResult {
    Unspecified = 0,
    Ok = 1,
    Refused = 2,
    Timeout = 3,
    Reset = 4,
    Unreachable = 5,
    Error = 6,
}

impl ConnectResult {
    /// Every variant, in discriminant order (`ALL[r as usize] == r`).
    pub const ALL: [ConnectResult; 7] = [
        Self::Unspecified,
        Self::Ok,
        Self::Refused,
        Self::Timeout,
        Self::Reset,
        Self::Unreachable,
        Self::Error,
    ];

    /// The cause an errno names, for the probes' `sk_err` and nginx's `(111: ...)` alike.
    /// Numbers are Linux's (x86 and arm share them): ECONNREFUSED 111, ETIMEDOUT 110,
    /// ENETUNREACH 101, EHOSTDOWN 112, EHOSTUNREACH 113, ECONNRESET 104.
    pub fn from_errno(errno: i32) -> Option<ConnectResult> {
        Some(match errno {
            111 => Self::Refused,
            110 => Self::Timeout,
            101 | 112 | 113 => Self::Unreachable,
            104 => Self::Reset,
            _ => return None,
        })
    }

    /// The `result` label value.
    pub fn label(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Refused => "refused",
            Self::Timeout => "timeout",
            Self::Reset => "reset",
            Self::Unreachable => "unreachable",
            Self::Error | Self::Unspecified => "error",
        }
    }
}

/// One finished connection to a watched upstream (what `vigil-agent trace` prints).
#[derive(Clone, PartialEq, prost::Message)]
pub struct ConnectionOutcome {
    #[prost(int64, tag = "1")]
    pub unix_ns: i64,
    #[prost(uint32, tag = "2")]
    pub pid: u32,
    #[prost(string, tag = "3")]
    pub comm: String,
    #[prost(string, tag = "4")]
    pub src: String,
    #[prost(string, tag = "5")]
    pub dst: String,
    #[prost(enumeration = "ConnectResult", tag = "6")]
    pub result: i32,
    /// 0 = none.
    #[prost(int32, tag = "7")]
    pub errno: i32,
    #[prost(uint64, tag = "8")]
    pub connect_us: u64,
    #[prost(uint64, optional, tag = "9")]
    pub first_byte_us: Option<u64>,
    #[prost(bool, tag = "10")]
    pub silent_close: bool,
    #[prost(uint32, tag = "11")]
    pub syn_retransmits: u32,
    #[prost(bool, tag = "12")]
    pub reset: bool,
    #[prost(uint64, tag = "13")]
    pub bytes_sent: u64,
    #[prost(uint64, tag = "14")]
    pub bytes_received: u64,
    #[prost(uint64, tag = "15")]
    pub duration_us: u64,
}

/// Connections from one client to one upstream with one result, counted instead of sent
/// one by one: what the collector's metrics and alert evidence need of healthy traffic.
/// The agent summarises a connection only when it is healthy: connected within a second
/// with no SYN retransmit, neither reset nor silently closed, and answered (a first byte)
/// within a second or closed without sending a request (a TCP check).
/// Per bucket: index i counts values at most `buckets::CONNECT_BUCKETS[i]` (resp.
/// `FIRST_BYTE_BUCKETS`) seconds and above the previous bound, the index past the last
/// bound counts the rest (`+Inf`); trailing empty buckets are left out.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ConnectionSummary {
    /// The connecting process's name (a `ConnectionOutcome`'s `comm`).
    #[prost(string, tag = "1")]
    pub comm: String,
    /// The destination, `host:port`.
    #[prost(string, tag = "2")]
    pub dst: String,
    #[prost(enumeration = "ConnectResult", tag = "3")]
    pub result: i32,
    /// Connections summarised.
    #[prost(uint64, tag = "4")]
    pub count: u64,
    /// Connect times of `ok` connections per bucket.
    #[prost(uint64, repeated, tag = "5")]
    pub connect_us_buckets: Vec<u64>,
    #[prost(uint64, tag = "6")]
    pub connect_us_sum: u64,
    /// Times to first byte per bucket; they add up to the connections answered.
    #[prost(uint64, repeated, tag = "7")]
    pub first_byte_us_buckets: Vec<u64>,
    #[prost(uint64, tag = "8")]
    pub first_byte_us_sum: u64,
    /// When the first and the last of them ended (connect time plus duration), Unix ns.
    #[prost(int64, tag = "9")]
    pub first_end_unix_ns: i64,
    #[prost(int64, tag = "10")]
    pub last_end_unix_ns: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ProcessIdentity {
    #[prost(uint32, tag = "1")]
    pub pid: u32,
    #[prost(string, tag = "2")]
    pub comm: String,
    #[prost(string, tag = "3")]
    pub cmdline: String,
    #[prost(string, tag = "4")]
    pub unit: String,
    #[prost(string, tag = "5")]
    pub pod_uid: String,
    #[prost(string, tag = "6")]
    pub container_id: String,
    /// The pod's namespace and name ("" outside a pod, or where kubelet keeps no log
    /// directory for it).
    #[prost(string, tag = "7")]
    pub pod_namespace: String,
    #[prost(string, tag = "8")]
    pub pod_name: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ProcessExit {
    #[prost(uint32, tag = "1")]
    pub pid: u32,
    #[prost(string, tag = "2")]
    pub comm: String,
    #[prost(int64, tag = "3")]
    pub unix_ms: i64,
    #[prost(int32, optional, tag = "4")]
    pub status: Option<i32>,
    #[prost(int32, optional, tag = "5")]
    pub signal: Option<i32>,
    /// The last lines the process wrote to stderr before it exited, oldest first (bounded by
    /// the agent: at most 20 lines of 512 bytes, 4 KiB in all).
    #[prost(string, repeated, tag = "6")]
    pub stderr_tail: Vec<String>,
    /// Where they were read: `journal:UNIT`, `pod:NAMESPACE/POD/CONTAINER` or `file:PATH`
    /// (set even when that source held no line; "" when no source was known or readable).
    #[prost(string, tag = "7")]
    pub stderr_source: String,
}

/// State of one watched upstream port at sampling time.
#[derive(Clone, PartialEq, prost::Message)]
pub struct UpstreamStatus {
    #[prost(uint32, tag = "1")]
    pub port: u32,
    #[prost(bool, tag = "2")]
    pub listening: bool,
    /// The listener's address, or the last one seen while nothing listens ("" if never).
    #[prost(string, tag = "3")]
    pub addr: String,
    #[prost(uint32, tag = "4")]
    pub accept_queue: u32,
    #[prost(uint32, tag = "5")]
    pub backlog: u32,
    #[prost(message, optional, tag = "6")]
    pub owner: Option<ProcessIdentity>,
    /// When the listener disappeared; 0 while one listens.
    #[prost(int64, tag = "7")]
    pub gone_since_unix_ms: i64,
    #[prost(message, optional, tag = "8")]
    pub last_owner: Option<ProcessIdentity>,
    #[prost(message, optional, tag = "9")]
    pub last_exit: Option<ProcessExit>,
    /// The destination nginx connects to, `host:port`: the `upstream` label of every series
    /// about this port (from nginx's configuration, else the listener's address with a
    /// wildcard read as loopback).
    #[prost(string, tag = "10")]
    pub upstream: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, prost::Enumeration)]
#[repr(i32)]
pub enum ProcessRole {
    Unspecified = 0,
    NginxMaster = 1,
    NginxWorker = 2,
    UpstreamOwner = 3,
    UpstreamWorker = 4,
}

impl ProcessRole {
    pub fn label(self) -> &'static str {
        match self {
            Self::NginxMaster => "nginx_master",
            Self::NginxWorker => "nginx_worker",
            Self::UpstreamOwner => "upstream_owner",
            Self::UpstreamWorker => "upstream_worker",
            Self::Unspecified => "other",
        }
    }
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ProcessSample {
    #[prost(uint32, tag = "1")]
    pub pid: u32,
    #[prost(string, tag = "2")]
    pub comm: String,
    #[prost(enumeration = "ProcessRole", tag = "3")]
    pub role: i32,
    /// The upstream port this process serves (0 for nginx's own processes).
    #[prost(uint32, tag = "4")]
    pub upstream_port: u32,
    #[prost(double, optional, tag = "5")]
    pub cpu_ratio: Option<f64>,
    #[prost(uint64, tag = "6")]
    pub rss_bytes: u64,
    #[prost(string, tag = "7")]
    pub state: String,
    #[prost(int64, tag = "8")]
    pub threads: i64,
    /// The CPU this process can get, in cores: the tightest cgroup v2 `cpu.max` quota over
    /// its cgroup and their parents, else the node's online CPUs.
    #[prost(double, optional, tag = "9")]
    pub cpu_cores_available: Option<f64>,
}

/// One `proxy_pass` destination as nginx's configuration routes it: which sites and
/// locations send requests there. A `proxy_pass` naming an `upstream` block yields one route
/// per server of the block.
#[derive(Clone, PartialEq, prost::Message)]
pub struct NginxRoute {
    #[prost(string, repeated, tag = "1")]
    pub server_names: Vec<String>,
    /// The enclosing `location`'s arguments, e.g. `/api/` or `= /exact` ("" outside one).
    #[prost(string, tag = "2")]
    pub location: String,
    /// The destination, `host:port` or `unix:/path`: the `upstream` label.
    #[prost(string, tag = "3")]
    pub upstream: String,
    /// The `upstream` block's name, "" for a literal address.
    #[prost(string, tag = "4")]
    pub group: String,
    #[prost(uint64, tag = "5")]
    pub connect_timeout_ms: u64,
    #[prost(uint64, tag = "6")]
    pub read_timeout_ms: u64,
}

/// One nginx error.log line: parsed fields when it parsed, always the raw line.
#[derive(Clone, PartialEq, prost::Message)]
pub struct NginxErrorRecord {
    #[prost(int64, tag = "1")]
    pub unix_ns: i64,
    #[prost(string, tag = "2")]
    pub line: String,
    #[prost(bool, tag = "3")]
    pub parsed: bool,
    #[prost(bool, tag = "4")]
    pub truncated: bool,
    #[prost(string, tag = "5")]
    pub level: String,
    #[prost(int32, tag = "6")]
    pub errno: i32,
    /// refused | timeout | reset | unreachable | no_live_upstreams | premature_close | error.
    #[prost(string, tag = "7")]
    pub upstream_error: String,
    /// The destination, `host:port` or `unix:/path` (nginx logs a URL; scheme and URI are cut).
    #[prost(string, tag = "8")]
    pub upstream: String,
    #[prost(string, tag = "9")]
    pub server: String,
    #[prost(string, tag = "10")]
    pub request: String,
    #[prost(string, tag = "11")]
    pub phase: String,
}

/// One nginx access.log line.
#[derive(Clone, PartialEq, prost::Message)]
pub struct NginxAccessRecord {
    #[prost(int64, tag = "1")]
    pub unix_ns: i64,
    #[prost(string, tag = "2")]
    pub line: String,
    #[prost(bool, tag = "3")]
    pub parsed: bool,
    #[prost(bool, tag = "4")]
    pub truncated: bool,
    /// 0 when unparsed.
    #[prost(uint32, tag = "5")]
    pub status: u32,
    #[prost(string, tag = "6")]
    pub upstream_addr: String,
    #[prost(double, optional, tag = "7")]
    pub request_time: Option<f64>,
}

/// The agent's own counters, cumulative since it started.
#[derive(Clone, PartialEq, prost::Message)]
pub struct AgentHealth {
    #[prost(uint64, tag = "1")]
    pub probe_events_lost: u64,
    #[prost(uint64, tag = "2")]
    pub probe_track_failed: u64,
    #[prost(string, repeated, tag = "3")]
    pub capabilities_missing: Vec<String>,
    #[prost(uint64, tag = "4")]
    pub batches_sent: u64,
    #[prost(uint64, tag = "5")]
    pub batches_retried: u64,
    #[prost(uint64, tag = "6")]
    pub spool_bytes: u64,
    #[prost(uint64, tag = "7")]
    pub spool_dropped_batches: u64,
}
