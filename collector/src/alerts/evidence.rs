//! What the engine keeps of agents' batches, per node and per upstream (the destination
//! nginx connects to): each kind of failure or success as a `Run` (first, last, count; an
//! occurrence `resolve_after` or more after the previous one starts a new run), the latest
//! listener state, the upstream's workers, nginx's routes and the last nginx error lines.
//! Memory per upstream is fixed, whatever the traffic.
//!
//! Times are the node's data time: the agent's clock, shifted back when it runs ahead of
//! ours, never later than the batch that carried them. nginx's error.log has local time
//! read as UTC by the agent, to the second; its zone offset is taken from the batch time.
mod classify;

use std::collections::{BTreeMap, HashMap};

use vigil_wire::{Batch, NginxErrorRecord, NginxRoute, ProcessRole, ProcessSample, UpstreamStatus};

pub use classify::error_signal;
use classify::{connection_signals, summary_signals};

pub const MAX_ROUTES_PER_NODE: usize = 4096;
pub const MAX_WORKERS_PER_PORT: usize = 256;
/// Longer upstream labels are not a destination nginx connects to: dropped, counted.
pub const MAX_LABEL_BYTES: usize = 256;
const MAX_SERVER_NAMES: usize = 8;
const MAX_LINE_BYTES: usize = 512;

/// One kind of thing seen about an upstream. `Conn*` come from the probes, `Log*` from
/// nginx's error.log, `Access*` from access.log lines carrying `$upstream_addr`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Signal {
    ConnOk,
    /// A response byte came back.
    ConnAnswered,
    /// The handshake succeeded after SYN retransmits (SYNs were dropped, then one got in).
    ConnSlowHandshake,
    ConnRefused,
    /// SYNs unanswered until nginx (or the kernel) gave up.
    ConnTimeout,
    ConnUnreachable,
    /// Reset before any response byte.
    ConnReset,
    /// nginx sent a request and closed with no response byte: a read timeout.
    ConnSilent,
    LogRefused,
    LogConnectTimeout,
    /// Timed out sending the request or waiting for the response header.
    LogReadTimeout,
    LogReset,
    LogPremature,
    LogUnreachable,
    LogNoLive,
    AccessOk,
    Access502,
    Access504,
}

impl Signal {
    pub const COUNT: usize = 18;

    /// What nginx answers when this failure ends a request (0: not a failure).
    pub fn status(self) -> u16 {
        use Signal::*;
        match self {
            ConnTimeout | ConnSilent | LogConnectTimeout | LogReadTimeout | Access504 => 504,
            ConnRefused | ConnUnreachable | ConnReset | LogRefused | LogReset | LogPremature
            | LogUnreachable | LogNoLive | Access502 => 502,
            ConnOk | ConnAnswered | ConnSlowHandshake | AccessOk => 0,
        }
    }
}

/// Occurrences of one signal close together in time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Run {
    pub first_ms: i64,
    pub last_ms: i64,
    pub count: u64,
}

impl Run {
    /// Adds `n` occurrences at `at_ms`. One `gap_ms` or more after the last starts a new
    /// run; a late one older than the run by more than the gap belonged to an earlier run.
    pub fn add(&mut self, at_ms: i64, n: u64, gap_ms: i64) {
        if n == 0 {
            return;
        }
        if self.count > 0 && at_ms < self.last_ms {
            if at_ms > self.first_ms - gap_ms {
                self.first_ms = self.first_ms.min(at_ms);
                self.count += n;
            }
            return;
        }
        if self.count == 0 || at_ms - self.last_ms >= gap_ms {
            *self = Run {
                first_ms: at_ms,
                last_ms: at_ms,
                count: n,
            };
            return;
        }
        self.last_ms = at_ms;
        self.count += n;
    }

    /// `n` occurrences from `first_ms` to `last_ms` with no gap between them (an agent's
    /// summary of one batch interval): one run, whatever the gap.
    pub fn add_span(&mut self, first_ms: i64, last_ms: i64, n: u64, gap_ms: i64) {
        if n == 0 {
            return;
        }
        self.add(first_ms, 1, gap_ms);
        self.add(last_ms, n - 1, gap_ms.max(last_ms - first_ms + 1));
    }

