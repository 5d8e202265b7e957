//! The demo's mail sink: Debian's aiosmtpd (under /usr/bin/python3, which has it) delivering
//! into a Maildir under target/vigil-demo, and the delivered mails read back with Python's
//! own MIME parser (subjects may be folded or encoded).
use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use anyhow::Context;
use serde::Deserialize;

use crate::procs::{Proc, Stream};

const PYTHON: &str = "/usr/bin/python3";

const SERVER: &str = r#"
import logging, sys, time
from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Mailbox
logging.getLogger("mail.log").setLevel(logging.ERROR)
c = Controller(Mailbox(sys.argv[2]), hostname="127.0.0.1", port=int(sys.argv[1]))
c.start()
print("smtp sink: ready on 127.0.0.1:%s" % sys.argv[1], flush=True)
while True:
    time.sleep(3600)
"#;

/// Every mail in new/ and cur/ with its subject, decoded.
const READ: &str = r#"
import email, email.policy, json, os, sys
out = []
for sub in ("new", "cur"):
    d = os.path.join(sys.argv[1], sub)
    for name in sorted(os.listdir(d)) if os.path.isdir(d) else []:
        with open(os.path.join(d, name), "rb") as f:
            m = email.message_from_binary_file(f, policy=email.policy.default)
        out.append({"path": os.path.join(d, name), "subject": str(m["subject"] or "")})
print(json.dumps(out))
"#;

#[derive(Debug, Clone, Deserialize)]
pub struct Mail {
    pub path: PathBuf,
    pub subject: String,
}

pub struct MailSink {
    pub port: u16,
    pub maildir: PathBuf,
    _proc: Proc,
}

impl MailSink {
    pub fn start(maildir: &Path, log: &Path, port: u16) -> anyhow::Result<MailSink> {
        let mut cmd = Command::new(PYTHON);
        cmd.args(["-c", SERVER, &port.to_string()]).arg(maildir);
        let (proc, _) = Proc::spawn_until(
            "smtp sink (aiosmtpd)",
            cmd,
            log,
            Stream::Stdout,
            "ready",
            Duration::from_secs(15),
        )
        .context("python3-aiosmtpd is installed by `cargo xtask setup`")?;
        Ok(MailSink {
            port,
            maildir: maildir.to_owned(),
            _proc: proc,
        })
    }
}

/// What the Maildir holds now.
pub fn read(maildir: &Path) -> anyhow::Result<Vec<Mail>> {
    let out = Command::new(PYTHON)
        .args(["-c", READ])
        .arg(maildir)
        .output()
        .context("python3 reading the Maildir")?;
    anyhow::ensure!(
        out.status.success(),
        "reading {}: {}",
        maildir.display(),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    serde_json::from_slice(&out.stdout).context("the Maildir reader's JSON")
}
