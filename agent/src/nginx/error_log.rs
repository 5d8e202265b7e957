//! Parses nginx error.log lines and classifies upstream failures.
//!
//! Line layout (ngx_log_error_core + ngx_http_log_error):
//! `TIME [level] PID#TID: [*CID ]message[ (errno: strerror)][ while phase][, client: X, server: Y, request: "..", upstream: "..", host: "..", referrer: ".."]`
//!
//! Failures are classified by the errno NUMBER, never by its text: musl and
//! glibc word strerror() differently.

use serde::Serialize;

use vigil_wire::ConnectResult;

use vigil_wire::time::civil_to_unix;

/// Length of `2026/11/25 10:13:58`.
const TIME_LEN: usize = 19;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ErrorLevel {
    Debug,
    Info,
    Notice,
    Warn,
    Error,
    Crit,
    Alert,
    Emerg,
}

impl ErrorLevel {
    const ALL: [(Self, &'static str); 8] = [
        (Self::Debug, "debug"),
        (Self::Info, "info"),
        (Self::Notice, "notice"),
        (Self::Warn, "warn"),
        (Self::Error, "error"),
        (Self::Crit, "crit"),
        (Self::Alert, "alert"),
        (Self::Emerg, "emerg"),
    ];

    fn from_name(name: &str) -> Option<Self> {
        Self::ALL.iter().find(|(_, n)| *n == name).map(|(l, _)| *l)
    }

    /// nginx's own name for the level (`warn`, `error`, ...).
    pub fn as_str(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(l, _)| *l == self)
            .map_or("error", |(_, n)| n)
    }
}

/// Why nginx could not get a response from an upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum UpstreamError {
    /// ECONNREFUSED (111): nothing listening on the upstream port.
    Refused,
    /// ETIMEDOUT (110): connect/send/read timeout; see the record's `phase`.
    #[serde(rename = "timeout")]
    TimedOut,
    /// ECONNRESET (104).
    Reset,
    /// EHOSTUNREACH (113) or ENETUNREACH (101).
    Unreachable,
    /// Every server of the group is marked failed (max_fails/fail_timeout).
    NoLiveUpstreams,
    /// Upstream closed the connection before sending a complete response.
    PrematureClose,
    #[serde(rename = "error")]
    Other { errno: Option<i32> },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ErrorLogRecord {
    /// Timestamp as written, e.g. `2026/11/25 10:13:58` (nginx's local time).
    pub time: String,
    /// `time` read as if it were UTC (the log has no zone); exact when the
    /// host runs in UTC, otherwise off by the local UTC offset.
    pub timestamp: i64,
    pub level: ErrorLevel,
    pub pid: u32,
    /// nginx connection number (`*17`); absent for process-level messages.
    pub connection: Option<u64>,
    /// Error text including `(errno: strerror)`, without phase and context.
    pub message: String,
    pub errno: Option<i32>,
    /// What nginx was doing: the text after ` while `.
    pub phase: Option<String>,
    pub client: Option<String>,
    pub server: Option<String>,
    pub request: Option<String>,
    pub subrequest: Option<String>,
    pub upstream: Option<String>,
    pub host: Option<String>,
    pub referrer: Option<String>,
    /// Set when the line is about an upstream (has `upstream:` or an upstream phase).
    pub upstream_error: Option<UpstreamError>,
}

/// A line that is not an nginx error.log line (borrowed: the tail ships the raw line anyway).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unrecognized nginx error.log line: {reason}")]
pub struct ErrorLogParseError<'a> {
    pub line: &'a str,
    pub reason: &'static str,
}

/// Parses one error.log line (a trailing newline is ignored).
pub fn parse_error_line(line: &str) -> Result<ErrorLogRecord, ErrorLogParseError<'_>> {
    let trimmed = line.trim_end_matches(['\n', '\r']);
    parse_record(trimmed).map_err(|reason| ErrorLogParseError { line, reason })
}

fn parse_record(line: &str) -> Result<ErrorLogRecord, &'static str> {
    let time = line.get(..TIME_LEN).ok_or("too short")?;
    let timestamp = parse_time(time).ok_or("bad timestamp")?;
    let rest = line[TIME_LEN..].strip_prefix(" [").ok_or("missing level")?;
    let (level, rest) = rest.split_once("] ").ok_or("missing level")?;
    let level = ErrorLevel::from_name(level).ok_or("unknown level")?;
    let (pid, rest) = rest.split_once('#').ok_or("missing pid")?;
    let pid = pid.parse().map_err(|_| "bad pid")?;
    let (tid, body) = rest.split_once(": ").ok_or("missing thread id")?;
    tid.parse::<u64>().map_err(|_| "bad thread id")?;
    let (connection, body) = match body.strip_prefix('*').and_then(|b| b.split_once(' ')) {
        Some((cid, rest)) => (Some(cid.parse().map_err(|_| "bad connection id")?), rest),
        None => (None, body),
    };

    let (head, [client, server, request, subrequest, upstream, host, referrer]) =
        split_context(body);
    let (message, phase) = match head.rfind(" while ") {
        Some(i) => (&head[..i], Some(&head[i + " while ".len()..])),
        None => (head, None),
    };
    let errno = trailing_errno(message);
    let upstream_error = classify(message, errno, phase, upstream.is_some());
    let owned = |s: Option<&str>| s.map(str::to_string);
    Ok(ErrorLogRecord {
        time: time.to_string(),
        timestamp,
        level,
        pid,
        connection,
        message: message.to_string(),
        errno,
        phase: owned(phase),
        client: owned(client),
        server: owned(server),
        request: owned(request),
        subrequest: owned(subrequest),
        upstream: owned(upstream),
        host: owned(host),
        referrer: owned(referrer),
        upstream_error,
    })
}

