//! vigil-agent: watches upstream connections in the kernel (eBPF), who owns the upstream
//! ports, how busy their workers are, and what nginx logs about them.
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};

mod btf;
mod listeners;
mod owners;
mod procs;
mod upstreams;
mod clock;
mod ports;
mod probes;
mod trace;
mod tracker;

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
        #[arg(long)]
        ports: String,
        /// Stop after this long (`30s`, `500ms`, `2m`); default: until Ctrl-C.
        #[arg(long, value_parser = parse_duration)]
        duration: Option<Duration>,
    },
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number.parse().map_err(|_| format!("`{text}` is not a duration like 30s"))?;
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
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    match cli.command {
        Command::Trace { ports, duration } => {
            let ports = ports::parse_port_list(&ports).context("--ports")?;
            runtime.block_on(trace::run(ports, duration))
        }
    }
}
