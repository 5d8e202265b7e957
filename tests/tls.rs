//! Transport security: the collector serving HTTPS from PEM files, an agent delivering over
//! https:// trusting the collector's CA with --ca-file, and an agent that does not trust it
//! delivering nothing (the handshake fails, counted) rather than falling back to plaintext.
use std::time::Duration;

use vigil_e2e::{
    agent::AgentRun, collector::Collector, free_port, scratch_dir, smtp::TestCerts, wait_for,
};

fn tls_collector(tag: &str) -> (Collector, TestCerts) {
    let certs = TestCerts::generate(&scratch_dir(&format!("{tag}-certs")));
    let config = format!(
        "tls_cert_file = \"{}\"\ntls_key_file = \"{}\"\n",
        certs.cert.display(),
        certs.key.display()
    );
    // Collector::start waits for /healthz over plain HTTP: it cannot answer it over TLS.
    (Collector::start_tls(tag, &config, &certs.ca), certs)
}

#[test]
fn tls_agent_delivers_to_an_https_collector_it_trusts() {
    let (c, certs) = tls_collector("tls-ok");
    let url = format!("https://127.0.0.1:{}", c.port);
    let state = scratch_dir("tls-agent");
    let ca = certs.ca.display().to_string();
    let _agent = AgentRun::start(&url, &[free_port()], &state, &["--ca-file", &ca]);
    let accepted = wait_for(Duration::from_secs(20), || {
        c.sample("vigil_ingest_batches_total", &[("result", "accepted")])
            .is_some_and(|n| n >= 1.0)
    });
    assert!(accepted, "no batch accepted over TLS:\n{}", c.metrics());
}

#[test]
fn tls_agent_that_does_not_trust_the_collector_sends_nothing() {
    let (c, _certs) = tls_collector("tls-untrusted");
    let url = format!("https://127.0.0.1:{}", c.port);
    let state = scratch_dir("tls-agent-untrusted");
    let _agent = AgentRun::start(&url, &[free_port()], &state, &[]);
    let refused = wait_for(Duration::from_secs(20), || {
        c.sample("vigil_tls_handshakes_failed_total", &[])
            .is_some_and(|n| n >= 1.0)
    });
    assert!(
        refused,
        "the untrusted handshake was not refused:\n{}",
        c.metrics()
    );
    assert_eq!(
        c.sample("vigil_ingest_batches_total", &[("result", "accepted")]),
        None,
        "nothing may be accepted from an agent that cannot verify the collector"
    );
}
