//! Notifiers against real receivers on 127.0.0.1: aiosmtpd (plain, STARTTLS with AUTH, TLS),
//! Alertmanager read back with amtool, and Prometheus for the links' PromQL.
mod common;

use std::time::Duration;

use common::{alert, config, email_config, resolved, WAIT};
use serde_json::Value;
use vigil_collector::{
    alerts::model::{AlertState, Cause},
    notify::{
        config::{Secret, SmtpSecurity},
        links, payload, Notifiers, NotifyConfig,
    },
};
use vigil_e2e::{
    alertmanager::Alertmanager,
    http, scratch_dir,
    smtp::{SmtpMode, SmtpServer, TestCerts},
    wait_for,
};

#[test]
fn notify_email_firing_then_resolved_reaches_the_mailbox() {
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
fn notify_email_groups_a_nodes_burst_into_one_mail() {
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
fn notify_email_over_starttls_with_auth_and_over_tls_trusting_the_ca_file() {
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
fn notify_alertmanager_holds_the_alert_while_firing_then_resolves_it() {
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

#[test]
fn notify_every_causes_link_queries_are_valid_promql() {
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
