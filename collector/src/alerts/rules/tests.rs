//! Each rule on the evidence agents send, including the cases that look alike.
use vigil_wire::ConnectResult;

use crate::alerts::{
    model::Cause,
    testing::{self as t, *},
};

/// Refused connects and error lines at 0..1.5 s, then the sample with the listener state.
fn refused_storm(status: vigil_wire::UpstreamStatus) -> Vec<vigil_wire::Batch> {
    let mut first = batch("web-1", T0 + 1000);
    let mut second = batch("web-1", T0 + 2000);
    for i in 0..5 {
        let at = T0 + i * 300;
        let b = if at < T0 + 1000 {
            &mut first
        } else {
            &mut second
        };
        b.connections.push(conn(UP, ConnectResult::Refused, at));
        b.nginx_errors.push(refused_line(UP, at));
    }
    second.upstreams.push(status);
    second.routes = vec![route(&[SITE, "www.client-portal.example.com"], "/", UP, "")];
    vec![first, second]
}

#[test]
fn down_names_the_last_owner_its_exit_and_the_crash_reason() {
    let stderr = [
        "Traceback (most recent call last):",
        "  File \"/srv/app.py\", line 1, in <module>",
        "ModuleNotFoundError: No module named 'flask'",
    ];
    let node = evidence_of(&refused_storm(crashed(UP, T0 - 2000, &stderr)));
    let found = findings(&node, UP);
    assert_eq!(causes(&found), [Cause::UpstreamDown]);
    let f = &found[0];
    assert_eq!(
        f.verdict.summary,
        "502 on client-portal.example.com: nothing listens on 127.0.0.1:8084 since 10:33:56; \
         python3 app.py (pid 4242, unit drupal-client4.service) exited with status 1: \
         ModuleNotFoundError: No module named 'flask'"
    );
    assert!(
        f.verdict
            .next_step
            .starts_with("fix what its stderr says, then systemctl restart drupal-client4.service"),
        "{}",
        f.verdict.next_step
    );
    assert_eq!(f.server_names, [SITE, "www.client-portal.example.com"]);
    assert_eq!(f.locations, ["/"]);
    // Five failed requests seen by both the probes and error.log count five times, not ten.
    assert_eq!(f.episode.by_status.get(&502), Some(&5));
    assert_eq!((f.episode.probe_count, f.episode.log_count), (5, 5));
    let kinds: Vec<&str> = f.verdict.evidence.iter().map(|e| e.kind.as_str()).collect();
    for kind in ["listener", "requests", "nginx_error", "exit", "stderr"] {
        assert!(kinds.contains(&kind), "{kind} in {kinds:?}");
    }
}

#[test]
fn down_without_a_known_owner_says_where_to_start_it() {
    let node = evidence_of(&refused_storm(listener(UP, false, 0, 0)));
    let f = &findings(&node, UP)[0];
    assert!(
        f.verdict
            .summary
            .contains("nothing listens on 127.0.0.1:8084 (nothing has since the agent started)"),
        "{}",
        f.verdict.summary
    );
    assert_eq!(
        f.verdict.next_step,
        "start the service that should listen on 127.0.0.1:8084"
    );
}

#[test]
fn a_unix_socket_that_is_gone_is_down() {
    let sock = "unix:/run/php/php8.2-fpm.sock";
    let mut b = batch("web-1", T0 + 1000);
    // The agent labels errno 2 `error`; `(2: No such file or directory)` means nothing listens.
    b.nginx_errors.push(nginx_error(
        sock,
        "error",
        2,
        "connect() to unix:/run/php/php8.2-fpm.sock failed (2: No such file or directory)",
        "connecting to upstream",
        T0,
    ));
    let node = evidence_of(&[b]);
    let found = findings(&node, sock);
    assert_eq!(causes(&found), [Cause::UpstreamDown]);
    assert!(found[0]
        .verdict
        .summary
        .contains("does not exist (2: No such file or directory)"));
    assert!(found[0]
        .verdict
        .next_step
        .contains("/run/php/php8.2-fpm.sock"));
}

