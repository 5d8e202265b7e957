//! Parses nginx error.log lines and classifies upstream failures.
//!
//! Line layout (ngx_log_error_core + ngx_http_log_error):
//! `TIME [level] PID#TID: [*CID ]message[ (errno: strerror)][ while phase][, client: X, server: Y, request: "..", upstream: "..", host: "..", referrer: ".."]`
//!
//! Failures are classified by the errno NUMBER, never by its text: musl and
//! glibc word strerror() differently.

use serde::Serialize;

use vigil_wire::ConnectResult;

use crate::clock::civil_to_unix;

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
mod tests {
    use super::*;

    // Lines below were produced by nginx 1.22.1 against local test backends.
    const REFUSED: &str = r#"2026/11/25 12:51:12 [error] 6977#6977: *12 connect() failed (111: Connection refused) while connecting to upstream, client: 127.0.0.1, server: localhost, request: "GET /dead HTTP/1.1", upstream: "http://127.0.0.1:18084/dead", host: "127.0.0.1:18080""#;
    const TIMED_OUT: &str = r#"2026/11/25 12:51:21 [error] 7153#7153: *27 upstream timed out (110: Connection timed out) while reading response header from upstream, client: 127.0.0.1, server: localhost, request: "GET /api/x/slow HTTP/1.1", upstream: "http://127.0.0.1:18085/api/x/slow", host: "127.0.0.1:18080""#;
    const PREMATURE: &str = r#"2026/11/25 12:51:11 [error] 6977#6977: *8 upstream prematurely closed connection while reading response header from upstream, client: 127.0.0.1, server: localhost, request: "GET /api/close HTTP/1.1", upstream: "http://127.0.0.1:18085/api/close", host: "127.0.0.1:18080""#;
    const RESET: &str = r#"2026/11/25 12:51:11 [error] 6977#6977: *10 recv() failed (104: Connection reset by peer) while reading response header from upstream, client: 127.0.0.1, server: localhost, request: "GET /api/reset HTTP/1.1", upstream: "http://127.0.0.1:18085/api/reset", host: "127.0.0.1:18080""#;
    const NO_LIVE: &str = r#"2026/11/25 12:51:12 [error] 6977#6977: *19 no live upstreams while connecting to upstream, client: 127.0.0.1, server: localhost, request: "GET /close HTTP/1.1", upstream: "http://backend/close", host: "127.0.0.1:18080""#;
    const UNIX_ENOENT: &str = r#"2026/11/25 12:51:21 [crit] 7154#7154: *31 connect() to unix:/tmp/ngx-real/none.sock failed (2: No such file or directory) while connecting to upstream, client: 127.0.0.1, server: _, request: "GET / HTTP/1.1", upstream: "http://unix:/tmp/ngx-real/none.sock:/", host: "127.0.0.1:18081", referrer: "http://ref.example/""#;
    const NOTICE: &str = "2026/11/25 12:51:18 [notice] 7152#7152: signal process started";
    const KEEPALIVE: &str =
        "2026/11/25 12:51:12 [info] 6976#6976: *22 client 127.0.0.1 closed keepalive connection";

    fn parse(line: &str) -> ErrorLogRecord {
        parse_error_line(line).unwrap()
    }

    #[test]
    fn refused_with_full_context() {
        let r = parse(REFUSED);
        assert_eq!(r.time, "2026/11/25 12:51:12");
        assert_eq!(r.timestamp, 1_795_611_072);
        assert_eq!(
            (r.level, r.pid, r.connection),
            (ErrorLevel::Error, 6977, Some(12))
        );
        assert_eq!(r.message, "connect() failed (111: Connection refused)");
        assert_eq!(r.errno, Some(111));
        assert_eq!(r.phase.as_deref(), Some("connecting to upstream"));
        assert_eq!(r.client.as_deref(), Some("127.0.0.1"));
        assert_eq!(r.server.as_deref(), Some("localhost"));
        assert_eq!(r.request.as_deref(), Some("GET /dead HTTP/1.1"));
        assert_eq!(r.upstream.as_deref(), Some("http://127.0.0.1:18084/dead"));
        assert_eq!(r.host.as_deref(), Some("127.0.0.1:18080"));
        assert_eq!(r.referrer, None);
        assert_eq!(r.upstream_error, Some(UpstreamError::Refused));
    }

