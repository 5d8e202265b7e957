//! nginx integration: find the running nginx, read its configuration, and
//! follow and parse its error/access logs to explain 502/504 responses.

pub mod access_log;
pub mod config;
pub mod discover;
pub mod error_log;
pub mod tail;

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
