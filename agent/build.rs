//! Builds the eBPF object from `agent-ebpf` (nightly pinned in its rust-toolchain.toml) and
//! leaves it in OUT_DIR for `include_bytes_aligned!`. Cargo only reruns this when agent-ebpf
//! changes, so the eBPF object is not rebuilt for agent-only edits.
use std::path::Path;

fn main() -> anyhow::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../agent-ebpf");
    let root = root.canonicalize()?;
    let toolchain = std::fs::read_to_string(root.join("rust-toolchain.toml"))?;
    let channel = toolchain
        .lines()
        .find_map(|l| l.trim().strip_prefix("channel = "))
        .map(|c| c.trim_matches('"').to_owned())
        .unwrap_or_else(|| "nightly".to_owned());
    let root_dir = root.to_str().expect("utf-8 path");
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "vigil-agent-ebpf",
            root_dir,
            ..Default::default()
        }],
        aya_build::Toolchain::Custom(&channel),
    )
}
