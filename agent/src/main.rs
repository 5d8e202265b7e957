//! The `vigil-agent` command line.
use std::{collections::BTreeSet, path::PathBuf, time::Duration};

use clap::{Parser, Subcommand};
use vigil_agent::{inspect, ports, run, trace};

#[derive(Parser)]
#[command(name = "vigil-agent", version, about = "vigil's per-node agent")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print one JSON object per finished connection to the watched ports.
    Trace {
        /// Destination ports to watch, e.g. `8080-8099,9000`.
        #[arg(long, value_parser = parse_ports)]
        ports: BTreeSet<u16>,
        /// Stop after this long (`30s`, `500ms`, `2m`); default: until Ctrl-C.
        #[arg(long, value_parser = parse_duration)]
        duration: Option<Duration>,
    },
    /// Watch the node and stream batches to a vigil-collector.
    Run {
        /// Collector base URL, e.g. http://127.0.0.1:9470.
        #[arg(long, env = "VIGIL_COLLECTOR")]
        collector: String,
        /// File holding the collector's bearer token.
        #[arg(long, env = "VIGIL_TOKEN_FILE")]
        token_file: Option<PathBuf>,
        /// Node name in every record (default: the hostname).
        #[arg(long, env = "VIGIL_NODE")]
        node: Option<String>,
        /// Upstream ports; default: every upstream port in nginx's configuration.
        #[arg(long, value_parser = parse_ports)]
        ports: Option<BTreeSet<u16>>,
        /// nginx error.log to follow instead of the ones in nginx's configuration.
        #[arg(long)]
        nginx_error_log: Option<PathBuf>,
        /// nginx access.log (combined format) instead of the configured ones.
        #[arg(long)]
        nginx_access_log: Option<PathBuf>,
        /// Where the spool lives while the collector is away.
        #[arg(long, env = "VIGIL_STATE_DIR", default_value = "/var/lib/vigil-agent")]
        state_dir: PathBuf,
        /// How often upstreams and processes are sampled.
        #[arg(long, default_value = "5s", value_parser = parse_duration)]
        interval: Duration,
        /// Spool bound in memory, in MiB, before spilling to disk.
        #[arg(long, default_value_t = 16)]
        spool_memory_mib: usize,
        /// Spool bound on disk, in MiB; past it the oldest batches are dropped (and counted).
        #[arg(long, default_value_t = 256)]
        spool_disk_mib: u64,
    },
    /// Report nginx, the upstreams' owners, accept queues and worker CPU as JSON.
    Inspect {
        /// Upstream ports; default: every upstream port in nginx's configuration.
        #[arg(long, value_parser = parse_ports)]
        ports: Option<BTreeSet<u16>>,
        /// Time between samples (CPU ratios are measured over it).
        #[arg(long, default_value = "2s", value_parser = parse_duration)]
        interval: Duration,
        /// Keep printing snapshots, and upstream changes as they happen.
        #[arg(long)]
        watch: bool,
        /// With --watch, stop after this long.
        #[arg(long, value_parser = parse_duration)]
        duration: Option<Duration>,
        /// nginx error.log to follow instead of the ones in nginx's configuration.
        #[arg(long)]
        nginx_error_log: Option<PathBuf>,
        /// nginx access.log (combined format) instead of the configured ones.
        #[arg(long)]
        nginx_access_log: Option<PathBuf>,
    },
}

/// `8080-8099,9000` → the ports.
fn parse_ports(text: &str) -> Result<BTreeSet<u16>, String> {
    ports::parse_port_list(text).map_err(|e| e.to_string())
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not a duration like 30s"))?;
    let secs = match unit {
        "ms" => value / 1000.0,
        "" | "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => return Err(format!("unknown unit in `{text}` (use ms, s, m or h)")),
    };
    Ok(Duration::from_secs_f64(secs))
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("VIGIL_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .init();
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    match cli.command {
        Command::Trace { ports, duration } => runtime.block_on(trace::run(ports, duration)),
        Command::Run {
            collector,
            token_file,
            node,
            ports,
            nginx_error_log,
            nginx_access_log,
            state_dir,
            interval,
            spool_memory_mib,
            spool_disk_mib,
        } => runtime.block_on(run::run(run::RunArgs {
            collector,
            token_file,
            node,
            ports,
            error_log: nginx_error_log,
            access_log: nginx_access_log,
            state_dir,
            interval,
            spool_memory_bytes: spool_memory_mib << 20,
            spool_disk_bytes: spool_disk_mib << 20,
        })),
        Command::Inspect {
            ports,
            interval,
            watch,
            duration,
            nginx_error_log,
            nginx_access_log,
        } => runtime.block_on(inspect::run(inspect::InspectArgs {
            ports,
            interval,
            watch,
            duration,
            error_log: nginx_error_log,
            access_log: nginx_access_log,
        })),
    }
}
