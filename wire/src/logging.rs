//! How both binaries log (`tracing`): to stderr, filtered by `VIGIL_LOG` (default `info`),
//! colour only when stderr is a terminal (journald and `kubectl logs` get plain text), and
//! one JSON object per event with `VIGIL_LOG_FORMAT=json` for log pipelines.
use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

pub fn init() {
    let filter = EnvFilter::try_from_env("VIGIL_LOG").unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter);
    if std::env::var("VIGIL_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json")) {
        builder.json().with_ansi(false).init();
    } else {
        builder.with_ansi(std::io::stderr().is_terminal()).init();
    }
}