    /// Still going at `now_ms`: its last occurrence less than `gap_ms` ago.
    pub fn alive(&self, now_ms: i64, gap_ms: i64) -> bool {
        self.count > 0 && now_ms - self.last_ms < gap_ms
    }
}

#[derive(Debug, Default)]
pub struct UpstreamEvidence {
    runs: [Run; Signal::COUNT],
    /// The latest listener state the agent sent, with its data time.
    pub status: Option<(UpstreamStatus, i64)>,
    /// The last data time a status showed the accept queue at its backlog.
    pub queue_full_ms: Option<i64>,
    /// When the listener's owner changed (a restart): workers sampled since did not serve
    /// the requests that failed before.
    pub owner_since_ms: Option<i64>,
    /// nginx `server` names seen in its error lines about this upstream.
    pub servers: Vec<String>,
    /// The latest nginx error line per signal (cut).
    pub lines: BTreeMap<Signal, String>,
    pub last_request: String,
    /// The latest failed connect to this unix socket said `No such file or directory`.
    pub socket_missing: bool,
    /// Data time of the last record about it (for pruning).
    pub touched_ms: i64,
}

impl UpstreamEvidence {
    pub fn run(&self, signal: Signal) -> &Run {
        &self.runs[signal as usize]
    }

    fn add(&mut self, signal: Signal, at_ms: i64, n: u64, gap_ms: i64) {
        self.runs[signal as usize].add(at_ms, n, gap_ms);
        self.touched_ms = self.touched_ms.max(at_ms);
    }

    fn note_error(&mut self, signal: Signal, e: &NginxErrorRecord) {
        self.lines.insert(signal, cut(&e.line, MAX_LINE_BYTES));
        if !e.server.is_empty()
            && self.servers.len() < MAX_SERVER_NAMES
            && !self.servers.contains(&e.server)
        {
            self.servers.push(cut(&e.server, MAX_LABEL_BYTES));
        }
        if !e.request.is_empty() {
            self.last_request = cut(&e.request, MAX_LINE_BYTES);
        }
        if signal == Signal::LogRefused && e.upstream.starts_with("unix:") {
            self.socket_missing = e.errno == 2;
        }
    }
}

/// Why something from a batch was not kept (`vigil_alert_inputs_dropped_total{reason}`).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Dropped {
    pub upstreams: u64,
    pub routes: u64,
    pub workers: u64,
    pub labels: u64,
}

/// What observing a batch needs besides the node: the gap that ends a run, our clock, and
/// the engine-wide budget of upstreams.
pub struct Observe<'a> {
    pub gap_ms: i64,
    pub wall_ms: i64,
    pub upstreams_total: &'a mut usize,
    pub max_upstreams: usize,
    pub dropped: Dropped,
}

#[derive(Debug, Default)]
pub struct NodeEvidence {
    /// Data time: the newest batch's time.
    pub clock_ms: i64,
    /// Our clock when its last batch came.
    pub seen_wall_ms: i64,
    pub routes: Vec<NginxRoute>,
    pub upstreams: HashMap<String, UpstreamEvidence>,
    /// Upstream port → its owner and worker processes, from the latest sample, with its time.
    pub workers: HashMap<u32, (Vec<ProcessSample>, i64)>,
    pub port_upstreams: HashMap<u32, String>,
    /// 502s and 504s in access lines without `$upstream_addr`, by status.
    pub unattributed: BTreeMap<u32, Run>,
}

/// Record times of one batch as node data time.
struct BatchTimes {
    created_raw: i64,
    /// How far the agent's clock runs ahead of ours (0 when behind: that is delay).
    shift: i64,
    created: i64,
}

