//! Notifiers against real receivers on 127.0.0.1: aiosmtpd (plain, STARTTLS with AUTH, TLS),
//! Alertmanager read back with amtool, a webhook receiver, and Prometheus for the links' PromQL.
use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader, Read, Write},
    net::TcpListener,
    sync::mpsc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use serde_json::Value;
use vigil_collector::{
    alerts::model::{Alert, AlertKey, AlertState, Cause, Evidence},
    notify::{
        config::{EmailConfig, Links, Secret, SmtpSecurity},
        links, payload, Notifiers, NotifyConfig,
    },
};
use vigil_e2e::{
    alertmanager::Alertmanager,
    http, scratch_dir,
    smtp::{SmtpMode, SmtpServer, TestCerts},
    wait_for,
};

const WAIT: Duration = Duration::from_secs(30);

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn alert(node: &str, upstream: &str, cause: Cause) -> Alert {
    let t0 = now_ms() - 120_000;
    Alert {
        key: AlertKey {
            node: node.into(),
            upstream: upstream.into(),
            cause,
        },
        state: AlertState::Firing,
        status: cause.status(),
        server_names: vec!["client-portal.example.com".into()],
        locations: vec!["/".into()],
        failed_requests: BTreeMap::from([(cause.status().to_string(), 1234)]),
        first_seen_ms: t0,
        last_seen_ms: t0 + 100_000,
        fired_at_ms: Some(t0 + 30_000),
        resolved_at_ms: None,
        summary: format!("nothing listens on {upstream}"),
        evidence: vec![
            Evidence {
                kind: "listener".into(),
                text: format!("nothing listens on {upstream}"),
            },
            Evidence {
                kind: "exit".into(),
                text: "python3 app.py (pid 4242) exited with status 1".into(),
            },
            Evidence {
                kind: "stderr".into(),
                text: "ModuleNotFoundError: No module named 'flask'".into(),
            },
        ],
        next_step: "systemctl restart client-portal.service".into(),
    }
}

fn resolved(mut a: Alert) -> Alert {
    a.state = AlertState::Resolved;
    a.resolved_at_ms = Some(now_ms());
    a
}

fn email_config(port: u16, security: SmtpSecurity) -> EmailConfig {
    EmailConfig {
        host: "127.0.0.1".into(),
        port,
        security,
        credentials: None,
        from: "vigil <vigil@example.com>".parse().unwrap(),
        to: vec![
            "oncall@example.com".parse().unwrap(),
            "sre@example.com".parse().unwrap(),
        ],
    }
}

fn config() -> NotifyConfig {
    NotifyConfig {
        group_wait: Duration::from_millis(300),
        links: Links {
            prometheus: Some("http://prometheus.example.com:9090".into()),
            ..Links::default()
        },
        ..NotifyConfig::default()
    }
}

#[test]
fn email_firing_then_resolved_reaches_the_mailbox() {
    let smtp = SmtpServer::start(SmtpMode::Plain);
    let notifiers = Notifiers::start(&NotifyConfig {
        email: Some(email_config(smtp.port, SmtpSecurity::Plain)),
        ..config()
    })
    .unwrap();
    let firing = alert("node-1", "127.0.0.1:8084", Cause::UpstreamDown);
    notifiers.transition(&firing);
    let mails = smtp.wait_for_mails(1, WAIT);
    assert_eq!(mails.len(), 1, "{mails:?}");
    let mail = &mails[0];
    assert_eq!(
        mail.subject,
        "[vigil] FIRING UpstreamDown 127.0.0.1:8084 (502) client-portal.example.com on node-1"
    );
    assert_eq!(mail.from, "vigil <vigil@example.com>");
    assert!(
        mail.rcpt_to.contains("oncall@example.com") && mail.rcpt_to.contains("sre@example.com"),
        "{}",
        mail.rcpt_to
    );
    assert_eq!(mail.content_type, "text/plain");
    for want in [
        "nginx answers 502 for client-portal.example.com: nothing listens on 127.0.0.1:8084",
        "Requests:  1234 answered 502",
        "[stderr] ModuleNotFoundError: No module named 'flask'",
        "Next step:\n  systemctl restart client-portal.service",
        "Prometheus: http://prometheus.example.com:9090/graph?g0.expr=",
    ] {
        assert!(
            mail.body.contains(want),
            "missing {want:?} in:\n{}",
            mail.body
        );
    }
    notifiers.transition(&resolved(firing));
    let mails = smtp.wait_for_mails(2, WAIT);
    assert_eq!(mails.len(), 2, "{mails:?}");
    assert!(
        mails[1]
            .subject
            .starts_with("[vigil] RESOLVED UpstreamDown 127.0.0.1:8084 (502)"),
        "{}",
        mails[1].subject
    );
    assert!(
        mails[1].body.contains("127.0.0.1:8084 recovered"),
        "{}",
        mails[1].body
    );
}

