//! A real SMTP server: Debian's aiosmtpd (under /usr/bin/python3: pyenv's python lacks it)
//! delivering to a Maildir, plain, STARTTLS or TLS from the first byte, optionally requiring
//! AUTH; and the delivered mails read back through Python's own MIME parser.
use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use serde_json::Value;

use crate::{free_port, scratch_dir, wait_for};

const PYTHON: &str = "/usr/bin/python3";

/// aiosmtpd's Controller: the SMTP class its CLI runs, with the CLI's missing AUTH.
const SERVER: &str = r#"
import logging, ssl, sys
from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Mailbox
from aiosmtpd.smtp import AuthResult, LoginPassword
port, maildir, mode, cert, key, user, password = sys.argv[1:8]
# aiosmtpd logs a warning about its own deprecated `login_data` on every AUTH.
logging.getLogger("mail.log").setLevel(logging.ERROR)
kw = {}
ctx = None
if mode != "plain":
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
if mode == "starttls":
    kw.update(tls_context=ctx, require_starttls=True)
if user:
    def check(server, session, envelope, mechanism, data):
        ok = isinstance(data, LoginPassword) and data.login.decode() == user and data.password.decode() == password
        # handled=False: aiosmtpd answers 535 itself (handled=True would leave it silent).
        return AuthResult(success=ok, handled=False)
    kw.update(authenticator=check, auth_required=True)
c = Controller(Mailbox(maildir), hostname="127.0.0.1", port=int(port),
               ssl_context=ctx if mode == "tls" else None, **kw)
c.start()
print("ready", flush=True)
sys.stdin.read()
c.stop()
"#;

/// Every mail in the Maildir, oldest first, parsed by Python's `email` (policy=default:
/// encoded words and transfer encodings decoded).
const READ: &str = r#"
import email, email.policy, json, mailbox, sys
box = mailbox.Maildir(sys.argv[1], create=False)
out = []
for key in sorted(box.keys()):
    m = email.message_from_bytes(box.get_bytes(key), policy=email.policy.default)
    body = m.get_body(preferencelist=("plain",))
    out.append({"subject": str(m["subject"]), "from": str(m["from"]), "to": str(m["to"]),
                "rcpt_to": str(m["X-RcptTo"]), "content_type": m.get_content_type(),
                "body": body.get_content() if body is not None else None})
print(json.dumps(out))
"#;

pub enum SmtpMode<'a> {
    Plain,
    /// STARTTLS required before anything else, and AUTH with these credentials.
    StartTlsAuth {
        certs: &'a TestCerts,
        user: &'a str,
        password: &'a str,
    },
    /// TLS from the first byte (SMTPS).
    Tls(&'a TestCerts),
}

pub struct SmtpServer {
    child: Child,
    pub port: u16,
    pub maildir: PathBuf,
}

#[derive(Debug)]
pub struct Mail {
    pub subject: String,
    pub from: String,
    pub to: String,
    /// Envelope recipients as the server received them.
    pub rcpt_to: String,
    pub content_type: String,
    pub body: String,
}

impl SmtpServer {
    pub fn start(mode: SmtpMode) -> SmtpServer {
        let port = free_port();
        let dir = scratch_dir(&format!("smtp-{port}"));
        let maildir = dir.join("Maildir");
        let none = Path::new("");
        let (name, cert, key, user, password) = match &mode {
            SmtpMode::Plain => ("plain", none, none, "", ""),
            SmtpMode::StartTlsAuth {
                certs,
                user,
                password,
            } => (
                "starttls",
                certs.cert.as_path(),
                certs.key.as_path(),
                *user,
                *password,
            ),
            SmtpMode::Tls(certs) => ("tls", certs.cert.as_path(), certs.key.as_path(), "", ""),
        };
        let mut child = Command::new(PYTHON)
            .args(["-c", SERVER, &port.to_string()])
            .args([
                maildir.as_os_str(),
                name.as_ref(),
                cert.as_os_str(),
                key.as_os_str(),
            ])
            .args([user, password])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3-aiosmtpd installed (cargo xtask setup)");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "ready", "aiosmtpd did not start");
        SmtpServer {
            child,
            port,
            maildir,
        }
    }

    /// What the Maildir holds now.
    pub fn mails(&self) -> Vec<Mail> {
        let out = Command::new(PYTHON)
            .args(["-c", READ])
            .arg(&self.maildir)
            .output()
            .expect("python3");
        assert!(
            out.status.success(),
            "reading the Maildir: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let parsed: Vec<Value> = serde_json::from_slice(&out.stdout).expect("mail JSON");
        parsed
            .iter()
            .map(|m| {
                let text = |k: &str| m[k].as_str().unwrap_or_default().to_owned();
                Mail {
                    subject: text("subject"),
                    from: text("from"),
                    to: text("to"),
                    rcpt_to: text("rcpt_to"),
                    content_type: text("content_type"),
                    body: text("body"),
                }
            })
            .collect()
    }

    /// Polls until `count` mails arrived (or `limit` passed); what is there then.
    pub fn wait_for_mails(&self, count: usize, limit: Duration) -> Vec<Mail> {
        let mut mails = Vec::new();
        wait_for(limit, || {
            mails = self.mails();
            mails.len() >= count
        });
        mails
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A throwaway CA and a server certificate it signed for 127.0.0.1 and localhost.
pub struct TestCerts {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TestCerts {
    pub fn generate(dir: &Path) -> TestCerts {
        let path = |name: &str| dir.join(name);
        let openssl = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(dir)
                .output()
                .expect("openssl installed (cargo xtask setup)");
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        openssl(
            &[
                &["req", "-x509"][..],
                &ec,
                &[
                    "-keyout",
                    "ca.key",
                    "-out",
                    "ca.pem",
                    "-days",
                    "2",
                    "-subj",
                    "/CN=vigil test CA",
                ],
            ]
            .concat(),
        );
        openssl(
            &[
                &["req"][..],
                &ec,
                &[
                    "-keyout",
                    "server.key",
                    "-out",
                    "server.csr",
                    "-subj",
                    "/CN=127.0.0.1",
                ],
            ]
            .concat(),
        );
        std::fs::write(
            path("server.ext"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        openssl(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "server.ext",
        ]);
        TestCerts {
            ca: path("ca.pem"),
            cert: path("server.pem"),
            key: path("server.key"),
        }
    }
}
