//! Deploy checks (`cargo xtask test deploy`): the K3s manifests, rendered as kustomize
//! would, pass `kubernetes-validate --strict` for the Kubernetes minors K3s maintains; all
//! YAML passes yamllint; the Dockerfile passes hadolint and builds what setup builds; the
//! systemd units pass `systemd-analyze verify` and keep their exposure score; the shipped
//! collector configs start the real collector; the agent knows every flag and variable the
//! manifests give it; the manifests point at each other; `cargo xtask install` lays out a
//! host. The tools come from the venv `cargo xtask setup` makes; a failure shows their output.
#[path = "deploy/kustomize.rs"]
mod kustomize;
#[path = "deploy/manifests.rs"]
mod manifests;
#[path = "deploy/tools.rs"]
mod tools;

use std::{path::Path, process::Command};

use manifests::{array_at, container, env, find, str_at};
use serde_json::Value;
use tools::{repo, run, scratch, venv_bin, yaml_documents};

/// Kubernetes minors maintained in late 2026 (1.35–1.37); K3s ships each of them and its
/// stable channel follows the newest but one. 1.37 is the newest kubernetes-validate 1.37.0
/// carries schemas for.
const K8S_VERSIONS: [&str; 3] = ["1.35.0", "1.36.0", "1.37.0"];
const KUSTOMIZATIONS: [&str; 3] = [
    "deploy/k8s/base",
    "deploy/k8s/overlays/privileged",
    "deploy/k8s/overlays/prometheus-operator",
];

fn rendered(dir: &str) -> Vec<Value> {
    kustomize::render(&repo().join(dir)).unwrap_or_else(|e| panic!("rendering {dir}: {e}"))
}

/// Documents as one YAML stream (JSON is YAML).
fn write_docs(path: &Path, docs: &[Value]) {
    let text: Vec<String> = docs
        .iter()
        .map(|d| serde_json::to_string_pretty(d).unwrap())
        .collect();
    std::fs::write(path, text.join("\n---\n")).unwrap();
}

/// Custom resources: kubernetes-validate has no schema for them (checked in
/// `deploy_manifests_point_at_each_other` instead).
fn is_custom(doc: &Value) -> bool {
    doc["apiVersion"]
        .as_str()
        .is_some_and(|v| v.starts_with("monitoring.coreos.com/"))
}

fn kubernetes_validate(file: &Path, version: &str) -> tools::Ran {
    run(Command::new(venv_bin("kubernetes-validate"))
        .args(["--strict", "-k", version])
        .arg(file))
}

#[test]
fn deploy_manifests_pass_kubernetes_validate_strict() {
    let dir = scratch("validate");
    let mut files = Vec::new();
    for k in KUSTOMIZATIONS {
        let file = dir.join(format!("{}.yaml", k.replace('/', "_")));
        let docs = rendered(k);
        write_docs(&file, &docs);
        files.push((file, docs));
    }
    let example = repo().join("deploy/k8s/secret.example.yaml");
    files.push((example.clone(), yaml_documents(&example).unwrap()));
    for version in K8S_VERSIONS {
        for (file, docs) in &files {
            let ran = kubernetes_validate(file, version);
            let unexpected: Vec<&str> = ran
                .output
                .lines()
                .filter(|l| !l.starts_with("INFO "))
                .filter(|l| !l.contains("Couldn't find schema for kind ServiceMonitor"))
                .collect();
            let passed = ran.output.matches(" passed for resource ").count();
            let with_schema = docs.iter().filter(|d| !is_custom(d)).count();
            assert!(
                ran.ok && unexpected.is_empty() && passed == with_schema && passed > 0,
                "kubernetes-validate --strict -k {version} {}: {passed} of {with_schema} \
                 resources passed:\n{}",
                file.display(),
                ran.output
            );
        }
    }
}

/// The check above can fail: a misspelt field in the DaemonSet is refused.
#[test]
fn deploy_validation_refuses_a_misspelt_field() {
    let mut docs = rendered("deploy/k8s/base");
    let agent = docs
        .iter_mut()
        .find(|d| d["kind"] == "DaemonSet")
        .expect("a DaemonSet");
    agent["spec"]["template"]["spec"]["hostPid"] = Value::Bool(true);
    let file = scratch("misspelt").join("base.yaml");
    write_docs(&file, &docs);
    let ran = kubernetes_validate(&file, K8S_VERSIONS[2]);
    assert!(
        !ran.ok && ran.output.contains("hostPid"),
        "a misspelt hostPID passed:\n{}",
        ran.output
    );
}

