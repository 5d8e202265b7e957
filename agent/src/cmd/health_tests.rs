use std::net::Shutdown;

use super::*;

fn start(state: Arc<HealthState>) -> SocketAddr {
    serve("127.0.0.1:0".parse().unwrap(), state).expect("bind on loopback")
}

/// Sends `request` as is and returns the whole response.
fn exchange(addr: SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    // The server may answer (and close) before it read everything of an oversized request.
    let _ = stream.write_all(request);
    let _ = stream.shutdown(Shutdown::Write);
    // Bytes read before a reset (the server closes on an unread oversized head) are kept.
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    String::from_utf8_lossy(&response).into_owned()
}

fn get(addr: SocketAddr, path: &str) -> String {
    exchange(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes(),
    )
}

fn status(response: &str) -> &str {
    response.split(' ').nth(1).unwrap_or("none")
}

#[test]
fn healthz_is_ok_while_the_loop_turns_and_503_once_stale() {
    let state = HealthState::new("n1".into());
    state.turned();
    let addr = start(state.clone());
    assert_eq!(status(&get(addr, "/healthz")), "200");
    let now = Instant::now();
    assert!(state.healthy_at(now));
    assert!(!state.healthy_at(now + STALE_AFTER + Duration::from_secs(1)));

    // A loop that last turned a minute ago.
    let stale = Arc::new(HealthState {
        started: Instant::now()
            .checked_sub(Duration::from_secs(60))
            .expect("uptime over a minute"),
        ..Arc::into_inner(HealthState::new("n1".into())).unwrap()
    });
    let addr = start(stale);
    let response = get(addr, "/healthz");
    assert_eq!(status(&response), "503", "{response}");
    assert!(response.contains("stale"), "{response}");
}

#[test]
fn metrics_are_prometheus_text_with_the_published_values() {
    let state = HealthState::new("node-\"a\"".into());
    state.turned();
    state.publish(SelfMetrics {
        probes_loaded: true,
        probe_connects_seen: 42,
        batches_retried: 7,
        spool_bytes: 1234,
        capabilities_missing: vec!["first_byte".into()],
        ..Default::default()
    });
    let addr = start(state);
    let response = get(addr, "/metrics");
    assert_eq!(status(&response), "200");
    assert!(response.contains("Content-Type: text/plain; version=0.0.4"));
    let body = response.split("\r\n\r\n").nth(1).unwrap();
    for line in body.lines().filter(|l| !l.starts_with('#')) {
        let (series, value) = line.rsplit_once(' ').unwrap();
        assert!(series.starts_with("vigil_agent_"), "{line}");
        value.parse::<f64>().unwrap_or_else(|_| panic!("{line}"));
    }
    for expected in [
        "vigil_agent_probe_connects_seen_total 42\n",
        "vigil_agent_batches_retried_total 7\n",
        "vigil_agent_spool_queued_bytes 1234\n",
        "vigil_agent_probes_loaded 1\n",
        "vigil_agent_capability_missing{capability=\"first_byte\"} 1\n",
        "node=\"node-\\\"a\\\"\"",
        "# TYPE vigil_agent_probe_events_lost_total counter\n",
    ] {
        assert!(body.contains(expected), "{expected} missing in:\n{body}");
    }
}

#[test]
fn unknown_paths_methods_and_garbage_are_refused_and_counted() {
    let state = HealthState::new("n".into());
    state.turned();
    let addr = start(state.clone());
    assert_eq!(status(&get(addr, "/nope")), "404");
    let post = exchange(addr, b"POST /healthz HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(status(&post), "405");
    assert_eq!(status(&exchange(addr, b"hello\r\n\r\n")), "400");
    let huge = format!(
        "GET /metrics HTTP/1.1\r\nX: {}\r\n\r\n",
        "a".repeat(MAX_HEAD_BYTES * 2)
    );
    assert_eq!(status(&exchange(addr, huge.as_bytes())), "431");
    let head = exchange(addr, b"HEAD /healthz HTTP/1.1\r\n\r\n");
    assert_eq!(status(&head), "200");
    assert!(head.ends_with("\r\n\r\n"), "no body for HEAD: {head:?}");
    assert_eq!(state.bad_requests.load(Relaxed), 2);
}

#[test]
fn connections_beyond_the_bound_are_answered_busy() {
    // Idle clients hold every slot until their read times out: long enough for a busy machine.
    let state = Arc::new(HealthState {
        io_timeout: Duration::from_secs(120),
        ..Arc::into_inner(HealthState::new("n".into())).unwrap()
    });
    state.turned();
    let addr = start(state.clone());
    let idle: Vec<TcpStream> = (0..MAX_CONNECTIONS)
        .map(|_| TcpStream::connect(addr).unwrap())
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    while state.active.load(Relaxed) < MAX_CONNECTIONS && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let response = get(addr, "/healthz");
    assert_eq!(status(&response), "503", "{response}");
    assert!(response.ends_with("busy\n"));
    assert_eq!(state.refused_connections.load(Relaxed), 1);
    drop(idle);
}

#[test]
fn listen_flag_takes_an_address_or_off() {
    assert_eq!(parse_listen("off"), Ok(ListenHealth(None)));
    assert_eq!(
        parse_listen("127.0.0.1:9471"),
        Ok(ListenHealth(Some("127.0.0.1:9471".parse().unwrap())))
    );
    assert!(parse_listen("localhost").is_err());
}