/// Read timeouts on UP, with these processes sampled.
fn timeouts_with(
    workers: Vec<vigil_wire::ProcessSample>,
    extra: Vec<vigil_wire::UpstreamStatus>,
) -> Vec<crate::alerts::rules::Finding> {
    let mut b = batch("web-1", T0 + 61_000);
    for i in 0..3 {
        b.connections
            .push(silent(UP, T0 + 60_000 + i * 100, 60_000));
        b.nginx_errors
            .push(read_timeout_line(UP, T0 + 60_000 + i * 100));
    }
    b.upstreams.push(listener(UP, true, 0, 128));
    b.upstreams.extend(extra);
    b.processes = workers;
    b.routes = vec![route(&[SITE], "/", UP, "")];
    findings(&evidence_of(&[b]), UP)
}

#[test]
fn saturated_compares_the_workers_sum_with_the_cores_they_can_get() {
    // A real gunicorn with 3 spinning workers on a 2-core VM: each at 0.64-0.69 of a core.
    let workers = vec![
        worker(11, 8084, 0.64, "R", 2.0),
        worker(12, 8084, 0.69, "R", 2.0),
        worker(13, 8084, 0.66, "R", 2.0),
    ];
    assert!(
        workers.iter().all(|w| w.cpu_ratio.unwrap() < 0.7),
        "none near one core"
    );
    let found = timeouts_with(workers, vec![]);
    assert_eq!(causes(&found), [Cause::UpstreamSaturated]);
    let f = &found[0];
    assert!(
        f.verdict
            .summary
            .contains("its 3 processes use 1.99 of the 2.00 cores"),
        "{}",
        f.verdict.summary
    );
    assert!(
        f.verdict.next_step.contains("gunicorn --timeout 30"),
        "{}",
        f.verdict.next_step
    );
    assert_eq!(f.episode.by_status.get(&504), Some(&3));
}

#[test]
fn a_cpu_quota_is_what_saturates() {
    // Two workers at 0.25 each, under a cpu.max of half a core.
    let workers = vec![
        worker(11, 8084, 0.25, "R", 0.5),
        worker(12, 8084, 0.24, "S", 0.5),
    ];
    assert_eq!(
        causes(&timeouts_with(workers, vec![])),
        [Cause::UpstreamSaturated]
    );
}

#[test]
fn busy_workers_of_another_upstream_make_it_slow_not_saturated() {
    let other = listener("127.0.0.1:9000", true, 0, 128);
    let busy_elsewhere = vec![
        worker(21, 9000, 0.99, "R", 2.0),
        worker(22, 9000, 0.99, "R", 2.0),
        worker(11, 8084, 0.01, "S", 2.0),
        worker(12, 8084, 0.00, "S", 2.0),
    ];
    let found = timeouts_with(busy_elsewhere, vec![other]);
    assert_eq!(causes(&found), [Cause::UpstreamSlow]);
    assert!(
        found[0]
            .verdict
            .summary
            .contains("not CPU-bound (0.01 of 2.00 cores)"),
        "{}",
        found[0].verdict.summary
    );
}

#[test]
fn a_remote_upstream_that_does_not_answer_is_slow() {
    let remote = "10.0.0.5:8080";
    let mut b = batch("web-1", T0 + 61_000);
    b.connections.push(silent(remote, T0 + 60_000, 60_000));
    b.nginx_errors.push(read_timeout_line(remote, T0 + 60_000));
    let found = findings(&evidence_of(&[b]), remote);
    assert_eq!(causes(&found), [Cause::UpstreamSlow]);
    assert!(found[0]
        .verdict
        .summary
        .contains("no process of it runs on this node"));
}