#[test]
fn deploy_yaml_passes_yamllint() {
    let config = repo().join(".yamllint");
    let deploy = repo().join("deploy");
    let listed = run(Command::new(venv_bin("yamllint"))
        .arg("--list-files")
        .arg("-c")
        .arg(&config)
        .arg(&deploy));
    let yaml_files = listed
        .output
        .lines()
        .filter(|l| l.ends_with(".yaml"))
        .count();
    assert!(
        listed.ok && yaml_files >= 12,
        "yamllint sees {yaml_files} YAML files under deploy/:\n{}",
        listed.output
    );
    let ran = run(Command::new(venv_bin("yamllint"))
        .args(["--strict", "-f", "parsable", "-c"])
        .arg(&config)
        .arg(&deploy));
    assert!(
        ran.ok && ran.output.trim().is_empty(),
        "yamllint --strict deploy/:\n{}",
        ran.output
    );
}

/// `const NAME: &str = "value";` from xtask/src/setup.rs.
fn setup_const(name: &str) -> String {
    let setup = std::fs::read_to_string(repo().join("xtask/src/setup.rs")).unwrap();
    let line = setup
        .lines()
        .find(|l| l.starts_with(&format!("const {name}: &str = ")))
        .unwrap_or_else(|| panic!("no {name} in xtask/src/setup.rs"));
    line.split('"').nth(1).unwrap().to_owned()
}

#[test]
fn deploy_dockerfile_passes_hadolint_and_builds_like_setup() {
    let dockerfile = repo().join("deploy/Dockerfile");
    let ran = run(Command::new(venv_bin("hadolint"))
        .args(["--no-color", "--failure-threshold", "style"])
        .arg(&dockerfile));
    assert!(
        ran.ok && ran.output.trim().is_empty(),
        "hadolint deploy/Dockerfile:\n{}",
        ran.output
    );
    let text = std::fs::read_to_string(&dockerfile).unwrap();
    let linker = format!(
        "bpf-linker --version \"~{}\"",
        setup_const("BPF_LINKER_VERSION")
    );
    for needed in [
        linker.as_str(),
        "LLVM_PREFIX=/usr/lib/llvm-22",
        "--features llvm-22",
        "llvm-22-dev libpolly-22-dev",
        // The eBPF nightly is read from its pin, never written twice.
        "COPY agent-ebpf/rust-toolchain.toml",
        "--component rust-src",
        "/usr/local/bin/",
    ] {
        assert!(text.contains(needed), "deploy/Dockerfile lacks `{needed}`");
    }
    assert!(
        !text.contains("nightly-20"),
        "the nightly is pinned in one place"
    );
}

#[test]
fn deploy_systemd_units_pass_systemd_analyze_verify() {
    let dir = scratch("units");
    let mut units = Vec::new();
    for name in ["vigil-agent", "vigil-collector"] {
        let unit = format!("{name}.service");
        let text = std::fs::read_to_string(repo().join("deploy/systemd").join(&unit)).unwrap();
        // verify wants ExecStart's binary to exist: the built one stands in for the
        // installed path (only that path is rewritten).
        let installed = format!("ExecStart=/usr/local/bin/{name}");
        assert!(text.contains(&installed), "{unit}: no `{installed}`");
        let built = vigil_e2e::bin(name);
        let text = text.replace(&installed, &format!("ExecStart={}", built.display()));
        std::fs::write(dir.join(&unit), text).unwrap();
        units.push(dir.join(&unit));
    }
    let verify = |files: &[std::path::PathBuf]| {
        run(Command::new("systemd-analyze")
            .args(["verify", "--man=no"])
            .args(files))
    };
    let ran = verify(&units);
    assert!(
        ran.ok && ran.output.trim().is_empty(),
        "systemd-analyze verify:\n{}",
        ran.output
    );
    // Exposure scores (0–10, lower is better) measured 3.3 and 1.2: hardening must not slip.
    for (unit, limit) in [(&units[0], "35"), (&units[1], "15")] {
        let ran = run(Command::new("systemd-analyze")
            .args(["security", "--offline=yes", "--man=no", "--no-pager"])
            .arg(format!("--threshold={limit}"))
            .arg(unit));
        assert!(
            ran.ok,
            "{} exposure above {limit}/10:\n{}",
            unit.display(),
            ran.output
        );
    }
    // verify can fail: an unknown key is reported.
    let bad = dir.join("vigil-agent.service");
    let text = std::fs::read_to_string(&bad).unwrap();
    std::fs::write(&bad, text.replace("[Service]", "[Service]\nRestartSecs=5s")).unwrap();
    let ran = verify(&[bad]);
    assert!(
        ran.output.contains("RestartSecs"),
        "typo not reported:\n{}",
        ran.output
    );
}

#[path = "deploy/collector_configs.rs"]
mod collector_configs;
#[path = "deploy/consistency.rs"]
mod consistency;
#[path = "deploy/install.rs"]
mod install;