#[test]
fn email_groups_a_nodes_burst_into_one_mail() {
    let smtp = SmtpServer::start(SmtpMode::Plain);
    let notifiers = Notifiers::start(&NotifyConfig {
        email: Some(email_config(smtp.port, SmtpSecurity::Plain)),
        group_wait: Duration::from_secs(3),
        ..config()
    })
    .unwrap();
    notifiers.transition(&alert("node-1", "127.0.0.1:8084", Cause::UpstreamDown));
    notifiers.transition(&alert("node-1", "127.0.0.1:9000", Cause::UpstreamSaturated));
    notifiers.transition(&alert("node-2", "127.0.0.1:8084", Cause::UpstreamDown));
    let mut pending = alert("node-1", "127.0.0.1:7000", Cause::UpstreamSlow);
    pending.state = AlertState::Pending;
    notifiers.transition(&pending);
    let mut mails = smtp.wait_for_mails(2, WAIT);
    assert_eq!(mails.len(), 2, "one mail per node: {mails:?}");
    mails.sort_by(|a, b| a.subject.cmp(&b.subject));
    assert_eq!(
        mails[0].subject,
        "[vigil] FIRING 2 on node-1: UpstreamDown 127.0.0.1:8084 (502), UpstreamSaturated 127.0.0.1:9000 (504)"
    );
    assert!(
        mails[0].body.contains("--- 1/2 ---") && mails[0].body.contains("--- 2/2 ---"),
        "{}",
        mails[0].body
    );
    assert!(
        !mails[0].body.contains("127.0.0.1:7000"),
        "pending alerts are not notified"
    );
    assert!(
        mails[1].subject.ends_with("on node-2"),
        "{}",
        mails[1].subject
    );
}

#[test]
fn email_over_starttls_with_auth_and_over_tls_trusting_the_ca_file() {
    let certs = TestCerts::generate(&scratch_dir("notify-certs"));
    let ca_pem = Some(std::fs::read(&certs.ca).unwrap());
    let starttls = SmtpServer::start(SmtpMode::StartTlsAuth {
        certs: &certs,
        user: "vigil",
        password: "s3cret",
    });
    let tls = SmtpServer::start(SmtpMode::Tls(&certs));
    let mut with_auth = email_config(starttls.port, SmtpSecurity::StartTls);
    with_auth.credentials = Some(("vigil".into(), Secret("s3cret".into())));
    let first = Notifiers::start(&NotifyConfig {
        email: Some(with_auth),
        ca_pem: ca_pem.clone(),
        ..config()
    })
    .unwrap();
    let second = Notifiers::start(&NotifyConfig {
        email: Some(email_config(tls.port, SmtpSecurity::Tls)),
        ca_pem,
        ..config()
    })
    .unwrap();
    let a = alert("node-1", "127.0.0.1:8084", Cause::UpstreamDown);
    first.transition(&a);
    second.transition(&a);
    for server in [&starttls, &tls] {
        let mails = server.wait_for_mails(1, WAIT);
        assert_eq!(mails.len(), 1, "port {}: {mails:?}", server.port);
        assert!(
            mails[0].subject.starts_with("[vigil] FIRING UpstreamDown"),
            "{}",
            mails[0].subject
        );
    }
}

/// amtool's view of one alert, by alertname.
fn find<'a>(alerts: &'a [Value], name: &str) -> Option<&'a Value> {
    alerts.iter().find(|a| a["labels"]["alertname"] == name)
}

