//! `cargo xtask demo`: vigil at work on a throwaway site, nothing to configure. After setup
//! and a debug build it starts, under target/vigil-demo and on free loopback ports, an SMTP
//! sink, the real collector, three python upstreams behind one nginx (`server_name`s
//! www / client-portal / crm .example.com) and the real agent; sends visitors; then replays
//! the two incidents vigil was built for — a deploy that dies at `import flask` (WEB-031,
//! 502) and workers looping at 100% CPU (INC-001, 504) — and shows each diagnosis and its
//! mail as they arrive, heals both and shows them resolve, and stops everything it started
//! (also on Ctrl-C). The directory stays for inspection.
//!
//! Layers: this file tells the story; `site` starts the pieces (`upstreams` with `apps`,
//! `mailbox`), `traffic` visits, `watch` follows alerts and mails; `alert_view` renders.
mod apps;
mod mailbox;
pub(crate) mod site;
pub(crate) mod story;
pub(crate) mod traffic;
mod upstreams;
pub(crate) mod watch;

use std::path::{Path, PathBuf};

use crate::{
    cmd::{build, require_root, workspace_root},
    interrupt, setup,
    tasks::Exit,
    term::{Colour, Term},
};

/// Where the demo lives (wiped at each start, left after it for inspection).
pub fn demo_dir() -> PathBuf {
    workspace_root().join("target/vigil-demo")
}

/// `path` relative to the workspace, as a person would type it.
pub fn shown(path: &Path) -> String {
    let root = workspace_root();
    path.strip_prefix(&root)
        .unwrap_or(path)
        .display()
        .to_string()
}

pub fn run() -> anyhow::Result<()> {
    require_root()?;
    setup::run()?;
    build(false)?;
    interrupt::install()?;
    let mut term = Term::stdout();
    let dir = demo_dir();
    let result = story::tell(&mut term, &dir);
    term.clear_progress();
    let left = format!(
        "left for inspection: {}/ (Maildir/new: the mails; logs/: agent, collector, nginx, apps; \
         collector.toml, nginx/nginx.conf)",
        shown(&dir)
    );
    match result {
        Ok(()) => {
            term.line(&format!("\n{}", term.style.paint(Colour::Bold, "done")));
            term.line(&left);
            Ok(())
        }
        Err(e) if e.is::<interrupt::Interrupted>() || interrupt::requested() => {
            term.line(&left);
            let message = "interrupted: every process the demo started is stopped".into();
            Err(Exit { code: 130, message }.into())
        }
        Err(e) => {
            term.line("\nthe demo failed; every process it started is stopped");
            term.line(&left);
            Err(e)
        }
    }
}
