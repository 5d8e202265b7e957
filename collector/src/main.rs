//! The `vigil-collector` command line.
use anyhow::Context;
use clap::Parser;
use vigil_collector::config::{CollectorConfig, Overrides};

#[derive(Parser)]
#[command(name = "vigil-collector", version, about = "vigil's collector")]
struct Cli {
    #[command(flatten)]
    overrides: Overrides,
}

fn main() -> anyhow::Result<()> {
    vigil_wire::logging::init();
    let cli = Cli::parse();
    let config = CollectorConfig::load(&cli.overrides).context("invalid configuration")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(vigil_collector::serve(config))
}
