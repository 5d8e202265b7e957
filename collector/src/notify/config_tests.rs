use std::io::Write;

use super::*;
use crate::config::{CollectorConfig, FileConfig, Overrides};

fn file(toml_text: &str) -> NotifyFileConfig {
    toml::from_str(toml_text).unwrap()
}

fn resolve(toml_text: &str) -> Result<NotifyConfig, NotifyConfigError> {
    NotifyConfig::resolve(file(toml_text), &NotifyOverrides::default())
}

fn error(toml_text: &str) -> String {
    resolve(toml_text).unwrap_err().to_string()
}

const MAIL: &str =
    "email_from = \"vigil <vigil@example.com>\"\nemail_to = [\"oncall@example.com\"]\n";

#[test]
fn nothing_configured_is_empty() {
    let c = resolve("").unwrap();
    assert!(c.is_empty());
    assert_eq!(c.queue_len, 256);
    assert_eq!(c.resend_interval, Duration::from_secs(60));
}

#[test]
fn smtp_url_forms_and_default_ports() {
    let server = |url: &str| {
        let e = resolve(&format!("smtp_url = {url:?}\n{MAIL}"))
            .unwrap()
            .email
            .unwrap();
        (e.host, e.port, e.security)
    };
    assert_eq!(
        server("smtp://mail.example.com"),
        ("mail.example.com".into(), 25, SmtpSecurity::Plain)
    );
    assert_eq!(
        server("smtp://127.0.0.1:2525"),
        ("127.0.0.1".into(), 2525, SmtpSecurity::Plain)
    );
    assert_eq!(
        server("smtp://mx?tls=starttls"),
        ("mx".into(), 587, SmtpSecurity::StartTls)
    );
    assert_eq!(server("smtps://mx"), ("mx".into(), 465, SmtpSecurity::Tls));
    assert_eq!(
        server("smtps://[::1]:1465"),
        ("::1".into(), 1465, SmtpSecurity::Tls)
    );
}

#[test]
fn bad_smtp_settings_name_their_key() {
    let cases = [
        ("smtp_url = \"http://mx\"", "`smtp_url`"),
        ("smtp_url = \"smtp://u:p@mx\"", "not the URL"),
        ("smtp_url = \"smtps://mx?tls=starttls\"", "`smtp_url`"),
        ("smtp_url = \"smtp://mx/path\"", "`smtp_url`"),
        ("smtp_url = \"smtp://mx\"\nemail_to = [\"a@example.com\"]", "`email_from`"),
        ("smtp_url = \"smtp://mx\"\nemail_from = \"a@example.com\"", "`email_to`"),
        ("email_to = \"a@example.com\"", "`smtp_url`"),
        ("smtp_url = \"smtp://mx\"\nemail_from = \"not an address\"\nemail_to = \"a@example.com\"", "`email_from`"),
        ("smtp_url = \"smtp://mx\"\nemail_from = \"a@example.com\"\nemail_to = [\"b@example.com\", \"@\"]", "`email_to`"),
    ];
    for (text, want) in cases {
        let e = error(text);
        assert!(e.contains(want), "{text:?}: {e}");
    }
}

#[test]
fn password_from_file_or_env_never_in_debug_nor_in_clear() {
    let dir = std::env::temp_dir().join(format!("vigil-notify-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("smtp-password");
    std::fs::File::create(&path)
        .unwrap()
        .write_all(b"hunter2-secret\n")
        .unwrap();
    let with = |url: &str| {
        format!(
            "smtp_url = {url:?}\nsmtp_username = \"vigil\"\nsmtp_password_file = {:?}\n{MAIL}",
            path.display().to_string()
        )
    };
    let c = resolve(&with("smtp://mx?tls=starttls")).unwrap();
    let (user, password) = c.email.as_ref().unwrap().credentials.clone().unwrap();
    assert_eq!(
        (user.as_str(), password.0.as_str()),
        ("vigil", "hunter2-secret")
    );
    assert!(
        !format!("{c:?}").contains("hunter2"),
        "Debug shows the password"
    );
    // Over plain SMTP only to a relay on this host.
    assert!(error(&with("smtp://mail.example.com")).contains("in clear"));
    assert!(resolve(&with("smtp://127.0.0.1:25")).is_ok());

    let o = NotifyOverrides {
        smtp_username: Some("env-user".into()),
        smtp_password: Some(Secret("from-env".into())),
        ..Default::default()
    };
    let c = NotifyConfig::resolve(file(&format!("smtp_url = \"smtps://mx\"\n{MAIL}")), &o).unwrap();
    assert_eq!(c.email.unwrap().credentials.unwrap().1 .0, "from-env");
    assert!(!format!("{o:?}").contains("from-env"));
    let e = error(&format!(
        "smtp_url = \"smtps://mx\"\nsmtp_username = \"u\"\n{MAIL}"
    ));
    assert!(e.contains("`smtp_password_file`"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn flags_win_over_the_file_and_lists_take_one_or_many() {
    let c = resolve("alertmanager_url = \"http://am:9093/\"\nwebhook_url = [\"http://a/hook\", \"https://b/hook\"]").unwrap();
    assert_eq!(c.alertmanagers, ["http://am:9093"]);
    assert_eq!(c.webhooks, ["http://a/hook", "https://b/hook"]);
    let o = NotifyOverrides {
        alertmanager_url: vec!["http://x:1".into(), "http://y:2".into()],
        ..Default::default()
    };
    let c = NotifyConfig::resolve(file("alertmanager_url = \"http://am:9093\""), &o).unwrap();
    assert_eq!(c.alertmanagers, ["http://x:1", "http://y:2"]);
    for (text, key) in [
        ("alertmanager_url = \"am:9093\"", "`alertmanager_url`"),
        ("webhook_url = \"ftp://x\"", "`webhook_url`"),
        ("prometheus_url = \"nope\"", "`prometheus_url`"),
        ("resend_interval_ms = 0", "`resend_interval_ms`"),
        ("queue_len = 0", "`queue_len`"),
        ("retry_attempts = 0", "`retry_attempts`"),
        ("ca_file = \"/nonexistent/ca.pem\"", "`ca_file`"),
        ("ca_file = \"/proc/self/status\"", "no PEM certificate"),
    ] {
        let e = error(text);
        assert!(e.contains(key), "{text:?}: {e}");
    }
}

#[test]
fn the_collector_file_takes_a_notify_table_and_refuses_typos() {
    let text = "[notify]\nalertmanager_url = \"http://127.0.0.1:9093\"\nprometheus_url = \"http://prom:9090\"\ngroup_wait_ms = 0\n";
    let f: FileConfig = toml::from_str(text).unwrap();
    let c = CollectorConfig::resolve(f, &Overrides::default()).unwrap();
    assert_eq!(c.notify.alertmanagers, ["http://127.0.0.1:9093"]);
    assert_eq!(
        c.notify.links.prometheus.as_deref(),
        Some("http://prom:9090")
    );
    assert_eq!(c.notify.group_wait, Duration::ZERO);
    assert!(
        toml::from_str::<FileConfig>("[notify]\nsmtp_ulr = \"smtp://x\"").is_err(),
        "typos are refused"
    );
    let f: FileConfig = toml::from_str("[notify]\nwebhook_url = \"x\"").unwrap();
    let e = CollectorConfig::resolve(f, &Overrides::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("`webhook_url`"), "{e}");
}
