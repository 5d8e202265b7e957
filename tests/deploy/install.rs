//! `cargo xtask install --root DIR`: binaries, units and /etc/vigil laid out as on a host,
//! secrets 0600, a fresh token, and a second run that keeps what the operator has.
use std::{os::unix::fs::PermissionsExt, path::Path, process::Command};

use vigil_e2e::bin;

use crate::{run, tools::repo, tools::scratch};

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

fn install(root: &Path) -> String {
    let bins = bin("vigil-agent").parent().unwrap().to_owned();
    let ran = run(Command::new(bin("xtask"))
        .arg("install")
        .arg("--root")
        .arg(root)
        .arg("--bin-dir")
        .arg(&bins));
    assert!(
        ran.ok,
        "xtask install --root {}:\n{}",
        root.display(),
        ran.output
    );
    ran.output
}

#[test]
fn deploy_install_lays_out_a_host() {
    let root = scratch("install");
    let said = install(&root);
    assert!(said.contains("systemctl enable --now vigil-collector.service vigil-agent.service"));
    assert!(
        said.contains("systemd left alone"),
        "a --root install must not touch systemd"
    );
    for name in ["vigil-agent", "vigil-collector"] {
        let installed = root.join("usr/local/bin").join(name);
        assert_eq!(mode(&installed), 0o755);
        assert_eq!(
            std::fs::read(&installed).unwrap(),
            std::fs::read(bin(name)).unwrap()
        );
        let unit = format!("{name}.service");
        let shipped = std::fs::read(repo().join("deploy/systemd").join(&unit)).unwrap();
        let placed = root.join("etc/systemd/system").join(&unit);
        assert_eq!(std::fs::read(&placed).unwrap(), shipped, "{unit}");
        assert_eq!(mode(&placed), 0o644);
    }
    let etc = root.join("etc/vigil");
    for (file, expected_mode) in [
        ("agent.env", 0o600),
        ("collector.env", 0o600),
        ("collector.toml", 0o644),
        ("token", 0o600),
        ("smtp-password", 0o600),
    ] {
        assert_eq!(mode(&etc.join(file)), expected_mode, "{file}");
    }
    let token = std::fs::read_to_string(etc.join("token")).unwrap();
    let token = token.trim();
    assert!(
        token.len() == 64 && token.chars().all(|c| c.is_ascii_hexdigit()),
        "token: {token:?}"
    );
    // A second install keeps the token agents use and the operator's edits.
    std::fs::write(etc.join("agent.env"), "VIGIL_PORTS=8080\n").unwrap();
    let said = install(&root);
    assert!(said.contains("kept existing"), "{said}");
    assert_eq!(
        std::fs::read_to_string(etc.join("token")).unwrap().trim(),
        token
    );
    assert_eq!(
        std::fs::read_to_string(etc.join("agent.env")).unwrap(),
        "VIGIL_PORTS=8080\n"
    );
    let other = scratch("install-other");
    install(&other);
    let other_token = std::fs::read_to_string(other.join("etc/vigil/token")).unwrap();
    assert_ne!(
        other_token.trim(),
        token,
        "each install draws its own token"
    );
}
