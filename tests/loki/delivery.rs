//! Delivery that neither stalls nor drops: pushes over Loki's burst, credentials refused for
//! a while, a corrupt spool file, and a collector killed (SIGKILL) while Loki is away or a
//! push is in flight.
use std::{collections::BTreeSet, path::Path, time::Duration};

use vigil_e2e::{
    collector::Collector,
    free_port, http,
    loki::{LokiServer, Stall},
    now_ns, scratch_dir,
};
use vigil_wire::{Batch, NginxAccessRecord};

use super::{assert_each_access_line_once, post, wait_until};

/// A metric that must be exported (absent is a failure, not zero).
fn metric(c: &Collector, name: &str, labels: &[(&str, &str)]) -> f64 {
    let text = c.metrics();
    http::metric_value(&text, name, labels)
        .unwrap_or_else(|| panic!("{name}{labels:?} not exported:\n{text}"))
}

/// Access lines `id-<first>` … padded to about `bytes` each, stamped now.
fn long_access_batch(sequence: u64, first: usize, n: usize, bytes: usize) -> Vec<u8> {
    let now = now_ns();
    Batch {
        agent_id: "loki-delivery".into(),
        sequence,
        node: "n1".into(),
        nginx_access: (first..first + n)
            .map(|i| {
                let line = format!("127.0.0.1 - - \"GET /id-{i} HTTP/1.1\" 200 2 \"-\" \"");
                let pad = "a".repeat(bytes.saturating_sub(line.len() + 1));
                NginxAccessRecord {
                    unix_ns: now + i as i64,
                    line: format!("{line}{pad}\""),
                    parsed: true,
                    status: 200,
                    ..Default::default()
                }
            })
            .collect(),
        ..Default::default()
    }
    .encode_compressed()
}

/// Waits until each of `id-0` … `id-<n-1>` arrived, at least once; returns how many lines
/// arrived in all.
fn assert_each_access_line_arrives(loki: &LokiServer, n: usize) -> usize {
    let ids = || {
        let lines = loki.lines(&[("source", "nginx_access")]);
        let ids: BTreeSet<String> = lines
            .iter()
            .map(|l| l.line.split_whitespace().nth(4).unwrap().to_owned())
            .collect();
        (ids.len(), lines.len())
    };
    wait_until(&format!("{n} distinct lines"), || ids().0 >= n);
    std::thread::sleep(Duration::from_millis(500));
    let (distinct, all) = ids();
    assert_eq!(distinct, n, "only the lines sent");
    all
}

fn spool_files(dir: &Path, extension: &str) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(extension))
        .collect()
}

fn statuses(loki: &LokiServer, status: u16) -> usize {
    let pushes = &loki.state.lock().unwrap().pushes;
    pushes.iter().filter(|(s, _)| *s == status).count()
}

#[test]
fn spilled_chunks_fit_in_one_push() {
    // Loki away, a small queue: the lines spill to disk. Each spilled chunk must be a batch
    // Loki takes at once (it was 5000 lines, far over Loki's burst, refused with 429 forever).
    let port = free_port();
    let spool = scratch_dir("loki-chunks");
    let c = Collector::start(
        "loki-chunks",
        &format!("loki_url = \"http://127.0.0.1:{port}\"\n[loki]\nbatch_age_ms = 200\nbatch_bytes = 16384\nqueue_limit = 100\nspool_dir = \"{}\"\n", spool.display()),
    );
    for (seq, first) in (1..=3).zip((0..).step_by(2000)) {
        post(&c, &long_access_batch(seq, first, 2000, 150));
    }
    wait_until("chunks on disk", || {
        !spool_files(&spool, ".batch").is_empty()
    });
    let loki = LokiServer::start_on(port);
    loki.state.lock().unwrap().burst_bytes = Some(16384);
    assert_each_access_line_once(&loki, 6000);
    assert_eq!(statuses(&loki, 429), 0, "no chunk over the burst");
    assert!(spool_files(&spool, ".batch").is_empty(), "spool emptied");
}

#[test]
fn a_batch_over_lokis_burst_is_halved_until_it_fits() {
    // Every line goes through the spool (queue_limit = 0) in chunks of 32 KiB; this Loki's
    // burst is 8 KB, so each chunk is 429'd until halved small enough.
    let loki = LokiServer::start();
    loki.state.lock().unwrap().burst_bytes = Some(8000);
    let spool = scratch_dir("loki-burst");
    let c = Collector::start(
        "loki-burst",
        &super::loki_config(
            &loki,
            &format!(
                "batch_bytes = 32768\nqueue_limit = 0\nspool_dir = \"{}\"\n",
                spool.display()
            ),
        ),
    );
    post(&c, &long_access_batch(1, 0, 600, 100));
    post(&c, &long_access_batch(2, 600, 400, 100));
    assert_each_access_line_once(&loki, 1000);
    assert!(statuses(&loki, 429) >= 2, "the burst was met");
    assert!(
        metric(
            &c,
            "vigil_loki_lines_retried_total",
            &[("reason", "rate_limited")]
        ) > 0.0
    );
    assert_eq!(metric(&c, "vigil_loki_lines_sent_total", &[]), 1000.0);
    assert!(
        spool_files(&spool, ".batch").is_empty(),
        "every chunk removed once delivered"
    );
}

