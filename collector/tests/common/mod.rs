//! What the notifier tests share: an alert as the engine would raise it, and a config with
//! a short grouping window and a Prometheus link.
#![allow(dead_code)] // each test binary uses its part

use std::{
    collections::BTreeMap,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use vigil_collector::{
    alerts::model::{Alert, AlertKey, AlertState, Cause, Evidence},
    notify::{
        config::{EmailConfig, Links, SmtpSecurity},
        NotifyConfig,
    },
};

pub const WAIT: Duration = Duration::from_secs(30);

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

pub fn alert(node: &str, upstream: &str, cause: Cause) -> Alert {
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

pub fn resolved(mut a: Alert) -> Alert {
    a.state = AlertState::Resolved;
    a.resolved_at_ms = Some(now_ms());
    a
}

pub fn email_config(port: u16, security: SmtpSecurity) -> EmailConfig {
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

pub fn config() -> NotifyConfig {
    NotifyConfig {
        group_wait: Duration::from_millis(300),
        links: Links {
            prometheus: Some("http://prometheus.example.com:9090".into()),
            ..Links::default()
        },
        ..NotifyConfig::default()
    }
}