#[test]
fn alertmanager_holds_the_alert_while_firing_then_resolves_it() {
    let am = Alertmanager::start();
    let notifiers = Notifiers::start(&NotifyConfig {
        alertmanagers: vec![am.url()],
        resend_interval: Duration::from_secs(1),
        ..config()
    })
    .unwrap();
    let firing = alert("node-1", "127.0.0.1:8084", Cause::UpstreamDown);
    notifiers.transition(&firing);
    let alerts = am.wait(|a| find(a, "UpstreamDown").is_some());
    let shown =
        find(&alerts, "UpstreamDown").unwrap_or_else(|| panic!("not in amtool: {alerts:?}"));
    assert_eq!(shown["labels"]["node"], "node-1");
    assert_eq!(shown["labels"]["upstream"], "127.0.0.1:8084");
    assert_eq!(shown["labels"]["status_code"], "502");
    assert_eq!(
        shown["annotations"]["next_step"],
        "systemctl restart client-portal.service"
    );
    assert!(
        shown["annotations"]["description"]
            .as_str()
            .unwrap()
            .contains("ModuleNotFoundError"),
        "{shown}"
    );
    assert!(shown["generatorURL"]
        .as_str()
        .unwrap()
        .starts_with("http://prometheus.example.com:9090/graph?"));
    // Ours is Alertmanager's fingerprint (the webhook sends it).
    assert_eq!(
        shown["fingerprint"].as_str().unwrap(),
        payload::fingerprint(&payload::labels(&firing))
    );
    // Re-sent while firing: endsAt moves ahead (RFC 3339 in UTC sorts as text).
    let first_end = shown["endsAt"].as_str().unwrap().to_owned();
    let later = am.wait(|a| {
        find(a, "UpstreamDown").is_some_and(|s| s["endsAt"].as_str().unwrap() > first_end.as_str())
    });
    assert!(
        find(&later, "UpstreamDown")
            .is_some_and(|s| s["endsAt"].as_str().unwrap() > first_end.as_str()),
        "not re-sent: {later:?}"
    );
    notifiers.transition(&resolved(firing));
    let after = am.wait(|a| find(a, "UpstreamDown").is_none());
    assert!(
        find(&after, "UpstreamDown").is_none(),
        "still active after resolve: {after:?}"
    );
}

/// A one-request-at-a-time HTTP receiver on 127.0.0.1: each POST body goes to the channel.
fn webhook_receiver() -> (u16, mpsc::Receiver<(String, Vec<u8>)>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let (mut head, mut line) = (String::new(), String::new());
            while reader.read_line(&mut line).unwrap_or(0) > 2 {
                head.push_str(&line);
                line.clear();
            }
            let length = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap())
                })
                .unwrap_or(0);
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            if tx.send((head, body)).is_err() {
                return;
            }
        }
    });
    (port, rx)
}

#[test]
fn webhook_receives_alertmanager_webhook_json() {
    let (port, received) = webhook_receiver();
    let notifiers = Notifiers::start(&NotifyConfig {
        webhooks: vec![format!("http://127.0.0.1:{port}/hook")],
        ..config()
    })
    .unwrap();
    let firing = alert("node-1", "127.0.0.1:8084", Cause::UpstreamDown);
    notifiers.transition(&firing);
    let (head, body) = received.recv_timeout(WAIT).expect("webhook POST");
    assert!(head.starts_with("POST /hook HTTP/1.1"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/json"),
        "{head}"
    );
    let message: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(message["version"], "4");
    assert_eq!(message["status"], "firing");
    assert_eq!(message["receiver"], "vigil");
    assert_eq!(message["groupKey"], "{}:{node=\"node-1\"}");
    assert_eq!(message["groupLabels"]["node"], "node-1");
    assert_eq!(message["commonLabels"]["alertname"], "UpstreamDown");
    assert_eq!(message["truncatedAlerts"], 0);
    assert!(message["externalURL"].is_string() && message["commonAnnotations"].is_object());
    let first = &message["alerts"][0];
    for key in [
        "status",
        "labels",
        "annotations",
        "startsAt",
        "endsAt",
        "generatorURL",
        "fingerprint",
    ] {
        assert!(!first[key].is_null(), "alerts[0] lacks {key}: {message}");
    }
    assert_eq!(first["labels"]["upstream"], "127.0.0.1:8084");
    assert_eq!(
        first["annotations"]["server_names"],
        "client-portal.example.com"
    );
    notifiers.transition(&resolved(firing));
    let (_, body) = received.recv_timeout(WAIT).expect("resolved webhook POST");
    let message: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(message["status"], "resolved");
    assert_eq!(message["alerts"][0]["status"], "resolved");
    assert_ne!(message["alerts"][0]["endsAt"], payload::UNSET_TIME);
}

#[test]
fn every_causes_link_queries_are_valid_promql() {
    let prometheus = vigil_e2e::prometheus::Prometheus::start(vigil_e2e::free_port());
    for cause in Cause::ALL {
        let a = alert("node \"1\"", "unix:/run/app.sock", cause);
        for query in links::queries(&a) {
            let path = format!("/api/v1/query?query={}", http::encode(&query));
            let mut answer = None;
            wait_for(WAIT, || {
                answer = http::get(prometheus.port, &path).ok().map(|r| r.body);
                answer.is_some()
            });
            let answer: Value = serde_json::from_str(answer.as_deref().unwrap_or("null")).unwrap();
            assert_eq!(answer["status"], "success", "{query}: {answer}");
        }
    }
}