#[test]
fn credentials_refused_for_a_while_lose_nothing() {
    // An auth proxy restarting answers 401/403 for a while: retried, counted, never dropped.
    let loki = LokiServer::start();
    loki.state
        .lock()
        .unwrap()
        .fail_next
        .extend([401, 403, 401, 401]);
    let c = Collector::start("loki-auth", &super::loki_config(&loki, ""));
    post(&c, &long_access_batch(1, 0, 50, 80));
    post(&c, &long_access_batch(2, 50, 50, 80));
    assert_each_access_line_once(&loki, 100);
    assert_eq!(statuses(&loki, 401) + statuses(&loki, 403), 4);
    assert!(metric(&c, "vigil_loki_lines_retried_total", &[("reason", "auth")]) >= 50.0);
    assert_eq!(metric(&c, "vigil_loki_lines_sent_total", &[]), 100.0);
    let text = c.metrics();
    assert!(
        http::metric_value(&text, "vigil_loki_lines_failed_total", &[]).is_none(),
        "nothing dropped:\n{text}"
    );
}

#[test]
fn a_corrupt_spool_file_is_set_aside_counted_and_the_rest_delivered() {
    let port = free_port();
    let spool = scratch_dir("loki-corrupt");
    let config = format!(
        "loki_url = \"http://127.0.0.1:{port}\"\nshutdown_grace_ms = 300\n[loki]\nbatch_age_ms = 200\nqueue_limit = 0\nspool_dir = \"{}\"\n",
        spool.display()
    );
    let mut first = Collector::start("loki-corrupt-a", &config);
    for (seq, first_id) in (1..=3).zip((0..).step_by(100)) {
        post(&first, &long_access_batch(seq, first_id, 100, 80));
    }
    first.terminate();
    assert!(first.wait().success());
    let mut files = spool_files(&spool, ".batch");
    files.sort();
    assert_eq!(files.len(), 3, "one file per batch: {files:?}");
    // The middle batch (id-100 … id-199) is damaged on disk.
    std::fs::write(spool.join(&files[1]), b"\x05not a snappy block").unwrap();

    let loki = LokiServer::start_on(port);
    let second = Collector::start("loki-corrupt-b", &config);
    wait_until("the other 200 lines", || loki.lines(&[]).len() >= 200);
    std::thread::sleep(Duration::from_millis(500));
    let ids: BTreeSet<String> = loki
        .lines(&[("source", "nginx_access")])
        .iter()
        .map(|l| l.line.split_whitespace().nth(4).unwrap().to_owned())
        .collect();
    let expected: BTreeSet<String> = (0..100)
        .chain(200..300)
        .map(|i| format!("/id-{i}"))
        .collect();
    assert_eq!(ids, expected, "all but the damaged batch");
    assert_eq!(loki.lines(&[]).len(), 200, "each once");
    assert_eq!(metric(&second, "vigil_loki_spool_corrupt_total", &[]), 1.0);
    assert_eq!(spool_files(&spool, ".batch"), Vec::<String>::new());
    assert_eq!(
        spool_files(&spool, ".corrupt"),
        [format!("{}.corrupt", files[1])],
        "kept for inspection"
    );
}

/// A collector whose every accepted line is in the spool before the 200 (queue_limit = 0).
fn spooling_config(port: u16, spool: &Path) -> String {
    format!(
        "loki_url = \"http://127.0.0.1:{port}\"\n[loki]\nbatch_age_ms = 200\nqueue_limit = 0\nspool_dir = \"{}\"\n",
        spool.display()
    )
}

#[test]
fn a_collector_killed_while_loki_is_away_loses_nothing() {
    let port = free_port();
    let spool = scratch_dir("loki-kill-away");
    let config = spooling_config(port, &spool);
    let first = Collector::start("loki-kill-away-a", &config);
    for (seq, first_id) in (1..=3).zip((0..).step_by(300)) {
        post(&first, &long_access_batch(seq, first_id, 300, 80));
    }
    // The shipper holds the oldest chunk and retries it when the SIGKILL comes.
    wait_until("a failed push", || {
        http::metric_value(&first.metrics(), "vigil_loki_lines_retried_total", &[])
            .is_some_and(|n| n > 0.0)
    });
    drop(first); // SIGKILL
    let loki = LokiServer::start_on(port);
    let _second = Collector::start("loki-kill-away-b", &config);
    assert_each_access_line_once(&loki, 900);
}

#[test]
fn a_collector_killed_mid_push_sends_the_unacknowledged_batch_again() {
    for stall in [Stall::BeforeStoring, Stall::AfterStoring] {
        let loki = LokiServer::start();
        loki.state.lock().unwrap().stall_next = Some(stall);
        let spool = scratch_dir("loki-kill-push");
        let config = spooling_config(loki.port, &spool);
        let first = Collector::start("loki-kill-push-a", &config);
        post(&first, &long_access_batch(1, 0, 300, 80));
        wait_until("the push in flight", || {
            loki.state.lock().unwrap().stalled == 1
        });
        drop(first); // SIGKILL, Loki's answer not read
        let _second = Collector::start("loki-kill-push-b", &config);
        let arrived = assert_each_access_line_arrives(&loki, 300);
        // Loki took the batch but the collector never heard: sent again (Loki keeps one copy).
        let expected = if stall == Stall::AfterStoring { 300 } else { 0 };
        assert_eq!(
            (arrived - 300, loki.duplicates()),
            (expected, expected),
            "{stall:?}"
        );
    }
}
