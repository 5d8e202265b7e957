//! LogQL through Grafana's own grammar (`@grafana/lezer-logql`, installed by `cargo xtask
//! setup` under target/tools/lezer), and the README's LogQL examples.
use std::{
    io::Write,
    path::PathBuf,
    process::{Command, Stdio},
};

use serde_json::Value;

pub struct Parsed {
    /// `LogExpr` or `MetricExpr`.
    pub kind: String,
    /// Each error node: where, and the text from there.
    pub errors: Vec<String>,
}

fn lezer_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/tools/lezer")
}

/// Parses every query in one `node` run.
pub fn parse(queries: &[String]) -> Vec<Parsed> {
    let dir = lezer_dir();
    assert!(
        dir.join("node_modules/@grafana/lezer-logql").is_dir(),
        "{} missing: run `cargo xtask setup`",
        dir.display()
    );
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("dashboards/parse_logql.cjs");
    let mut child = Command::new("node")
        .arg(&script)
        .arg(&dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node (Node.js is on the machine)");
    let input = serde_json::to_vec(queries).unwrap();
    child.stdin.take().unwrap().write_all(&input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "node: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let results: Vec<Value> = serde_json::from_slice(&out.stdout).expect("the script's JSON");
    assert_eq!(results.len(), queries.len());
    results
        .into_iter()
        .map(|r| Parsed {
            kind: r["kind"].as_str().unwrap_or("none").to_owned(),
            errors: r["errors"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| format!("at {}: {:?}", e["from"], e["text"].as_str().unwrap_or("")))
                .collect(),
        })
        .collect()
}

/// The queries of the README's ```logql blocks, one per line, trailing `# comments` cut.
pub fn readme_queries() -> Vec<String> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../README.md");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut out = Vec::new();
    let mut inside = false;
    for line in text.lines() {
        match (inside, line.trim()) {
            (false, "```logql") => inside = true,
            (true, "```") => inside = false,
            (true, q) if !q.is_empty() && !q.starts_with('#') => {
                out.push(without_comment(q).to_owned())
            }
            _ => {}
        }
    }
    assert!(!out.is_empty(), "no ```logql block in {}", path.display());
    out
}

/// The query before a `#` that is outside quotes and backquotes.
fn without_comment(line: &str) -> &str {
    let (mut quote, mut escaped) = (None, false);
    for (i, c) in line.char_indices() {
        match (quote, c) {
            (Some('"'), '\\') if !escaped => {
                escaped = true;
                continue;
            }
            (Some(q), c) if c == q && !escaped => quote = None,
            (None, '"' | '`') => quote = Some(c),
            (None, '#') => return line[..i].trim_end(),
            _ => {}
        }
        escaped = false;
    }
    line
}

#[test]
fn dashboards_readme_comments_are_cut_outside_strings_only() {
    assert_eq!(
        without_comment(r#"{a="b"} |= "(111: "   # refused"#),
        r#"{a="b"} |= "(111: ""#
    );
    assert_eq!(
        without_comment(r##"{a="#b"} |= `#x` # c"##),
        r##"{a="#b"} |= `#x`"##
    );
    assert_eq!(without_comment(r##"{a="\"#"} # c"##), r##"{a="\"#"}"##);
}
