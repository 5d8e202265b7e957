//! nginx as the agent sees it: find the running masters (`discover`), read their
//! configuration (`config`), follow and parse their logs (`tail`, `error_log`, `access_log`),
//! and the view that ties them together for the commands (`view`).

pub mod access_log;
pub mod config;
pub mod discover;
pub mod error_log;
pub mod tail;
pub mod view;

pub use access_log::{
    AccessLogParseError, AccessLogRecord, FormatError, LogFormat, UpstreamValues,
};
pub use config::{
    parse_nginx_time, AccessLog, ConfigError, NginxConfig, ProxyPass, ProxyTarget, Upstream,
};
pub use discover::{
    dump_config, find_nginx, run_config_dump, DiscoverError, DumpError, NginxInstance,
};
pub use error_log::{
    parse_error_line, ErrorLevel, ErrorLogParseError, ErrorLogRecord, UpstreamError,
};
pub use tail::{LogTail, StartAt, TailError, TailLine};