/// Connect timeouts on UP with this listener state and workers.
fn connect_timeouts(
    status: Option<vigil_wire::UpstreamStatus>,
    slow_handshakes: usize,
) -> Vec<crate::alerts::rules::Finding> {
    let mut b = batch("web-1", T0 + 61_000);
    for i in 0..4 {
        let mut c = conn(UP, ConnectResult::Timeout, T0 + 60_000 + i * 10);
        c.syn_retransmits = 5;
        c.duration_us = 60_000_000;
        b.connections.push(c);
        b.nginx_errors
            .push(connect_timeout_line(UP, T0 + 60_000 + i * 10));
    }
    for i in 0..slow_handshakes {
        let mut c = answered(UP, T0 + 60_500 + i as i64);
        c.syn_retransmits = 1;
        b.connections.push(c);
    }
    b.upstreams.extend(status);
    b.processes = vec![worker(11, 8084, 0.05, "S", 2.0)];
    b.routes = vec![route(&[SITE], "/", UP, "")];
    findings(&evidence_of(&[b]), UP)
}

#[test]
fn a_full_accept_queue_is_backlog_full() {
    let found = connect_timeouts(Some(listener(UP, true, 129, 128)), 0);
    assert_eq!(causes(&found), [Cause::UpstreamBacklogFull]);
    assert!(
        found[0]
            .verdict
            .summary
            .contains("accept queue is full (129/128)"),
        "{}",
        found[0].verdict.summary
    );
    assert!(found[0]
        .verdict
        .next_step
        .starts_with("raise the listen backlog"));
    // Connects that got in only after SYN retransmits, with a listener: SYNs dropped at it.
    let found = connect_timeouts(Some(listener(UP, true, 3, 128)), 2);
    assert_eq!(causes(&found), [Cause::UpstreamBacklogFull]);
}

#[test]
fn unanswered_syns_without_a_listener_problem_are_unreachable() {
    let found = connect_timeouts(Some(listener(UP, true, 0, 128)), 0);
    assert_eq!(causes(&found), [Cause::UpstreamUnreachable]);
    assert!(
        found[0]
            .verdict
            .summary
            .contains("something drops the SYNs"),
        "{}",
        found[0].verdict.summary
    );
    let found = connect_timeouts(Some(listener(UP, false, 0, 0)), 0);
    assert_eq!(
        causes(&found),
        [Cause::UpstreamUnreachable],
        "no RST: a firewall, not a dead port"
    );
    assert!(found[0]
        .verdict
        .summary
        .contains("a firewall drops the SYNs"));
}

#[test]
fn saturated_workers_own_connect_timeouts_at_their_full_queue() {
    let mut b = batch("web-1", T0 + 61_000);
    b.connections
        .push(conn(UP, ConnectResult::Timeout, T0 + 60_000));
    b.nginx_errors.push(connect_timeout_line(UP, T0 + 60_000));
    b.upstreams.push(listener(UP, true, 65, 64));
    b.processes = vec![worker(11, 8084, 0.99, "R", 1.0)];
    let found = findings(&evidence_of(&[b]), UP);
    assert_eq!(causes(&found), [Cause::UpstreamSaturated]);
}

#[test]
fn resets_before_the_response_header_are_upstream_reset() {
    let mut b = batch("web-1", T0 + 1000);
    let reset = |phase, at| {
        nginx_error(
            UP,
            "reset",
            104,
            "recv() failed (104: Connection reset by peer)",
            phase,
            at,
        )
    };
    b.nginx_errors
        .push(reset("reading response header from upstream", T0));
    b.nginx_errors.push(nginx_error(
        UP,
        "premature_close",
        0,
        "upstream prematurely closed connection",
        "reading response header from upstream",
        T0 + 100,
    ));
    b.upstreams.push(listener(UP, true, 0, 128));
    let found = findings(&evidence_of(&[b]), UP);
    assert_eq!(causes(&found), [Cause::UpstreamReset]);
    assert_eq!(found[0].episode.by_status.get(&502), Some(&2));
    assert!(
        found[0]
            .verdict
            .next_step
            .contains("journalctl -u client-portal.service"),
        "{}",
        found[0].verdict.next_step
    );
    // Once the response had started the client got a cut 200, not a 502.
    let mut b = batch("web-1", T0 + 1000);
    b.nginx_errors.push(reset("reading upstream", T0));
    assert!(findings(&evidence_of(&[b]), UP).is_empty());
}

