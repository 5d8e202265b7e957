//! A real nginx (Debian package) with its own prefix and config, run in the foreground.
use std::{
    net::TcpStream,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::Duration,
};

use crate::{free_port, scratch_dir, wait_for};

pub struct Nginx {
    child: Child,
    pub port: u16,
    pub dir: PathBuf,
}

/// One `location` proxied to a loopback port.
pub struct Route<'a> {
    pub path: &'a str,
    pub upstream_port: u16,
}

impl Nginx {
    /// nginx proxying `location /` to 127.0.0.1:`upstream_port`.
    pub fn proxy_to(tag: &str, upstream_port: u16, timeouts: &str) -> Nginx {
        Self::start(
            tag,
            &[Route {
                path: "/",
                upstream_port,
            }],
            timeouts,
        )
    }

    /// `timeouts` are proxy_connect_timeout and proxy_read_timeout for every route.
    pub fn start(tag: &str, routes: &[Route], timeouts: &str) -> Nginx {
        Self::start_named(tag, "", routes, timeouts)
    }

    /// As `start`, the server block answering to `server_name` (none when empty).
    pub fn start_named(tag: &str, server_name: &str, routes: &[Route], timeouts: &str) -> Nginx {
        let dir = scratch_dir(tag);
        let port = free_port();
        let mut locations = String::new();
        for r in routes {
            locations += &format!(
                "    location {} {{ proxy_pass http://127.0.0.1:{}/; }}\n",
                r.path, r.upstream_port
            );
        }
        if !server_name.is_empty() {
            locations = format!("    server_name {server_name};\n{locations}");
        }
        let d = dir.display();
        let conf = format!(
            "worker_processes 1;\nerror_log {d}/error.log info;\npid {d}/nginx.pid;\n\
             events {{ worker_connections 256; }}\n\
             http {{\n  access_log {d}/access.log;\n  {timeouts}\n\
             client_body_temp_path {d}/body; proxy_temp_path {d}/proxy;\n\
             fastcgi_temp_path {d}/fcgi; uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;\n\
             server {{\n    listen 127.0.0.1:{port};\n{locations}  }}\n}}\n"
        );
        std::fs::write(dir.join("nginx.conf"), conf).unwrap();
        let child = Command::new("nginx")
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .args(["-g", "daemon off;"])
            .stdin(Stdio::null())
            .spawn()
            .expect("nginx installed (cargo xtask setup)");
        let nginx = Nginx { child, port, dir };
        nginx.wait_listening();
        nginx
    }

    fn wait_listening(&self) {
        let listening = || TcpStream::connect(("127.0.0.1", self.port)).is_ok();
        assert!(
            wait_for(Duration::from_secs(10), listening),
            "nginx did not listen on {}",
            self.port
        );
    }

    pub fn master_pid(&self) -> u32 {
        self.child.id()
    }

    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("error.log")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM = fast stop (no waiting for open connections); the workers follow the master.
        crate::terminate(&self.child);
        let _ = self.child.wait();
    }
}