impl BatchTimes {
    fn new(batch: &Batch, wall_ms: i64) -> Self {
        let raw = if batch.created_unix_ms > 0 {
            batch.created_unix_ms
        } else {
            wall_ms
        };
        let shift = (raw - wall_ms).max(0);
        BatchTimes {
            created_raw: raw,
            shift,
            created: raw - shift,
        }
    }

    /// An agent-clock time as data time, never after its batch was sealed.
    fn at(&self, agent_ms: i64) -> i64 {
        if agent_ms <= 0 {
            return self.created;
        }
        agent_ms.min(self.created_raw) - self.shift
    }

    /// nginx logs local time to the second, read as UTC: the zone offset (a multiple of a
    /// quarter hour) is what separates it from the batch's time; the middle of the second.
    fn nginx(&self, e: &NginxErrorRecord) -> i64 {
        if !e.parsed || e.unix_ns <= 0 {
            return self.created;
        }
        let logged = e.unix_ns / 1_000_000;
        let quarter = 15 * 60 * 1000;
        let offset = ((self.created_raw - logged) as f64 / quarter as f64).round() as i64 * quarter;
        self.at(logged + offset + 500)
    }
}

impl NodeEvidence {
    pub fn observe(&mut self, batch: &Batch, ctx: &mut Observe) {
        let times = BatchTimes::new(batch, ctx.wall_ms);
        self.clock_ms = self.clock_ms.max(times.created);
        self.seen_wall_ms = ctx.wall_ms;
        self.routes(batch, ctx);
        self.statuses(batch, times.created, ctx);
        self.workers(batch, times.created, ctx);
        for c in &batch.connections {
            let end_ms = (c.unix_ns + c.duration_us as i64 * 1000) / 1_000_000;
            let at = times.at(end_ms);
            let timeouts = self.route_timeouts(&c.dst);
            if let Some(u) = self.upstream(&c.dst, ctx) {
                for (signal, n) in connection_signals(c, timeouts) {
                    u.add(signal, at, n, ctx.gap_ms);
                }
            }
        }
        for s in &batch.summaries {
            let (first, last) = (s.first_end_unix_ns, s.last_end_unix_ns);
            let span = (times.at(first / 1_000_000), times.at(last / 1_000_000));
            if let Some(u) = self.upstream(&s.dst, ctx) {
                for (signal, n) in summary_signals(s) {
                    u.runs[signal as usize].add_span(span.0, span.1, n, ctx.gap_ms);
                    u.touched_ms = u.touched_ms.max(span.1);
                }
            }
        }
        for e in &batch.nginx_errors {
            let Some(signal) = error_signal(e) else {
                continue;
            };
            let at = times.nginx(e);
            if let Some(u) = self.upstream(&e.upstream, ctx) {
                u.add(signal, at, 1, ctx.gap_ms);
                u.note_error(signal, e);
            }
        }
        self.access(batch, &times, ctx);
    }

    fn access(&mut self, batch: &Batch, times: &BatchTimes, ctx: &mut Observe) {
        for a in batch
            .nginx_access
            .iter()
            .filter(|a| a.parsed && a.status > 0)
        {
            let at = times.at(a.unix_ns / 1_000_000);
            let failed = matches!(a.status, 502 | 504);
            if a.upstream_addr.is_empty() || a.upstream_addr == "-" {
                if failed {
                    let run = self.unattributed.entry(a.status).or_default();
                    run.add(at, 1, ctx.gap_ms);
                }
                continue;
            }
            let signal = match a.status {
                502 => Signal::Access502,
                504 => Signal::Access504,
                _ => Signal::AccessOk,
            };
            if let Some(u) = self.upstream(&a.upstream_addr, ctx) {
                u.add(signal, at, 1, ctx.gap_ms);
            }
        }
    }

    fn routes(&mut self, batch: &Batch, ctx: &mut Observe) {
        if batch.routes.is_empty() {
            return;
        }
        let keep = batch.routes.len().min(MAX_ROUTES_PER_NODE);
        ctx.dropped.routes += (batch.routes.len() - keep) as u64;
        self.routes = batch.routes[..keep].to_vec();
    }