#[test]
fn no_live_upstreams_is_the_group_and_its_servers_are_down() {
    let (a, b_up) = ("127.0.0.1:8081", "127.0.0.1:8082");
    let mut b = batch("web-1", T0 + 1000);
    b.routes = vec![
        route(&[SITE], "/api/", a, "backend"),
        route(&[SITE], "/api/", b_up, "backend"),
    ];
    for up in [a, b_up] {
        b.connections.push(conn(up, ConnectResult::Refused, T0));
        b.nginx_errors.push(refused_line(up, T0));
    }
    b.nginx_errors.push(nginx_error(
        "backend",
        "no_live_upstreams",
        0,
        "no live upstreams",
        "connecting to upstream",
        T0 + 500,
    ));
    let node = evidence_of(&[b]);
    let found = findings(&node, "backend");
    assert_eq!(causes(&found), [Cause::NoLiveUpstreams]);
    assert!(
        found[0]
            .verdict
            .summary
            .contains("(127.0.0.1:8081: refuses connections, 127.0.0.1:8082: refuses connections)"),
        "{}",
        found[0].verdict.summary
    );
    assert_eq!(found[0].locations, ["/api/"]);
    assert_eq!(causes(&findings(&node, a)), [Cause::UpstreamDown]);
}

#[test]
fn one_server_down_in_a_group_is_upstream_down_not_no_live() {
    let (a, b_up) = ("127.0.0.1:8081", "127.0.0.1:8082");
    let mut b = batch("web-1", T0 + 1000);
    b.routes = vec![
        route(&[SITE], "/", a, "app"),
        route(&[SITE], "/", b_up, "app"),
    ];
    b.connections.push(conn(a, ConnectResult::Refused, T0));
    b.nginx_errors.push(refused_line(a, T0));
    // nginx passed the request on to the other server, which answered.
    b.connections.push(answered(b_up, T0 + 5));
    let node = evidence_of(&[b]);
    let found = findings(&node, a);
    assert_eq!(causes(&found), [Cause::UpstreamDown]);
    let group = found[0]
        .verdict
        .evidence
        .iter()
        .find(|e| e.kind == "group")
        .expect("group evidence");
    assert!(
        group.text.contains("upstream app") && group.text.contains(b_up),
        "{}",
        group.text
    );
    assert!(findings(&node, "app").is_empty());
    assert!(findings(&node, b_up).is_empty());
}

#[test]
fn a_client_that_went_away_is_not_an_upstream_failure() {
    let mut b = batch("web-1", T0 + 2000);
    b.routes = vec![route(&[SITE], "/", UP, "")];
    b.nginx_errors.push(nginx_error(
        UP,
        "error",
        0,
        "client prematurely closed connection",
        "reading response header from upstream",
        T0,
    ));
    let mut disabled = nginx_error(
        UP,
        "error",
        0,
        "upstream server temporarily disabled",
        "connecting to upstream",
        T0,
    );
    disabled.level = "warn".into();
    b.nginx_errors.push(disabled);
    // nginx closed the upstream connection 2 s in, long before its 60 s read timeout: the
    // client left (499), it was not a read timeout.
    b.connections.push(silent(UP, T0 + 1000, 2000));
    let node = evidence_of(&[b]);
    assert!(
        findings(&node, UP).is_empty(),
        "{:?}",
        causes(&findings(&node, UP))
    );
}

/// How the workers' CPU is measured and which failures it judges.
mod workers;
