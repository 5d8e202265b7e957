//! An nft table of our own that drops SYNs to one loopback port; removed on drop.
use std::process::Command;

pub struct SynDrop {
    table: String,
}

fn nft(args: &[&str]) {
    let status = Command::new("nft")
        .args(args)
        .status()
        .expect("nft installed");
    assert!(status.success(), "nft {args:?} failed");
}

impl SynDrop {
    pub fn new(port: u16) -> SynDrop {
        let table = format!("vigil_test_{}_{port}", std::process::id());
        nft(&["add", "table", "inet", &table]);
        nft(&[
            "add",
            "chain",
            "inet",
            &table,
            "input",
            "{ type filter hook input priority 0; policy accept; }",
        ]);
        let rule = format!("tcp dport {port} tcp flags syn drop");
        let mut args = vec!["add", "rule", "inet", &table, "input"];
        args.extend(rule.split(' '));
        nft(&args);
        SynDrop { table }
    }
}

impl Drop for SynDrop {
    fn drop(&mut self) {
        let _ = Command::new("nft")
            .args(["delete", "table", "inet", &self.table])
            .status();
    }
}
