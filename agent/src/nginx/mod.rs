//! nginx as the agent sees it: find the running masters and believe only root ones
//! (`discover`, `trust`, `procdir`), read their configuration as files inside their root
//! (`paths`, `in_root`, `config`), follow and parse their logs (`tail`, `error_log`,
//! `access_log`), and the view that ties them together for the commands (`sources`, `view`).
//! The agent never executes a program to learn about nginx.

pub mod access_log;
pub mod config;
pub mod discover;
pub mod error_log;
pub mod in_root;
pub mod paths;
pub mod procdir;
pub mod sources;
pub mod tail;
pub mod trust;
pub mod view;

pub use access_log::{
    AccessLogParseError, AccessLogRecord, FormatError, LogFormat, UpstreamValues,
};
pub use config::{
    parse_nginx_time, AccessLog, ConfigError, LoadReport, NginxConfig, ProxyPass, ProxyTarget,
    Upstream,
};
pub use discover::{find_nginx, DiscoverError, Discovery, IgnoredMaster, NginxInstance};
pub use error_log::{
    parse_error_line, ErrorLevel, ErrorLogParseError, ErrorLogRecord, UpstreamError,
};
pub use tail::{LogTail, StartAt, TailError, TailLine};

/// An error and its sources on one line, for logs and reports.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
