//! Tests of `paths.rs`: the real Debian binary, chunk boundaries, and nginx's resolution rules.
use super::*;

const DEBIAN: &str = " --with-cc-opt='-g -O2 -ffile-prefix-map=/build/x=. -fPIC' \
    --with-ld-opt='-Wl,-z,relro' --prefix=/usr/share/nginx --conf-path=/etc/nginx/nginx.conf \
    --http-log-path=/var/log/nginx/access.log --with-debug";

#[test]
fn the_installed_nginx_names_its_paths() {
    let exe = std::fs::File::open("/usr/sbin/nginx").expect("nginx installed (cargo xtask setup)");
    let args = scan_configure_args(exe)
        .unwrap()
        .expect("configure arguments in the binary");
    assert!(args.contains("--conf-path=/etc/nginx/nginx.conf"), "{args}");
    assert_eq!(
        CompiledPaths::from_configure_args(&args),
        CompiledPaths {
            prefix: Some("/usr/share/nginx".into()),
            conf_path: "/etc/nginx/nginx.conf".into()
        }
    );
}

/// Hands out its bytes `step` at a time, so the marker and the arguments straddle reads.
struct Trickle<'a> {
    bytes: &'a [u8],
    step: usize,
}

impl Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.step.min(buf.len()).min(self.bytes.len());
        buf[..n].copy_from_slice(&self.bytes[..n]);
        self.bytes = &self.bytes[n..];
        Ok(n)
    }
}

#[test]
fn scanning_survives_read_boundaries_and_is_bounded() {
    let mut exe = b"\x7fELF\0configure\0 arguments\0".to_vec();
    exe.extend_from_slice(format!("configure arguments:{DEBIAN}\n\0tail").as_bytes());
    for step in [1, 3, 7, 19, 4096] {
        let found = scan_configure_args(Trickle { bytes: &exe, step }).unwrap();
        assert_eq!(found.as_deref(), Some(DEBIAN), "step {step}");
    }
    assert_eq!(
        scan_configure_args(&b"configure arguments:\n"[..])
            .unwrap()
            .as_deref(),
        Some(""),
        "plain ./configure"
    );
    assert_eq!(scan_configure_args(&b"no marker here"[..]).unwrap(), None);
    let mut endless = b"configure arguments: ".to_vec();
    endless.resize(MAX_CONFIGURE_ARGS + 100, b'x');
    assert!(matches!(
        scan_configure_args(Trickle {
            bytes: &endless,
            step: 1000
        }),
        Err(PathsError::ArgsTooLong)
    ));
}

#[test]
fn configure_arguments_are_split_like_the_shell() {
    assert_eq!(
        shell_words(r#" --a='x y' --b="p q" c\ d  --e= "#),
        ["--a=x y", "--b=p q", "c d", "--e="]
    );
    assert_eq!(
        CompiledPaths::from_configure_args(""),
        CompiledPaths::default()
    );
    let own = CompiledPaths::from_configure_args("--prefix=! --conf-path=etc/n.conf");
    assert_eq!((own.prefix, own.conf_path), (None, "etc/n.conf".into()));
}

fn resolve(
    prefix: Option<&str>,
    conf: Option<&str>,
    compiled: &str,
    cwd: Option<&str>,
) -> Result<MasterPaths, PathsError> {
    MasterPaths::resolve(
        prefix.map(Path::new),
        conf.map(Path::new),
        || CompiledPaths::from_configure_args(compiled),
        || cwd.map(PathBuf::from),
    )
}

fn paths(prefix: &str, conf: &str) -> MasterPaths {
    MasterPaths {
        prefix: prefix.into(),
        conf_file: conf.into(),
    }
}

#[test]
fn resolution_follows_nginx() {
    // Checked against Debian's nginx 1.22: `nginx -t -c rel.conf` opens
    // /usr/share/nginx/rel.conf; `nginx -p site -c conf/n.conf` opens site/conf/n.conf from
    // its working directory; `nginx -p /x` still reads /etc/nginx/nginx.conf.
    let r = |p, c, cwd| resolve(p, c, DEBIAN, cwd).unwrap();
    assert_eq!(
        r(None, Some("rel.conf"), None),
        paths("/usr/share/nginx", "/usr/share/nginx/rel.conf")
    );
    assert_eq!(
        r(Some("site"), Some("conf/n.conf"), Some("/srv")),
        paths("/srv/site", "/srv/site/conf/n.conf")
    );
    assert_eq!(
        r(Some("/x"), None, None),
        paths("/x", "/etc/nginx/nginx.conf")
    );
    assert_eq!(
        r(None, None, None),
        paths("/usr/share/nginx", "/etc/nginx/nginx.conf")
    );
    assert_eq!(r(None, None, None).conf_dir(), Path::new("/etc/nginx"));
    // A plain ./configure build: conf/nginx.conf under whichever prefix is in force.
    let plain = |p, c| resolve(p, c, "", None).unwrap();
    assert_eq!(plain(Some("/x"), None), paths("/x", "/x/conf/nginx.conf"));
    assert_eq!(
        plain(None, None),
        paths("/usr/local/nginx", "/usr/local/nginx/conf/nginx.conf")
    );
    assert_eq!(
        resolve(None, None, "--prefix=!", Some("/w")).unwrap(),
        paths("/w", "/w/conf/nginx.conf")
    );
    assert!(matches!(
        resolve(Some("site"), Some("/n.conf"), "", None),
        Err(PathsError::NoWorkingDir { .. })
    ));
}

#[test]
fn with_both_arguments_the_binary_is_not_read() {
    let got = MasterPaths::resolve(
        Some(Path::new("/p")),
        Some(Path::new("n.conf")),
        || panic!("binary read although -p and -c were given"),
        || None,
    );
    assert_eq!(got.unwrap(), paths("/p", "/p/n.conf"));
}
