//! The demo's upstream services as processes: installed (python files, a venv), started,
//! broken the way the two incidents broke them, and healed.
use std::{
    os::unix::{fs::symlink, process::CommandExt},
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use anyhow::Context;

use super::apps;
use crate::procs::{Proc, Stream};

const PYTHON: &str = "/usr/bin/python3";
const START_LIMIT: Duration = Duration::from_secs(15);

fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("mkdir {}", dir.display()))?;
    }
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// Starts `python args` in `dir`, output appended to `log`; ready once it says it serves.
/// `shown_as` is its argv[0]: command lines read like a service's (`venv/bin/python
/// current/app.py 8084`), not like the demo's paths.
fn start(
    name: &str,
    dir: &Path,
    python: &Path,
    shown_as: &str,
    args: &[&str],
    log: &Path,
) -> anyhow::Result<Proc> {
    let mut cmd = Command::new(python);
    cmd.arg0(shown_as).args(args).current_dir(dir);
    let (proc, _) = Proc::spawn_until(name, cmd, log, Stream::Stdout, "serving on", START_LIMIT)?;
    Ok(proc)
}

/// www.example.com: healthy all along.
pub struct Www {
    pub port: u16,
    _proc: Proc,
}

impl Www {
    pub fn start(dir: &Path, logs: &Path, port: u16) -> anyhow::Result<Www> {
        let home = dir.join("www");
        write(&home.join("app.py"), apps::WWW)?;
        let args = ["app.py", &port.to_string()];
        let proc = start(
            "www",
            &home,
            Path::new(PYTHON),
            PYTHON,
            &args,
            &logs.join("www.log"),
        )?;
        Ok(Www { port, _proc: proc })
    }
}

/// client-portal.example.com: a python app in its own venv, releases side by side and a
/// `current` symlink, stdout and stderr appended to logs/client-portal.log.
pub struct Portal {
    pub port: u16,
    root: PathBuf,
    pub log: PathBuf,
    proc: Option<Proc>,
}

impl Portal {
    pub fn install(dir: &Path, logs: &Path, port: u16) -> anyhow::Result<Portal> {
        let root = dir.join("client-portal");
        write(&root.join("releases/v1/app.py"), apps::PORTAL_V1)?;
        write(&root.join("releases/v2/app.py"), apps::PORTAL_V2)?;
        write(
            &root.join("releases/v2/requirements.txt"),
            apps::PORTAL_V2_REQUIREMENTS,
        )?;
        // A venv of its own, as deployed apps have: Debian's site-packages are not in it,
        // so v2's `import flask` fails whatever this machine has installed.
        let status = Command::new(PYTHON)
            .args(["-m", "venv", "--without-pip"])
            .arg(root.join("venv"))
            .status()
            .context("python3 -m venv")?;
        anyhow::ensure!(status.success(), "python3 -m venv failed: {status}");
        let portal = Portal {
            port,
            log: logs.join("client-portal.log"),
            root,
            proc: None,
        };
        portal.point_current_at("v1")?;
        Ok(portal)
    }

    fn point_current_at(&self, release: &str) -> anyhow::Result<()> {
        // A new symlink renamed over the old one: the switch is atomic, as deploy tools do it.
        let next = self.root.join("current.next");
        let _ = std::fs::remove_file(&next);
        symlink(format!("releases/{release}"), &next).context("symlink current.next")?;
        std::fs::rename(&next, self.root.join("current")).context("rename current")
    }

    /// Starts the release `current` points to.
    pub fn start(&mut self) -> anyhow::Result<()> {
        let args = ["current/app.py", &self.port.to_string()];
        let python = self.root.join("venv/bin/python");
        let proc = start(
            "client-portal",
            &self.root,
            &python,
            "venv/bin/python",
            &args,
            &self.log,
        )?;
        self.proc = Some(proc);
        Ok(())
    }

    pub fn pid(&self) -> Option<u32> {
        self.proc.as_ref().map(Proc::pid)
    }

    /// WEB-031: deploys v2 (`current` → releases/v2) and reloads, so the running app
    /// re-executes itself into v2, which dies at `import flask`.
    pub fn deploy_v2(&mut self) -> anyhow::Result<()> {
        self.point_current_at("v2")?;
        if let Some(p) = &self.proc {
            p.signal(libc::SIGHUP);
        }
        Ok(())
    }

    /// The fix: back to v1 and start the service again.
    pub fn roll_back(&mut self) -> anyhow::Result<()> {
        if let Some(mut old) = self.proc.take() {
            old.stop();
        }
        self.point_current_at("v1")?;
        self.start()
    }
}

/// crm.example.com: a pre-fork server, a master and one worker per core (at least 3).
pub struct Crm {
    pub port: u16,
    pub workers: usize,
    home: PathBuf,
    log: PathBuf,
    proc: Option<Proc>,
}

impl Crm {
    pub fn start(dir: &Path, logs: &Path, port: u16, workers: usize) -> anyhow::Result<Crm> {
        let home = dir.join("crm");
        write(&home.join("app.py"), apps::CRM)?;
        let mut crm = Crm {
            port,
            workers,
            home,
            log: logs.join("crm.log"),
            proc: None,
        };
        crm.restart()?;
        Ok(crm)
    }

    /// INC-001: from now on each worker loops forever on the next request it takes.
    pub fn release_the_loop(&self) {
        if let Some(p) = &self.proc {
            p.signal(libc::SIGUSR1);
        }
    }

    /// The fix of INC-001: restart the service (the looping workers die, fresh ones start).
    pub fn restart(&mut self) -> anyhow::Result<()> {
        if let Some(mut old) = self.proc.take() {
            old.stop();
        }
        let args = ["app.py", &self.port.to_string(), &self.workers.to_string()];
        let proc = start(
            "crm",
            &self.home,
            Path::new(PYTHON),
            PYTHON,
            &args,
            &self.log,
        )?;
        self.proc = Some(proc);
        Ok(())
    }
}