    fn statuses(&mut self, batch: &Batch, at: i64, ctx: &mut Observe) {
        for s in &batch.upstreams {
            let label = crate::metrics::upstream_label(s);
            let Some(u) = self.upstream(&label, ctx) else {
                continue;
            };
            if s.listening && s.backlog > 0 && s.accept_queue >= s.backlog {
                u.queue_full_ms = Some(at);
            }
            let owner = |s: &vigil_wire::UpstreamStatus| s.owner.as_ref().map(|o| o.pid);
            let previous = u.status.as_ref().map(|(p, _)| owner(p));
            if previous.is_some_and(|before| before != owner(s)) {
                u.owner_since_ms = Some(at);
            }
            u.status = Some((s.clone(), at));
            u.touched_ms = u.touched_ms.max(at);
            self.port_upstreams.insert(s.port, label);
        }
    }

    /// A sampling batch (it has upstream states or processes) replaces every port's workers.
    fn workers(&mut self, batch: &Batch, at: i64, ctx: &mut Observe) {
        if batch.upstreams.is_empty() && batch.processes.is_empty() {
            return;
        }
        let mut by_port: HashMap<u32, (Vec<ProcessSample>, i64)> = HashMap::new();
        let serving = |p: &&ProcessSample| {
            p.upstream_port != 0
                && matches!(
                    p.role(),
                    ProcessRole::UpstreamOwner | ProcessRole::UpstreamWorker
                )
        };
        for p in batch.processes.iter().filter(serving) {
            // Only ports the agent named as upstreams: the map stays as small as they are.
            if !self.port_upstreams.contains_key(&p.upstream_port) {
                ctx.dropped.workers += 1;
                continue;
            }
            let (list, _) = by_port.entry(p.upstream_port).or_insert((Vec::new(), at));
            // A batch can hold several samples: a process's latest one counts, once.
            if let Some(known) = list.iter_mut().find(|known| known.pid == p.pid) {
                *known = p.clone();
            } else if list.len() < MAX_WORKERS_PER_PORT {
                list.push(p.clone());
            } else {
                ctx.dropped.workers += 1;
            }
        }
        self.workers = by_port;
    }

    /// The evidence of `label`, created within the engine-wide budget.
    fn upstream(&mut self, label: &str, ctx: &mut Observe) -> Option<&mut UpstreamEvidence> {
        if label.is_empty() {
            return None;
        }
        if !self.upstreams.contains_key(label) {
            if label.len() > MAX_LABEL_BYTES {
                ctx.dropped.labels += 1;
                return None;
            }
            if *ctx.upstreams_total >= ctx.max_upstreams {
                ctx.dropped.upstreams += 1;
                return None;
            }
            *ctx.upstreams_total += 1;
            self.upstreams
                .insert(label.to_owned(), UpstreamEvidence::default());
        }
        self.upstreams.get_mut(label)
    }

    /// The shortest (connect, read) timeouts nginx's routes to `upstream` have.
    fn route_timeouts(&self, upstream: &str) -> Option<(u64, u64)> {
        self.routes
            .iter()
            .filter(|r| r.upstream == upstream)
            .map(|r| (r.connect_timeout_ms, r.read_timeout_ms))
            .reduce(|a, b| (a.0.min(b.0), a.1.min(b.1)))
    }

    /// Forgets upstreams not heard of since `before_ms` unless `keep` says otherwise;
    /// returns how many went.
    pub fn prune(&mut self, before_ms: i64, keep: impl Fn(&str) -> bool) -> usize {
        let n = self.upstreams.len();
        self.upstreams
            .retain(|label, u| u.touched_ms >= before_ms || keep(label));
        let live: std::collections::HashSet<&String> = self.upstreams.keys().collect();
        self.port_upstreams.retain(|_, label| live.contains(label));
        n - self.upstreams.len()
    }
}

/// At most `max` bytes, cut at a character boundary.
pub fn cut(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

#[cfg(test)]
mod tests;
