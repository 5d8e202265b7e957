//! The `vigil-agent` command line: parses, then hands over to `cmd`.
use clap::{Parser, Subcommand};
use vigil_agent::cmd::{inspect, run, trace};

#[derive(Parser)]
#[command(name = "vigil-agent", version, about = "vigil's per-node agent")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print one JSON object per finished connection to the watched ports.
    Trace(trace::TraceArgs),
    /// Watch the node and stream batches to a vigil-collector.
    Run(run::RunArgs),
    /// Report nginx, the upstreams' owners, accept queues and worker CPU as JSON.
    Inspect(inspect::InspectArgs),
}

fn main() -> anyhow::Result<()> {
    vigil_wire::logging::init();
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    match cli.command {
        Command::Trace(args) => runtime.block_on(trace::run(args)),
        Command::Run(args) => runtime.block_on(run::run(args)),
        Command::Inspect(args) => runtime.block_on(inspect::run(args)),
    }
}
