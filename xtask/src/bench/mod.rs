//! `cargo xtask bench probes | agent | collector | fuzz | alerts`. `probes` measures what the agent costs:
//! connect() latency with and without the probes and the agent's CPU (connect.rs), then
//! nginx's proxied requests/s with and without the agent (nginx.rs). `collector` runs the
//! collector's bench target (ingest events/s and Loki encode lines/s on one core). `fuzz`
//! runs the ingest decoder fuzz (10 M executions: no crash, no allocation past the bounds).
//! `fleet` runs 1,000+ synthetic agents against one release collector (fleet.rs).
//! `agent` measures `vigil-agent run`'s memory and bytes on the wire under load (memory.rs,
//! with traffic.rs and a stand-in collector, sink.rs).
//! `alerts` times the demo's 502 and 504 from the first failing request to the alert on the
//! terminal and in the mailbox (alerts.rs, on the demo's site).
//!
//! Layers, arrows downward only: this file → connect.rs, nginx.rs → agent.rs (the agent as
//! a child process), stats.rs (percentiles, verdicts, reports).
mod agent;
mod alerts;
mod bpf_stats;
mod connect;
mod fleet;
mod memory;
mod nginx;
mod sink;
mod stats;
mod traffic;

use crate::{
    cmd::{bin_dir, build, cmd, require_root},
    setup,
};

pub fn run(which: &str) -> anyhow::Result<()> {
    match which {
        "probes" => probes(),
        "agent" => memory::run(),
        "collector" => collector(),
        "fuzz" => fuzz(),
        "alerts" => alerts::run(),
        "fleet" => fleet::run(),
        other => {
            anyhow::bail!(
                "unknown benchmark `{other}` (available: probes, agent, collector, fuzz, alerts, fleet)"
            )
        }
    }
}

fn collector() -> anyhow::Result<()> {
    cmd("cargo")
        .args(["bench", "-p", "vigil-collector", "--bench", "collector"])
        .run()
}

fn fuzz() -> anyhow::Result<()> {
    cmd("cargo")
        .args(["bench", "-p", "vigil-collector", "--bench", "fuzz"])
        .run()
}

fn probes() -> anyhow::Result<()> {
    require_root()?;
    agent::refuse_other_agents()?;
    setup::run()?;
    build(true)?;
    let agent_bin = bin_dir(true).join("vigil-agent");
    connect::latency_and_agent_cpu(&agent_bin)?;
    nginx::proxied_requests(&agent_bin)
}
