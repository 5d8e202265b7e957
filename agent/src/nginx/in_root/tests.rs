//! Tests of `in_root.rs`: real files, symlinks and a FIFO in a temp dir used as a root.
use super::*;
use crate::test_support::TempDir;
use std::{fs, os::unix::fs::symlink};

fn write(path: &Path, text: &str) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
}

#[test]
fn absolute_symlinks_and_dotdot_stay_inside_the_root() {
    let outside = TempDir::new("outside");
    let host_file = outside.0.join("evil.conf");
    write(&host_file, "evil");
    let dir = TempDir::new("rootfs");
    let r = dir.0.join("root");
    write(&r.join("etc/nginx/nginx.conf"), "main");
    // The same absolute path inside the root holds the twin nginx itself would read.
    write(&r.join(host_file.strip_prefix("/").unwrap()), "twin");
    symlink(&host_file, r.join("etc/nginx/abs.conf")).unwrap();
    symlink("../../../../../../..", r.join("etc/nginx/up")).unwrap();
    symlink(outside.0.join("absent"), r.join("etc/nginx/dangling")).unwrap();
    let root = RootDir::open(&r).unwrap();

    let text = |p: &str| root.read_text(Path::new(p), 1024).map(|(t, _)| t);
    assert_eq!(text("/etc/nginx/nginx.conf").unwrap(), "main");
    assert_eq!(
        text("etc/nginx/nginx.conf").unwrap(),
        "main",
        "relative = from the root"
    );
    assert_eq!(text("/etc/nginx/abs.conf").unwrap(), "twin");
    let up = format!("/etc/nginx/up{}", host_file.display());
    assert_eq!(text(&up).unwrap(), "twin", "`..` stops at the root");
    let dotdot = format!("/etc/../../../..{}", host_file.display());
    assert_eq!(text(&dotdot).unwrap(), "twin");
    let dangling = root.read_text(Path::new("/etc/nginx/dangling"), 1024);
    assert!(
        matches!(&dangling, Err(RootError::Open { source, .. }) if source.kind() == io::ErrorKind::NotFound),
        "{dangling:?}"
    );
    // Same file by two paths: same identity.
    let (_, a) = root
        .read_text(Path::new("/etc/nginx/abs.conf"), 1024)
        .unwrap();
    let (_, b) = root.read_text(Path::new(&up), 1024).unwrap();
    assert_eq!(a, b);
}

#[test]
fn magic_links_fifos_directories_and_large_files_are_refused() {
    let host = RootDir::open(Path::new("/")).unwrap();
    // /proc/self is a plain symlink, /proc/self/exe a magic one.
    let err = host.open_file(Path::new("/proc/self/exe")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ELOOP), "{err}");

    let dir = TempDir::new("rootfs");
    let fifo = CString::new(dir.0.join("fifo").as_os_str().as_bytes()).unwrap();
    // SAFETY: a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
    write(&dir.0.join("big"), &"x".repeat(100));
    write(&dir.0.join("d/f"), "");
    let root = RootDir::open(&dir.0).unwrap();
    let err = root.open_file(Path::new("fifo")).unwrap_err();
    assert_eq!(
        err.kind(),
        io::ErrorKind::InvalidInput,
        "a FIFO is not opened for reading"
    );
    assert!(root.open_file(Path::new("d")).is_err());
    assert!(root.metadata(Path::new("fifo")).is_ok(), "stat is fine");
    assert!(matches!(
        root.read_text(Path::new("big"), 99),
        Err(RootError::TooLarge { limit: 99, .. })
    ));
    assert_eq!(root.read_text(Path::new("big"), 100).unwrap().0.len(), 100);
}

#[test]
fn directories_are_listed_inside_the_root_with_a_limit() {
    let dir = TempDir::new("rootfs");
    for name in ["b.conf", "a.conf", ".hidden"] {
        write(&dir.0.join("conf.d").join(name), "");
    }
    symlink("/", dir.0.join("escape")).unwrap();
    let root = RootDir::open(&dir.0).unwrap();
    let mut names = root.list_dir(Path::new("/conf.d"), 10).unwrap();
    names.sort();
    assert_eq!(names, [".hidden", "a.conf", "b.conf"]);
    let mut top = root.list_dir(Path::new("/escape"), 10).unwrap();
    top.sort();
    assert_eq!(top, ["conf.d", "escape"], "`/` of the root, not the host's");
    assert!(matches!(
        root.list_dir(Path::new("/conf.d"), 2),
        Err(RootError::TooManyEntries { limit: 2, .. })
    ));
    assert!(matches!(
        root.list_dir(Path::new("/missing"), 2),
        Err(RootError::List { .. })
    ));
}