    #[test]
    fn classification_uses_errno_numbers_and_nginx_messages() {
        let cases = [
            (TIMED_OUT, UpstreamError::TimedOut),
            (PREMATURE, UpstreamError::PrematureClose),
            (RESET, UpstreamError::Reset),
            (NO_LIVE, UpstreamError::NoLiveUpstreams),
            (UNIX_ENOENT, UpstreamError::Other { errno: Some(2) }),
        ];
        for (line, expected) in cases {
            assert_eq!(parse(line).upstream_error, Some(expected), "{line}");
        }
        assert_eq!(
            parse(TIMED_OUT).phase.as_deref(),
            Some("reading response header from upstream")
        );
        assert_eq!(
            parse(UNIX_ENOENT).referrer.as_deref(),
            Some("http://ref.example/")
        );
        // musl words errors differently; only the number matters.
        let musl = REFUSED.replace("Connection refused", "Connection refused by remote host");
        assert_eq!(parse(&musl).upstream_error, Some(UpstreamError::Refused));
        let unreachable = REFUSED.replace("111: Connection refused", "113: No route to host");
        assert_eq!(
            parse(&unreachable).upstream_error,
            Some(UpstreamError::Unreachable)
        );
        let netunreach = REFUSED.replace("111: Connection refused", "101: Network is unreachable");
        assert_eq!(
            parse(&netunreach).upstream_error,
            Some(UpstreamError::Unreachable)
        );
    }

    #[test]
    fn non_upstream_lines() {
        let n = parse(NOTICE);
        assert_eq!(
            (n.level, n.connection, n.errno),
            (ErrorLevel::Notice, None, None)
        );
        assert_eq!(n.message, "signal process started");
        assert_eq!((n.client, n.upstream_error), (None, None));
        let k = parse(KEEPALIVE);
        assert_eq!((k.connection, k.upstream_error), (Some(22), None));
        assert_eq!(k.message, "client 127.0.0.1 closed keepalive connection");
    }

    #[test]
    fn client_controlled_values_cannot_fake_fields() {
        let line = r#"2026/11/25 12:51:12 [error] 1#1: *3 open() "/srv/a, client: x" failed (2: No such file or directory), client: 10.0.0.1, server: , request: "GET /a, host: "evil" HTTP/1.1", host: "h""#;
        let r = parse(line);
        assert_eq!(
            r.message,
            r#"open() "/srv/a, client: x" failed (2: No such file or directory)"#
        );
        assert_eq!(r.server.as_deref(), Some(""));
        assert_eq!(
            r.request.as_deref(),
            Some(r#"GET /a, host: "evil" HTTP/1.1"#)
        );
        assert_eq!(r.host.as_deref(), Some("h"));
        assert_eq!(r.upstream_error, None);
    }

    #[test]
    fn truncated_context_is_kept_in_phase() {
        let cut = &REFUSED[..REFUSED.find("upstream: \"http").unwrap() + 15];
        let r = parse(cut);
        assert_eq!(r.message, "connect() failed (111: Connection refused)");
        assert!(
            r.phase.as_deref().unwrap().ends_with("upstream: \"http"),
            "{:?}",
            r.phase
        );
        assert_eq!(
            (r.client, r.upstream_error),
            (None, Some(UpstreamError::Refused))
        );
    }

    #[test]
    fn garbage_is_an_error_that_keeps_the_line() {
        for bad in [
            "",
            "2026/11/25 12:5",
            "hello world, this is not nginx at all",
            "2026/11/25 12:51:12 [bogus] 1#1: x",
            "2026/13/25 12:51:12 [error] 1#1: x",
            "2026/11/25 12:51:12 [error] x#1: y",
            "2026/11/25 12:51:12 [error] 1#1",
        ] {
            let err = parse_error_line(bad).unwrap_err();
            assert_eq!(err.line, bad);
        }
        let e = parse_error_line("2026/11/25 12:51:12 [érror] 1#1: x\n").unwrap_err();
        assert_eq!(e.reason, "unknown level");
    }
}
