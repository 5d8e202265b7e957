//! `cargo xtask setup | build-ebpf | run | demo | test | bench` — the two commands a fresh Debian
//! machine needs (`demo`, `run`, `test`) install everything they use first.
use clap::{Parser, Subcommand};

mod alert_view;
mod bench;
mod cmd;
mod dashboards;
mod demo;
mod http;
mod install;
mod interrupt;
mod procs;
mod setup;
mod tasks;
mod term;

#[derive(Parser)]
#[command(name = "xtask")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Install what the build and tests need (idempotent; skips what is there).
    Setup,
    /// Build the eBPF object and the binaries.
    BuildEbpf,
    /// Build and run vigil on this machine: the collector, and the agent watching the local nginx.
    Run {
        /// Extra arguments for `vigil-agent run` (e.g. `--ports 8080-8099`).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// See vigil at work, nothing to configure: a throwaway site (nginx, three python
    /// upstreams, the agent, the collector, a mail sink) under target/vigil-demo, where a
    /// deploy dies at start (502) and workers loop at 100% CPU (504); each diagnosis and its
    /// mail as they come, then both healed and resolved.
    Demo,
    /// Set up, then run every test (unit and end-to-end against real nginx and probes).
    Test {
        /// Only tests whose name contains this.
        filter: Option<String>,
    },
    /// Install vigil as two systemd services on this host (binaries, units, /etc/vigil).
    Install(install::InstallArgs),
    /// Benchmarks: `probes` (connect() latency with and without the probes, agent CPU,
    /// nginx's proxied requests/s with and without the agent),
    /// `collector` (ingest events/s and Loki encode lines/s per core), `fuzz`,
    /// `alerts` (first failing request → alert on the terminal and in the mailbox, 502 and 504),
    /// `agent` (agent memory under load), `fleet` (1,000 synthetic agents against one collector).
    Bench {
        #[arg(default_value = "probes")]
        which: String,
    },
    /// Write the Grafana dashboards (dashboards/grafana/*.json) from their definitions;
    /// `--check` fails instead when the committed files differ.
    Dashboards {
        #[arg(long)]
        check: bool,
    },
}

fn main() -> anyhow::Result<()> {
    let result = match Cli::parse().command {
        Command::Setup => setup::run(),
        Command::BuildEbpf => cmd::build(false),
        Command::Run { args } => tasks::run(&args),
        Command::Demo => demo::run(),
        Command::Test { filter } => tasks::test(filter.as_deref()),
        Command::Bench { which } => bench::run(&which),
        Command::Install(args) => install::run(&args),
        Command::Dashboards { check } => dashboards::run(check),
    };
    if let Some(exit) = result
        .as_ref()
        .err()
        .and_then(|e| e.downcast_ref::<tasks::Exit>())
    {
        eprintln!("{exit}");
        std::process::exit(exit.code);
    }
    result
}
