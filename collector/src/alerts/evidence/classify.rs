//! Which signal a record is: a finished connection from the probes, or an nginx error.log
//! line (by what nginx was doing; the client's own departures and nginx's consequences of
//! failures already counted are none).
use vigil_wire::{ConnectResult, ConnectionOutcome, ConnectionSummary, NginxErrorRecord};

use super::Signal;

/// What one finished connection says. nginx also closes an upstream connection when its
/// client goes away (499): a silent close, or a connect abandoned without an error, well
/// before nginx's own timeout (known from its routes) is that, not a timeout.
pub fn connection_signals(
    c: &ConnectionOutcome,
    timeouts: Option<(u64, u64)>,
) -> Vec<(Signal, u64)> {
    let lasted_ms = c.duration_us / 1000;
    let before = |timeout_ms: u64| timeout_ms > 0 && lasted_ms < timeout_ms * 9 / 10;
    let (connect_ms, read_ms) = timeouts.unwrap_or((0, 0));
    let mut out = Vec::with_capacity(3);
    match c.result() {
        ConnectResult::Ok => {
            out.push((Signal::ConnOk, 1));
            if c.first_byte_us.is_some() {
                out.push((Signal::ConnAnswered, 1));
            } else if c.reset {
                out.push((Signal::ConnReset, 1));
            }
            if c.silent_close && !before(read_ms) {
                out.push((Signal::ConnSilent, 1));
            }
            if c.syn_retransmits > 0 {
                out.push((Signal::ConnSlowHandshake, 1));
            }
        }
        ConnectResult::Refused => out.push((Signal::ConnRefused, 1)),
        ConnectResult::Timeout if c.errno == 0 && before(connect_ms) => {}
        ConnectResult::Timeout => out.push((Signal::ConnTimeout, 1)),
        ConnectResult::Unreachable => out.push((Signal::ConnUnreachable, 1)),
        ConnectResult::Reset => out.push((Signal::ConnReset, 1)),
        ConnectResult::Error | ConnectResult::Unspecified => {}
    }
    out
}

/// What a summary of healthy connections says: that many connects succeeded, and those
/// with a first byte were answered (the agent summarises no failure, reset, silent close
/// or SYN retransmit: those come one by one).
pub fn summary_signals(s: &ConnectionSummary) -> Vec<(Signal, u64)> {
    if s.result() != ConnectResult::Ok {
        return Vec::new();
    }
    let answered = s
        .first_byte_us_buckets
        .iter()
        .fold(0u64, |a, &n| a.saturating_add(n))
        .min(s.count);
    vec![(Signal::ConnOk, s.count), (Signal::ConnAnswered, answered)]
}

/// What nginx was doing when it failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Connect,
    /// Sending the request or waiting for the response header: a failure here is a 502/504.
    Header,
    /// The response had started: the client got a cut response, not a 502/504.
    Body,
}

impl Phase {
    fn of(phase: &str) -> Phase {
        if phase.starts_with("connecting") || phase.contains("handshaking") {
            Phase::Connect
        } else if phase.is_empty()
            || phase.contains("response header")
            || phase.contains("sending request")
        {
            Phase::Header
        } else {
            Phase::Body
        }
    }
}

/// The upstream failure an error.log line reports, if it is one that ends in a 502/504.
pub fn error_signal(e: &NginxErrorRecord) -> Option<Signal> {
    if !e.parsed || e.upstream.is_empty() || e.upstream_error.is_empty() {
        return None;
    }
    // nginx's own wording: a client that went away (499), and a consequence of failures
    // already counted. Neither is a new upstream failure.
    if e.line.contains("client prematurely closed connection")
        || e.line.contains("upstream server temporarily disabled")
    {
        return None;
    }
    let phase = Phase::of(&e.phase);
    Some(match (e.upstream_error.as_str(), phase) {
        ("refused", _) => Signal::LogRefused,
        ("timeout", Phase::Connect) => Signal::LogConnectTimeout,
        ("timeout", Phase::Header) => Signal::LogReadTimeout,
        ("reset", Phase::Connect | Phase::Header) => Signal::LogReset,
        ("premature_close", Phase::Header) => Signal::LogPremature,
        ("unreachable", _) => Signal::LogUnreachable,
        ("no_live_upstreams", _) => Signal::LogNoLive,
        // `connect() to unix:/run/app.sock failed (2: No such file or directory)`: the
        // socket file is gone, nothing listens; the agent labels errno 2 `error`.
        ("error", _) if e.errno == 2 && e.upstream.starts_with("unix:") => Signal::LogRefused,
        _ => return None,
    })
}
