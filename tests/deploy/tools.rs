//! The tools the deploy checks run: the PyPI linters in the venv `cargo xtask setup` makes
//! (target/tools/deploy-venv), YAML read through its PyYAML, and command runs that keep
//! everything the tool said for the failure message.
use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use serde_json::Value;

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is inside the repository")
        .to_owned()
}

/// A program from the deploy venv; panics with the fix when setup has not made it.
pub fn venv_bin(name: &str) -> PathBuf {
    let path = repo().join("target/tools/deploy-venv/bin").join(name);
    assert!(
        path.exists(),
        "{} missing: run `cargo xtask setup` (step `deploy checks`)",
        path.display()
    );
    path
}

/// What a finished command said: its exit status and stdout + stderr.
pub struct Ran {
    pub ok: bool,
    pub output: String,
}

/// Runs to the end with stdin closed; stdout and stderr are kept together.
pub fn run(command: &mut Command) -> Ran {
    let shown = format!("{command:?}");
    let out = command
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {shown}: {e}"));
    let mut output = String::from_utf8_lossy(&out.stdout).into_owned();
    output.push_str(&String::from_utf8_lossy(&out.stderr));
    Ran {
        ok: out.status.success(),
        output,
    }
}

/// Every document of a YAML file as JSON, parsed by PyYAML (YAML 1.1, as kubectl reads it);
/// empty documents are left out.
pub fn yaml_documents(path: &Path) -> Result<Vec<Value>, String> {
    const TO_JSON: &str = "import json, sys, yaml\n\
        docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d is not None]\n\
        json.dump(docs, sys.stdout)";
    let ran = run(Command::new(venv_bin("python"))
        .args(["-c", TO_JSON])
        .arg(path));
    if !ran.ok {
        return Err(format!("{}: not YAML: {}", path.display(), ran.output));
    }
    match serde_json::from_str(&ran.output) {
        Ok(Value::Array(docs)) => Ok(docs),
        _ => Err(format!("{}: unexpected converter output", path.display())),
    }
}

/// A fresh scratch directory for one test.
pub fn scratch(tag: &str) -> PathBuf {
    vigil_e2e::scratch_dir(&format!("deploy-{tag}"))
}
