//! Receivers that fail: notifications are retried with backoff and counted in
//! `vigil_notifications_total`, a full queue drops its oldest transition (counted), and
//! `Notifiers::transition` returns while the workers wait. One test: the counters are global.
mod common;

use std::{net::TcpListener, time::Duration};

use common::email_config;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use vigil_collector::{
    alerts::model::{Alert, Cause},
    notify::{
        config::{RetryPolicy, Secret, SmtpSecurity},
        Notifiers, NotifyConfig,
    },
};
use vigil_e2e::{
    free_port,
    http::metric_value,
    scratch_dir,
    smtp::{SmtpMode, SmtpServer, TestCerts},
    wait_for,
};

fn alert(upstream: &str) -> Alert {
    common::alert("node-1", upstream, Cause::UpstreamDown)
}

fn email(port: u16) -> vigil_collector::notify::config::EmailConfig {
    email_config(port, SmtpSecurity::Plain)
}

fn count(handle: &PrometheusHandle, name: &str, labels: &[(&str, &str)]) -> f64 {
    metric_value(&handle.render(), name, labels).unwrap_or(0.0)
}

fn notifications(handle: &PrometheusHandle, notifier: &str, result: &str) -> f64 {
    count(
        handle,
        "vigil_notifications_total",
        &[("notifier", notifier), ("result", result)],
    )
}

#[test]
fn notify_failing_receivers_are_retried_counted_and_never_block_transition() {
    let handle = PrometheusBuilder::new().install_recorder().unwrap();
    // An SMTP server that accepts connections and never greets (the kernel completes the
    // handshake; nobody accepts): each attempt waits out the timeout. Nothing listens on
    // the Alertmanager port: refused at once.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let config = NotifyConfig {
        email: Some(email(silent.local_addr().unwrap().port())),
        alertmanagers: vec![format!("http://127.0.0.1:{}", free_port())],
        queue_len: 4,
        group_wait: Duration::ZERO,
        retry: RetryPolicy {
            attempts: 2,
            first_wait: Duration::from_millis(50),
            max_wait: Duration::from_millis(200),
        },
        timeout: Duration::from_secs(2),
        ..NotifyConfig::default()
    };
    let notifiers = Notifiers::start(&config).unwrap();
    // Far more transitions than a queue holds while its worker waits on the silent server:
    // each call returns (a blocking one would hang here) and the overflow is counted.
    for i in 0..50 {
        notifiers.transition(&alert(&format!("127.0.0.1:{}", 10_000 + i)));
    }
    let settled = wait_for(Duration::from_secs(60), || {
        notifications(&handle, "email", "failed") >= 1.0
            && notifications(&handle, "alertmanager", "failed") >= 1.0
    });
    assert!(settled, "{}", handle.render());
    for notifier in ["email", "alertmanager"] {
        assert!(
            notifications(&handle, notifier, "retried") >= 1.0,
            "{notifier}: {}",
            handle.render()
        );
        assert_eq!(
            notifications(&handle, notifier, "sent"),
            0.0,
            "{notifier}: {}",
            handle.render()
        );
    }
    let dropped = count(
        &handle,
        "vigil_notifications_dropped_total",
        &[("notifier", "email")],
    );
    assert!(dropped >= 1.0, "{}", handle.render());
    drop(notifiers);
    drop(silent);

    // A server that refuses the password: failed at once, no retry, no mail.
    let certs = TestCerts::generate(&scratch_dir("notify-failure-certs"));
    let smtp = SmtpServer::start(SmtpMode::StartTlsAuth {
        certs: &certs,
        user: "vigil",
        password: "right",
    });
    let mut wrong = email(smtp.port);
    wrong.security = SmtpSecurity::StartTls;
    wrong.credentials = Some(("vigil".into(), Secret("wrong".into())));
    let (retried, failed) = (
        notifications(&handle, "email", "retried"),
        notifications(&handle, "email", "failed"),
    );
    let notifiers = Notifiers::start(&NotifyConfig {
        email: Some(wrong),
        ca_pem: Some(std::fs::read(&certs.ca).unwrap()),
        group_wait: Duration::ZERO,
        ..NotifyConfig::default()
    })
    .unwrap();
    notifiers.transition(&alert("127.0.0.1:8084"));
    assert!(
        wait_for(Duration::from_secs(30), || notifications(
            &handle, "email", "failed"
        ) > failed),
        "{}",
        handle.render()
    );
    assert_eq!(
        notifications(&handle, "email", "retried"),
        retried,
        "a refused password is not retried"
    );
    assert!(smtp.mails().is_empty());
}
