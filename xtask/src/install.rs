//! `cargo xtask install`: vigil as two systemd services on a Debian host. Builds the release
//! binaries, installs them to /usr/local/bin and the units to /etc/systemd/system, and
//! creates /etc/vigil with the example configuration and a fresh token (files 0600, kept
//! when they exist). Loads the units when systemd runs; says so when it does not.
use std::{
    fs,
    io::{Read, Write},
    os::unix::fs::{OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{bail, Context};

use crate::cmd::{bin_dir, build, workspace_root};

const BINARIES: [&str; 2] = ["vigil-agent", "vigil-collector"];
const UNITS: [&str; 2] = ["vigil-agent.service", "vigil-collector.service"];
/// Examples from deploy/systemd copied to /etc/vigil (never overwritten), and their modes.
/// The env files are read by systemd (root); collector.toml by the collector's transient
/// user, so it is world-readable and holds no secret: those are separate files that the
/// units hand over with LoadCredential=.
const CONFIGS: [(&str, u32); 3] = [
    ("agent.env", 0o600),
    ("collector.env", 0o600),
    ("collector.toml", 0o644),
];

#[derive(clap::Args)]
pub struct InstallArgs {
    /// Install under this directory instead of / (packaging, tests); systemd is then
    /// left alone.
    #[arg(long, default_value = "/")]
    root: PathBuf,
    /// Take the binaries from this directory instead of building the release ones.
    #[arg(long)]
    bin_dir: Option<PathBuf>,
}

pub fn run(args: &InstallArgs) -> anyhow::Result<()> {
    let real_system = args.root == Path::new("/");
    if real_system {
        crate::cmd::require_root()?;
    }
    let bins = match &args.bin_dir {
        Some(dir) => dir.clone(),
        None => {
            build(true)?;
            bin_dir(true)
        }
    };
    check_bins(&bins)?;
    let root = &args.root;
    for name in BINARIES {
        let to = root.join("usr/local/bin").join(name);
        replace_file(&bins.join(name), &to, 0o755)?;
        println!("installed {}", to.display());
    }
    let systemd = workspace_root().join("deploy/systemd");
    for unit in UNITS {
        let to = root.join("etc/systemd/system").join(unit);
        replace_file(&systemd.join(unit), &to, 0o644)?;
        println!("installed {}", to.display());
    }
    let etc = root.join("etc/vigil");
    create_dir(&etc, 0o755)?;
    for (name, mode) in CONFIGS {
        let text = fs::read(systemd.join(name)).with_context(|| name.to_owned())?;
        report(&etc.join(name), create_new(&etc.join(name), &text, mode)?);
    }
    report(
        &etc.join("token"),
        create_new(&etc.join("token"), new_token()?.as_bytes(), 0o600)?,
    );
    // Empty until mail is configured: the unit's LoadCredential= needs the file to exist.
    report(
        &etc.join("smtp-password"),
        create_new(&etc.join("smtp-password"), b"", 0o600)?,
    );
    if real_system {
        reload_systemd();
    } else {
        println!("systemd left alone (--root {})", root.display());
    }
    println!(
        "start them with:\n  systemctl enable --now vigil-collector.service vigil-agent.service"
    );
    Ok(())
}

fn report(path: &Path, created: bool) {
    let verb = if created { "created" } else { "kept existing" };
    println!("{verb} {}", path.display());
}

fn create_dir(dir: &Path, mode: u32) -> anyhow::Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {}", dir.display()))
}

/// Copies `from` next to `to`, then renames it over `to`: a running binary is replaced, not
/// written into (ETXTBSY), and nobody sees a half-written file.
fn replace_file(from: &Path, to: &Path, mode: u32) -> anyhow::Result<()> {
    let dir = to.parent().context("target has a parent")?;
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let tmp = dir.join(format!(
        ".{}.new",
        to.file_name().unwrap_or_default().to_string_lossy()
    ));
    fs::copy(from, &tmp)
        .with_context(|| format!("copying {} to {}", from.display(), tmp.display()))?;
    fs::set_permissions(&tmp, fs::Permissions::from_mode(mode))?;
    fs::rename(&tmp, to).with_context(|| format!("renaming {} to {}", tmp.display(), to.display()))
}

/// Writes `content` to a new file with `mode` (not widened by the umask, nor readable
/// before it is set); false, nothing written, when it exists: a second install keeps the
/// token agents already use and the operator's edits.
fn create_new(path: &Path, content: &[u8], mode: u32) -> anyhow::Result<bool> {
    let file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode & 0o600)
        .open(path);
    match file {
        Ok(mut f) => {
            f.write_all(content)
                .with_context(|| format!("writing {}", path.display()))?;
            fs::set_permissions(path, fs::Permissions::from_mode(mode))
                .with_context(|| format!("chmod {}", path.display()))?;
            Ok(true)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e).with_context(|| format!("creating {}", path.display())),
    }
}

/// 32 random bytes as hex, from the kernel's CSPRNG.
fn new_token() -> anyhow::Result<String> {
    let mut bytes = [0u8; 32];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("reading /dev/urandom")?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect::<String>() + "\n")
}

/// `systemctl daemon-reload` where systemd is the init system (sd_booted: /run/systemd/system
/// exists); elsewhere (containers, CI) the units stay installed and unloaded, and it says so.
fn reload_systemd() {
    if !Path::new("/run/systemd/system").is_dir() {
        println!(
            "systemd is not running here (no /run/systemd/system): units installed, not loaded"
        );
        return;
    }
    let status = Command::new("systemctl")
        .arg("daemon-reload")
        .stdin(Stdio::null())
        .status();
    match status {
        Ok(s) if s.success() => println!("systemctl daemon-reload: done"),
        Ok(s) => println!("systemctl daemon-reload failed ({s}): run it yourself"),
        Err(e) => println!("systemctl not usable ({e}): run `systemctl daemon-reload` yourself"),
    }
}

/// Fails early with a clear message when a binary to install is missing.
fn check_bins(dir: &Path) -> anyhow::Result<()> {
    for name in BINARIES {
        if !dir.join(name).is_file() {
            bail!("{} missing in {}", name, dir.display());
        }
    }
    Ok(())
}
