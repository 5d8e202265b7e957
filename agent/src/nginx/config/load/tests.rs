//! Tests of `load.rs`: includes, globs, escapes and bounds on real files.
use super::*;
use crate::nginx::config::tests::root_with;
use crate::test_support::TempDir;
use std::os::unix::fs::symlink;

fn names(tree: &[Directive]) -> Vec<String> {
    tree.iter()
        .map(|d| format!("{} {}", d.name, d.args.join(" ")))
        .collect()
}

fn load_main(root: &RootDir) -> (Vec<Directive>, LoadReport) {
    load(root, Path::new("/etc/nginx/nginx.conf")).unwrap()
}

#[test]
fn includes_are_spliced_in_place_in_glob_order() {
    let (_dir, root) = root_with(&[
        (
            "/etc/nginx/nginx.conf",
            "a 1;\ninclude conf.d/*.conf;\nz 1;\ninclude /etc/nginx/one;\n",
        ),
        ("/etc/nginx/conf.d/b.conf", "b 1;\n"),
        ("/etc/nginx/conf.d/B.conf", "upper_b 1;\n"),
        // Relative to the main file's directory, not to conf.d.
        ("/etc/nginx/conf.d/a.conf", "include sites-*/*.conf;\n"),
        ("/etc/nginx/conf.d/.hidden.conf", "hidden 1;\n"),
        ("/etc/nginx/conf.d/skip.txt", "txt 1;\n"),
        ("/etc/nginx/sites-on/x.conf", "site_x 1;\n"),
        ("/etc/nginx/sites-off/y.conf", "site_y 1;\n"),
        ("/etc/nginx/one", "one 1;\n"),
    ]);
    let (tree, report) = load_main(&root);
    // Bytes order (C locale): `B` < `a` < `b`; `sites-off` < `sites-on`; no dot files.
    assert_eq!(
        names(&tree),
        [
            "a 1",
            "upper_b 1",
            "site_y 1",
            "site_x 1",
            "b 1",
            "z 1",
            "one 1"
        ]
    );
    assert_eq!(report.files_read, 7);
    assert_eq!(report.files_refused, 0);
}

#[test]
fn include_cycles_are_cut() {
    let (_dir, root) = root_with(&[
        ("/etc/nginx/nginx.conf", "http { include a.conf; }\n"),
        ("/etc/nginx/a.conf", "x 1; include /etc/nginx/*.conf;\n"),
    ]);
    let (tree, _) = load_main(&root);
    let http = tree[0].block.as_ref().unwrap();
    // a.conf's glob matches a.conf and nginx.conf, both already being expanded.
    assert_eq!(names(http), ["x 1"]);
}

#[test]
fn symlinks_and_dotdot_resolve_inside_the_root() {
    let outside = TempDir::new("outside");
    let host_file = outside.0.join("evil.conf");
    std::fs::write(&host_file, "evil 1;\n").unwrap();
    let twin = host_file.to_str().unwrap().to_string();
    let up = format!("../../../../../../..{twin}");
    let main = format!("include conf.d/*.conf;\ninclude {up};\n");
    let (dir, root) = root_with(&[
        ("/etc/nginx/nginx.conf", &main),
        ("/etc/nginx/conf.d/a.conf", "a 1;\n"),
        (&twin, "twin 1;\n"),
    ]);
    symlink(&host_file, dir.0.join("etc/nginx/conf.d/escape.conf")).unwrap();
    let (tree, report) = load_main(&root);
    assert_eq!(names(&tree), ["a 1", "twin 1", "twin 1"]);
    assert_eq!(report.files_refused, 0);

    // Without the twin, the escaping paths name nothing.
    std::fs::remove_file(dir.0.join(twin.trim_start_matches('/'))).unwrap();
    let (tree, report) = load_main(&root);
    assert_eq!(names(&tree), ["a 1"]);
    assert_eq!(report.files_refused, 2, "{report:?}");
    assert!(report
        .refused
        .iter()
        .all(|r| r.reason.contains("No such file")));
}

#[test]
fn oversized_unparsable_and_missing_files_are_refused_alone() {
    let big = "#".repeat(MAX_FILE_BYTES as usize + 1);
    let (_dir, root) = root_with(&[
        (
            "/etc/nginx/nginx.conf",
            "include big.conf;\ninclude broken.conf;\ninclude absent.conf;\ninclude ok.conf;\n",
        ),
        ("/etc/nginx/big.conf", &big),
        ("/etc/nginx/broken.conf", "server {\n"),
        ("/etc/nginx/ok.conf", "ok 1;\n"),
    ]);
    let (tree, report) = load_main(&root);
    assert_eq!(names(&tree), ["ok 1"]);
    assert_eq!(report.files_refused, 3);
    let reasons: Vec<&str> = report.refused.iter().map(|r| r.reason.as_str()).collect();
    assert!(
        reasons[0].contains("larger than 4194304 bytes"),
        "{reasons:?}"
    );
    assert!(reasons[1].contains("unclosed block"), "{reasons:?}");
    assert!(reasons[2].contains("No such file"), "{reasons:?}");
    assert_eq!(
        report.files_read, 3,
        "main, broken (read, then refused), ok"
    );
}

#[test]
fn file_count_and_include_depth_are_bounded() {
    let many: Vec<(String, String)> = (0..MAX_FILES + 5)
        .map(|i| (format!("/etc/nginx/many/{i:05}.conf"), format!("n {i};\n")))
        .chain([(
            "/etc/nginx/nginx.conf".to_string(),
            "include many/*.conf;\n".to_string(),
        )])
        .collect();
    let refs: Vec<(&str, &str)> = many.iter().map(|(p, t)| (p.as_str(), t.as_str())).collect();
    let (_dir, root) = root_with(&refs);
    let (tree, report) = load_main(&root);
    assert_eq!(tree.len(), MAX_FILES - 1, "the main file counts too");
    assert_eq!(report.files_read, MAX_FILES);
    assert_eq!(report.files_refused, 6);

    let chain: Vec<(String, String)> = (0..MAX_INCLUDE_DEPTH + 3)
        .map(|i| {
            (
                format!("/etc/nginx/d{i}.conf"),
                format!("d {i};\ninclude d{}.conf;\n", i + 1),
            )
        })
        .chain([(
            "/etc/nginx/nginx.conf".to_string(),
            "include d0.conf;\n".to_string(),
        )])
        .collect();
    let refs: Vec<(&str, &str)> = chain
        .iter()
        .map(|(p, t)| (p.as_str(), t.as_str()))
        .collect();
    let (_dir, root) = root_with(&refs);
    let (tree, report) = load_main(&root);
    assert_eq!(tree.len(), MAX_INCLUDE_DEPTH);
    assert_eq!(report.files_refused, 1);
    assert!(
        report.refused[0].reason.contains("nested deeper"),
        "{report:?}"
    );
}
