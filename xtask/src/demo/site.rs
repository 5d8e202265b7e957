//! The demo's throwaway site under target/vigil-demo, every port on 127.0.0.1 picked free:
//! an SMTP sink (Maildir), the real collector mailing through it, three upstream services,
//! nginx with one `server_name` per service, and the real agent. Dropping the `Site` stops
//! them all, agent first; the directory stays for inspection.
use std::{
    net::{Ipv4Addr, TcpListener, TcpStream},
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use anyhow::Context;

use super::{
    mailbox::MailSink,
    upstreams::{Crm, Portal, Www},
};
use crate::{
    cmd::bin_dir,
    http, interrupt,
    procs::{Proc, Stream},
};

pub const WWW: &str = "www.example.com";
pub const PORTAL: &str = "client-portal.example.com";
pub const CRM: &str = "crm.example.com";
/// crm's `proxy_read_timeout`: its 504s come this long after the request was sent.
pub const CRM_READ_TIMEOUT_S: u64 = 3;

/// A port nothing listens on now (the kernel's pick, released at once).
pub fn free_port() -> anyhow::Result<u16> {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("binding 127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// Fields drop in order: the agent stops first, the mail sink last.
pub struct Site {
    _agent: Proc,
    pub nginx_port: u16,
    _nginx: Proc,
    pub www: Www,
    pub portal: Portal,
    pub crm: Crm,
    pub collector_port: u16,
    _collector: Proc,
    pub mail: MailSink,
}

impl Site {
    /// Starts everything; `say` is told each piece as it comes up.
    pub fn start(dir: &Path, mut say: impl FnMut(&str)) -> anyhow::Result<Site> {
        let _ = std::fs::remove_dir_all(dir);
        let logs = dir.join("logs");
        std::fs::create_dir_all(&logs).with_context(|| format!("mkdir {}", logs.display()))?;
        let shown = |p: &Path| {
            p.strip_prefix(crate::cmd::workspace_root())
                .unwrap_or(p)
                .display()
                .to_string()
        };

        let mail = MailSink::start(&dir.join("Maildir"), &logs.join("smtp.log"), free_port()?)?;
        say(&format!(
            "smtp sink     aiosmtpd on 127.0.0.1:{}, delivering to {}",
            mail.port,
            shown(&mail.maildir)
        ));
        let (collector_port, collector) = start_collector(dir, &logs, mail.port)?;
        say(&format!("collector     vigil-collector on 127.0.0.1:{collector_port}, mailing alerts to oncall@example.com"));

        let www = Www::start(dir, &logs, free_port()?)?;
        let mut portal = Portal::install(dir, &logs, free_port()?)?;
        portal.start()?;
        let workers = std::thread::available_parallelism().map_or(3, |n| n.get().max(3));
        let crm = Crm::start(dir, &logs, free_port()?, workers)?;
        let (nginx_port, nginx) = start_nginx(dir, &logs, &www, &portal, &crm)?;
        say(&format!(
            "nginx         127.0.0.1:{nginx_port}, prefix {}",
            shown(&dir.join("nginx"))
        ));
        say(&format!(
            "  {WWW:<26} → 127.0.0.1:{:<5}  python, healthy",
            www.port
        ));
        say(&format!(
            "  {PORTAL:<26} → 127.0.0.1:{:<5}  python app in a venv, output in {}",
            portal.port,
            shown(&portal.log)
        ));
        say(&format!("  {CRM:<26} → 127.0.0.1:{:<5}  pre-fork python, {} workers, proxy_read_timeout {CRM_READ_TIMEOUT_S}s", crm.port, crm.workers));

        let agent = start_agent(dir, &logs, collector_port)?;
        say(&format!("agent         vigil-agent run (pid {}), eBPF probes attached, every nginx on this node watched", agent.pid()));
        Ok(Site {
            _agent: agent,
            nginx_port,
            _nginx: nginx,
            www,
            portal,
            crm,
            collector_port,
            _collector: collector,
            mail,
        })
    }
}

/// Polls until `ready` or `limit`; fails early when `proc` exits (with its log's tail).
fn wait_ready(
    proc: &Proc,
    log: &Path,
    limit: Duration,
    ready: impl Fn() -> bool,
) -> anyhow::Result<()> {
    let start = Instant::now();
    loop {
        interrupt::check()?;
        if ready() {
            return Ok(());
        }
        let tail = || {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(10)..].join("\n")
        };
        if let Some(status) = proc.exit_status() {
            anyhow::bail!("{} exited at start ({status}):\n{}", proc.name, tail());
        }
        if start.elapsed() > limit {
            anyhow::bail!(
                "{} not ready after {limit:?} (log {}):\n{}",
                proc.name,
                log.display(),
                tail()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn start_collector(dir: &Path, logs: &Path, smtp_port: u16) -> anyhow::Result<(u16, Proc)> {
    let port = free_port()?;
    let state = dir.join("collector");
    let config = dir.join("collector.toml");
    let text = format!(
        "listen = \"127.0.0.1:{port}\"\nstate_dir = \"{s}\"\nshutdown_grace_ms = 200\n\n\
         [alerts]\nstate_dir = \"{s}/alerts\"\n\n\
         [notify]\nsmtp_url = \"smtp://127.0.0.1:{smtp_port}\"\n\
         email_from = \"vigil demo <vigil@demo.example.com>\"\nemail_to = \"oncall@example.com\"\n",
        s = state.display()
    );
    std::fs::write(&config, text).with_context(|| format!("writing {}", config.display()))?;
    let mut cmd = Command::new(bin_dir(false).join("vigil-collector"));
    cmd.arg("--config").arg(&config);
    let log = logs.join("collector.log");
    let proc = Proc::spawn("vigil-collector", cmd, &log)?;
    let healthy = || {
        http::get(port, "/healthz", "127.0.0.1", Duration::from_secs(1))
            .is_ok_and(|r| r.status == 200)
    };
    wait_ready(&proc, &log, Duration::from_secs(20), healthy)?;
    Ok((port, proc))
}

fn start_nginx(
    dir: &Path,
    logs: &Path,
    www: &Www,
    portal: &Portal,
    crm: &Crm,
) -> anyhow::Result<(u16, Proc)> {
    let port = free_port()?;
    let prefix = dir.join("nginx");
    std::fs::create_dir_all(&prefix)?;
    let (d, l) = (prefix.display(), logs.display());
    let server = |name: &str, upstream: u16, extra: &str| {
        format!(
            "  server {{\n    listen 127.0.0.1:{port};\n    server_name {name};\n    \
             location / {{\n      proxy_pass http://127.0.0.1:{upstream};\n      \
             proxy_set_header Host $host;{extra}\n    }}\n  }}\n"
        )
    };
    let conf = format!(
        "worker_processes 1;\nerror_log {l}/nginx-error.log warn;\npid {d}/nginx.pid;\n\
         events {{ worker_connections 1024; }}\n\
         http {{\n  access_log {l}/nginx-access.log;\n\
         client_body_temp_path {d}/body; proxy_temp_path {d}/proxy;\n  \
         fastcgi_temp_path {d}/fcgi; uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;\n{}{}{}}}\n",
        server(WWW, www.port, ""),
        server(PORTAL, portal.port, ""),
        server(CRM, crm.port, &format!("\n      proxy_read_timeout {CRM_READ_TIMEOUT_S}s;")),
    );
    let conf_path = prefix.join("nginx.conf");
    std::fs::write(&conf_path, conf)?;
    let mut cmd = Command::new("nginx");
    cmd.arg("-p")
        .arg(&prefix)
        .arg("-c")
        .arg(&conf_path)
        .args(["-g", "daemon off;"]);
    let log = logs.join("nginx.stderr.log");
    let proc =
        Proc::spawn("nginx", cmd, &log).context("nginx is installed by `cargo xtask setup`")?;
    let listening = || TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_ok();
    wait_ready(&proc, &log, Duration::from_secs(10), listening)?;
    Ok((port, proc))
}

fn start_agent(dir: &Path, logs: &Path, collector_port: u16) -> anyhow::Result<Proc> {
    let mut cmd = Command::new(bin_dir(false).join("vigil-agent"));
    cmd.args([
        "run",
        "--collector",
        &format!("http://127.0.0.1:{collector_port}"),
    ])
    .args(["--interval", "1s", "--listen-health", "off", "--state-dir"])
    .arg(dir.join("agent"));
    let (proc, _) = Proc::spawn_until(
        "vigil-agent",
        cmd,
        &logs.join("agent.log"),
        Stream::Stderr,
        "vigil-agent run: ready",
        Duration::from_secs(60),
    )?;
    Ok(proc)
}