fn classify(
    message: &str,
    errno: Option<i32>,
    phase: Option<&str>,
    has_upstream: bool,
) -> Option<UpstreamError> {
    let about_upstream = has_upstream || phase.is_some_and(|p| p.contains("upstream"));
    if !about_upstream {
        return None;
    }
    // These two are nginx's own wording (no errno), so text is reliable.
    if message.starts_with("no live upstreams") {
        return Some(UpstreamError::NoLiveUpstreams);
    }
    if message.starts_with("upstream prematurely closed connection") {
        return Some(UpstreamError::PrematureClose);
    }
    // The same errno → cause mapping the probes use for a failed connect.
    Some(match errno.and_then(ConnectResult::from_errno) {
        Some(ConnectResult::Refused) => UpstreamError::Refused,
        Some(ConnectResult::Timeout) => UpstreamError::TimedOut,
        Some(ConnectResult::Reset) => UpstreamError::Reset,
        Some(ConnectResult::Unreachable) => UpstreamError::Unreachable,
        _ => UpstreamError::Other { errno },
    })
}

impl UpstreamError {
    /// The `upstream_error` label, the same as the `kind` this serializes with; the causes a
    /// connect can have use the connect result's label.
    pub fn label(&self) -> &'static str {
        match self {
            UpstreamError::Refused => ConnectResult::Refused.label(),
            UpstreamError::TimedOut => ConnectResult::Timeout.label(),
            UpstreamError::Reset => ConnectResult::Reset.label(),
            UpstreamError::Unreachable => ConnectResult::Unreachable.label(),
            UpstreamError::NoLiveUpstreams => "no_live_upstreams",
            UpstreamError::PrematureClose => "premature_close",
            UpstreamError::Other { .. } => "error",
        }
    }
}

/// nginx appends ` (NUM: strerror)` right after the message text.
fn trailing_errno(message: &str) -> Option<i32> {
    let inner = message.strip_suffix(')')?;
    let open = inner.rfind(" (")?;
    let (number, _) = inner[open + 2..].split_once(": ")?;
    number.parse().ok()
}

/// Context keys in the order nginx writes them; `true` = value is quoted.
const CONTEXT_KEYS: [(&str, bool); 7] = [
    ("client", false),
    ("server", false),
    ("request", true),
    ("subrequest", true),
    ("upstream", true),
    ("host", true),
    ("referrer", true),
];

type ContextFields<'a> = [Option<&'a str>; 7];

/// Splits `message..., client: ...` into the message part and context values.
/// Request/host/referrer are client-controlled, so the first `, client: ` whose
/// tail parses completely as a context wins; otherwise everything is message.
fn split_context(body: &str) -> (&str, ContextFields<'_>) {
    for (at, _) in body.match_indices(", client: ") {
        if let Some(fields) = parse_context(&body[at..]) {
            return (&body[..at], fields);
        }
    }
    (body, [None; 7])
}

fn parse_context(mut tail: &str) -> Option<ContextFields<'_>> {
    let mut fields = [None; 7];
    let mut next = 0;
    while !tail.is_empty() {
        let (key, rest) =
            (next..CONTEXT_KEYS.len()).find_map(|k| Some((k, field_value_start(tail, k)?)))?;
        let (value, after) = if CONTEXT_KEYS[key].1 {
            let rest = rest.strip_prefix('"')?;
            let end = rest
                .match_indices('"')
                .map(|(i, _)| i)
                .find(|&i| value_ends(&rest[i + 1..], key))?;
            (&rest[..end], &rest[end + 1..])
        } else {
            let end = rest
                .match_indices(", ")
                .map(|(i, _)| i)
                .find(|&i| value_ends(&rest[i..], key));
            let (value, after) = rest.split_at(end.unwrap_or(rest.len()));
            // client is an address and server a name: neither has spaces or quotes.
            if value.contains([' ', '"']) {
                return None;
            }
            (value, after)
        };
        fields[key] = Some(value);
        next = key + 1;
        tail = after;
    }
    Some(fields)
}

/// If `s` starts with `, KEY: ` (plus `"` for quoted keys), returns what follows `: `.
fn field_value_start(s: &str, key: usize) -> Option<&str> {
    let (name, quoted) = CONTEXT_KEYS[key];
    let rest = s
        .strip_prefix(", ")?
        .strip_prefix(name)?
        .strip_prefix(": ")?;
    (!quoted || rest.starts_with('"')).then_some(rest)
}

/// A value of field `key` may end here if the line ends or a later field starts.
fn value_ends(s: &str, key: usize) -> bool {
    s.is_empty() || (key + 1..CONTEXT_KEYS.len()).any(|k| field_value_start(s, k).is_some())
}

/// Parses `YYYY/MM/DD HH:MM:SS`, treating it as UTC.
fn parse_time(t: &str) -> Option<i64> {
    let b = t.as_bytes();
    let seps_ok = [(4, b'/'), (7, b'/'), (10, b' '), (13, b':'), (16, b':')]
        .iter()
        .all(|&(i, c)| b.get(i) == Some(&c));
    if !seps_ok || b.len() != TIME_LEN {
        return None;
    }
    let num = |from: usize, to: usize| -> Option<u32> {
        let s = &t[from..to];
        s.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| s.parse().ok())?
    };
    civil_to_unix(
        num(0, 4)?,
        num(5, 7)?,
        num(8, 10)?,
        num(11, 13)?,
        num(14, 16)?,
        num(17, 19)?,
    )
}

#[cfg(test)]
mod tests;
