//! A configuration shaped like a real site, as files in a temp dir used as nginx's root.
use super::*;
use crate::test_support::TempDir;

/// The three files of a real nginx 1.22.1 setup (glob include), as `nginx -T` printed them.
const REAL_FILES: [(&str, &str); 3] = [
    (
        "/tmp/ngx-real/conf/nginx.conf",
        r##"# main config for vigil tests
worker_processes 2;
pid logs/nginx.pid;
error_log logs/error.log info;
events { worker_connections 64; }

http {
    log_format vigil '$remote_addr [$time_local] "$request" $status $body_bytes_sent '
                     'rt=$request_time ua="$upstream_addr" us="$upstream_status" urt="$upstream_response_time"';
    log_format jsonish escape=json '{"addr":"$remote_addr", "note":"a # not comment"}';
    access_log logs/access.log combined;
    proxy_connect_timeout 5s;
    proxy_read_timeout 1m30s;
    client_body_temp_path tmp/body;
    proxy_temp_path tmp/proxy;
    fastcgi_temp_path tmp/fcgi;
    uwsgi_temp_path tmp/uwsgi;
    scgi_temp_path tmp/scgi;

    upstream backend {
        server 127.0.0.1:18082 max_fails=1 fail_timeout=10s;
        server 127.0.0.1:18083 backup;
    }
    upstream dead {
        server 127.0.0.1:18084;
    }
    include conf.d/*.conf;
}

"##,
    ),
    (
        "/tmp/ngx-real/conf/conf.d/app.conf",
        r##"server {
    listen 127.0.0.1:18080;
    server_name localhost "app.local";   # trailing comment
    access_log logs/app_access.log vigil;
    error_log logs/app_error.log;
    proxy_read_timeout 2s;

    location / {
        proxy_pass http://backend;
    }
    location /api/ {
        proxy_connect_timeout 500ms;
        location /api/slow {
            proxy_read_timeout 1s;
            proxy_pass http://backend/slow;
        }
        proxy_pass http://127.0.0.1:18085;
    }
    location /dead {
        proxy_pass http://dead;
    }
    location /fb {
        error_page 502 = @fallback;
        proxy_pass http://dead;
    }
    location @fallback {
        proxy_pass http://127.0.0.1:18085;
    }
    location = "/with space" {
        add_header X-Note "hash # inside \"quotes\"";
        return 200 'ok';
    }
    location /literal {
        access_log off;
        proxy_pass http://localhost;
    }
}

"##,
    ),
    (
        "/tmp/ngx-real/conf/conf.d/other.conf",
        r##"server {
    listen 127.0.0.1:18081;
    server_name _;
    location / {
        if ($request_method = POST) {
            proxy_pass https://127.0.0.1:18086;
        }
        proxy_pass http://unix:/tmp/ngx-real/none.sock:/;
    }
}

"##,
    ),
];

/// Writes `files` (absolute paths inside the root) under a fresh temp dir used as the root.
pub(super) fn root_with(files: &[(&str, &str)]) -> (TempDir, RootDir) {
    let dir = TempDir::new("nginx-root");
    for (path, text) in files {
        let path = dir.0.join(path.trim_start_matches('/'));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    let root = RootDir::open(&dir.0).unwrap();
    (dir, root)
}

fn load_files(
    files: &[(&str, &str)],
    conf: &str,
    prefix: &str,
) -> Result<NginxConfig, ConfigError> {
    let (_dir, root) = root_with(files);
    let paths = MasterPaths {
        prefix: prefix.into(),
        conf_file: conf.into(),
    };
    let (config, report) = NginxConfig::load(&root, &paths)?;
    assert_eq!(report.files_refused, 0, "{report:?}");
    Ok(config)
}

fn parsed() -> NginxConfig {
    load_files(
        &REAL_FILES,
        "/tmp/ngx-real/conf/nginx.conf",
        "/tmp/ngx-real",
    )
    .unwrap()
}

fn proxy<'a>(config: &'a NginxConfig, listen: &str, location: &str) -> &'a ProxyPass {
    let found = config
        .proxies
        .iter()
        .find(|p| p.listen.iter().any(|l| l == listen) && p.location.as_deref() == Some(location));
    found.unwrap_or_else(|| panic!("no proxy_pass for {listen} {location}"))
}

#[test]
fn upstream_blocks() {
    let config = parsed();
    assert_eq!(
        config.upstream("backend").unwrap().servers,
        ["127.0.0.1:18082", "127.0.0.1:18083"]
    );
    assert_eq!(
        config.upstream("dead").unwrap().servers,
        ["127.0.0.1:18084"]
    );
    assert_eq!(config.upstreams.len(), 2);
}

#[test]
fn proxies_with_inherited_timeouts() {
    let config = parsed();
    assert_eq!(config.proxies.len(), 9);
    let root = proxy(&config, "127.0.0.1:18080", "/");
    assert_eq!(root.target, ProxyTarget::Upstream("backend".into()));
    assert_eq!(root.server_names, ["localhost", "app.local"]);
    // connect from http (5s), read from server (2s)
    assert_eq!(
        (root.connect_timeout, root.read_timeout),
        (secs(5), secs(2))
    );

    let api = proxy(&config, "127.0.0.1:18080", "/api/");
    assert_eq!(api.target, ProxyTarget::Address("127.0.0.1:18085".into()));
    assert_eq!(
        (api.connect_timeout, api.read_timeout),
        (Duration::from_millis(500), secs(2))
    );

    // Nested location inherits connect from its parent location.
    let slow = proxy(&config, "127.0.0.1:18080", "/api/slow");
    assert_eq!(slow.target, ProxyTarget::Upstream("backend".into()));
    assert_eq!(
        (slow.connect_timeout, slow.read_timeout),
        (Duration::from_millis(500), secs(1))
    );

    let literal = proxy(&config, "127.0.0.1:18080", "/literal");
    assert_eq!(literal.target, ProxyTarget::Address("localhost:80".into()));
    let fallback = proxy(&config, "127.0.0.1:18080", "@fallback");
    assert_eq!(
        fallback.target,
        ProxyTarget::Address("127.0.0.1:18085".into())
    );
}

#[test]
fn proxy_in_if_and_unix_socket_in_second_server() {
    let config = parsed();
    let other: Vec<_> = config
        .proxies
        .iter()
        .filter(|p| p.listen == ["127.0.0.1:18081"])
        .collect();
    assert_eq!(other.len(), 2);
    assert_eq!(
        other[0].target,
        ProxyTarget::Address("127.0.0.1:18086".into())
    );
    assert_eq!(other[0].location.as_deref(), Some("/"));
    assert_eq!(other[0].server_names, ["_"]);
    assert_eq!(
        (other[0].connect_timeout, other[0].read_timeout),
        (secs(5), secs(90))
    );
    assert_eq!(
        other[1].target,
        ProxyTarget::Address("unix:/tmp/ngx-real/none.sock".into())
    );
}

#[test]
fn logs_and_formats() {
    let config = parsed();
    let prefix = Path::new("/tmp/ngx-real");
    assert_eq!(
        config.error_logs,
        [
            prefix.join("logs/error.log"),
            prefix.join("logs/app_error.log")
        ]
    );
    let access: Vec<_> = config
        .access_logs
        .iter()
        .map(|a| (a.path.clone(), a.format.as_str()))
        .collect();
    assert_eq!(
        access,
        [
            (prefix.join("logs/access.log"), "combined"),
            (prefix.join("logs/app_access.log"), "vigil")
        ]
    );
    assert_eq!(
        config.log_formats["vigil"],
        "$remote_addr [$time_local] \"$request\" $status $body_bytes_sent rt=$request_time \
         ua=\"$upstream_addr\" us=\"$upstream_status\" urt=\"$upstream_response_time\""
    );
    // escape= dropped, '#' inside quotes kept.
    assert_eq!(
        config.log_formats["jsonish"],
        r#"{"addr":"$remote_addr", "note":"a # not comment"}"#
    );
    assert_eq!(config.log_formats["combined"], COMBINED_FORMAT);
}

#[test]
fn ports_are_deduplicated_and_sorted() {
    assert_eq!(
        parsed().upstream_ports(),
        [80, 18082, 18083, 18084, 18085, 18086]
    );
}

#[test]
fn quoted_location_and_escaped_quotes() {
    let (_dir, root) = root_with(&REAL_FILES);
    let (tree, _) = load::load(&root, Path::new("/tmp/ngx-real/conf/nginx.conf")).unwrap();
    let http = tree
        .iter()
        .find(|d| d.name == "http")
        .unwrap()
        .block
        .as_ref()
        .unwrap();
    let server = http
        .iter()
        .find(|d| d.name == "server")
        .unwrap()
        .block
        .as_ref()
        .unwrap();
    let loc = server
        .iter()
        .find(|d| d.args.last().map(String::as_str) == Some("/with space"))
        .unwrap();
    let header = &loc.block.as_ref().unwrap()[0];
    assert_eq!(header.args, ["X-Note", "hash # inside \"quotes\""]);
}

#[test]
fn nested_relative_includes_and_plain_config() {
    let files = [
        (
            "/etc/nginx/nginx.conf",
            "http { include sites/*; syslog_only; error_log syslog:server=x; }\n",
        ),
        (
            "/etc/nginx/sites/b",
            "server { location / { proxy_pass http://[::1]; } }\n",
        ),
        ("/etc/nginx/sites/a", "include /etc/nginx/snip.conf;\n"),
        (
            "/etc/nginx/snip.conf",
            "upstream Be { server backend.local; server unix:/run/x.sock; server [::1]:81 down; }\n",
        ),
    ];
    let config = load_files(&files, "/etc/nginx/nginx.conf", "/usr/share/nginx").unwrap();
    assert_eq!(
        config.upstreams[0].servers,
        ["backend.local:80", "unix:/run/x.sock", "[::1]:81"]
    );
    assert_eq!(
        config.proxies[0].target,
        ProxyTarget::Address("[::1]:80".into())
    );
    assert!(config.error_logs.is_empty());

    let plain = "http { proxy_read_timeout 1h; server { location / { proxy_pass http://be/x; } } \
                 upstream be { server 10.0.0.1:9000; } }";
    let config = load_files(&[("/n.conf", plain)], "/n.conf", "/").unwrap();
    assert_eq!(config.proxies[0].target, ProxyTarget::Upstream("be".into()));
    assert_eq!(config.proxies[0].read_timeout, secs(3600));
    assert_eq!(config.proxies[0].connect_timeout, DEFAULT_PROXY_TIMEOUT);
    assert!(matches!(
        load_files(&[("/n.conf", plain)], "/absent.conf", "/"),
        Err(ConfigError::Read(_))
    ));
}

#[test]
fn nginx_times() {
    let ok = [
        ("60s", 60_000),
        ("500ms", 500),
        ("1m", 60_000),
        ("2h", 7_200_000),
        ("1m30s", 90_000),
        ("45", 45_000),
        ("1h 30m", 5_400_000),
        ("1d", 86_400_000),
        ("1m30", 90_000),
    ];
    for (text, ms) in ok {
        assert_eq!(
            parse_nginx_time(text),
            Some(Duration::from_millis(ms)),
            "{text}"
        );
    }
    for bad in [
        "",
        "s",
        "5x",
        "1s1m",
        "1m1m",
        "-1s",
        "99999999999999999999y",
    ] {
        assert_eq!(parse_nginx_time(bad), None, "{bad}");
    }
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}
