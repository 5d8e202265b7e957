//! The collector configurations that ship (the ConfigMap's collector.toml, the systemd
//! host's /etc/vigil/collector.toml) start the real collector — as shipped, and with every
//! commented-out example key switched on — and make it demand the token.
use std::{
    os::unix::fs::PermissionsExt,
    path::Path,
    process::{Command, Stdio},
    time::Duration,
};

use vigil_e2e::{bin, free_port, http, wait_for};

use crate::{
    manifests::{find, str_at},
    rendered,
    tools::{repo, scratch},
};

/// `# key = value` example lines made live; prose comments stay comments.
fn uncommented(toml: &str) -> String {
    let example = regex_lite::Regex::new(r"^(\s*)# ([a-z_]+ = .+)$").unwrap();
    toml.lines()
        .map(|l| example.replace(l, "$1$2").into_owned())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Paths moved into `dir`, every URL pointed at a closed port on 127.0.0.1 (nothing leaves
/// this machine; nothing is sent anyway without alerts or log lines).
fn localized(toml: &str, dir: &Path) -> String {
    let secrets = format!("{}/secrets/", dir.display());
    let state = format!("{}/state/", dir.display());
    let text = toml
        .replace("/etc/vigil/secrets/", &secrets)
        .replace("/run/credentials/vigil-collector.service/", &secrets)
        .replace("/var/lib/vigil-collector/", &state);
    let url = regex_lite::Regex::new(r#"(https?|smtps?)://[^/"?]+"#).unwrap();
    let text = url
        .replace_all(&text, format!("$1://127.0.0.1:{}", free_port()).as_str())
        .into_owned();
    let live = text.lines().filter(|l| !l.trim_start().starts_with('#'));
    for line in live {
        for host_path in ["/etc/vigil", "/run/credentials", "/var/lib/vigil"] {
            assert!(!line.contains(host_path), "{host_path} left in `{line}`");
        }
    }
    text
}

fn write_secret(path: &Path, content: &str) {
    std::fs::write(path, content).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// Starts the collector on `toml` (listen moved to 127.0.0.1 by flag, which wins over the
/// file), waits for /readyz, and checks that ingest without the token is refused.
fn starts_and_demands_the_token(tag: &str, toml: &str) {
    let dir = scratch(tag);
    std::fs::create_dir_all(dir.join("secrets")).unwrap();
    write_secret(&dir.join("secrets/token"), "deploy-test-token\n");
    write_secret(&dir.join("secrets/smtp-password"), "deploy-test-password\n");
    let config = dir.join("collector.toml");
    let text = localized(toml, &dir);
    std::fs::write(&config, &text).unwrap();
    let port = free_port();
    let log = dir.join("collector.log");
    let log_file = std::fs::File::create(&log).unwrap();
    let mut child = Command::new(bin("vigil-collector"))
        .arg("--config")
        .arg(&config)
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .stdin(Stdio::null())
        .stdout(log_file.try_clone().unwrap())
        .stderr(log_file)
        .spawn()
        .expect("start vigil-collector");
    let ready = wait_for(Duration::from_secs(10), || {
        http::get(port, "/readyz").is_ok_and(|r| r.status == 200)
    });
    let unauthenticated = http::request(
        "POST",
        port,
        vigil_wire::INGEST_PATH,
        &[("Content-Type", vigil_wire::CONTENT_TYPE)],
        b"batch",
    );
    let _ = child.kill();
    let _ = child.wait();
    let said = std::fs::read_to_string(&log)
        .unwrap_or_else(|e| panic!("{tag}: the collector's log {}: {e}", log.display()));
    assert!(
        ready,
        "{tag}: the collector did not get ready:\n{said}\nconfig:\n{text}"
    );
    let response = unauthenticated
        .unwrap_or_else(|e| panic!("{tag}: ingest without the token got no answer: {e}\n{said}"));
    assert_eq!(
        response.status, 401,
        "{tag}: ingest without the token:\n{said}"
    );
}

#[test]
fn deploy_collector_configs_start_the_real_collector() {
    let base = rendered("deploy/k8s/base");
    let configmap = find(&base, "ConfigMap", "vigil-collector");
    let k8s = str_at(configmap, "/data/collector.toml").to_owned();
    let host = std::fs::read_to_string(repo().join("deploy/systemd/collector.toml")).unwrap();
    for (tag, toml) in [("k8s", &k8s), ("systemd", &host)] {
        let examples = uncommented(toml);
        assert!(examples != *toml, "{tag}: no commented-out example keys");
        starts_and_demands_the_token(&format!("{tag}-shipped"), toml);
        starts_and_demands_the_token(&format!("{tag}-examples"), &examples);
    }
}
