//! The demo's story: the site comes up and is seen healthy, client-portal's deploy dies at
//! start (502), crm's workers loop (504), both are healed and resolve.
use std::{
    path::Path,
    time::{Duration, Instant, SystemTime},
};

use super::{
    site::{Site, CRM, CRM_READ_TIMEOUT_S, PORTAL, WWW},
    traffic::{Traffic, Visits},
    watch::Watch,
};
use crate::{
    alert_view::{self, AlertState},
    http, interrupt,
    term::{Colour, Term},
};

/// Longest wait for a diagnosis, and for the all-clear (resolve_after is 10 s).
const DIAGNOSIS_LIMIT: Duration = Duration::from_secs(60);
const MAIL_LIMIT: Duration = Duration::from_secs(30);

pub fn tell(term: &mut Term, dir: &Path) -> anyhow::Result<()> {
    let title = "vigil demo: two real incidents on a throwaway site";
    let title = term.style.paint(Colour::Bold, title);
    term.line(&title);
    let mut site = Site::start(dir, |l| println!("  {l}"))?;
    let traffic = Traffic::start(site.nginx_port, visits());
    term.line(
        "  traffic       visitors on the three sites: www and client-portal 5 requests/s, crm 2/s",
    );
    let upstreams = [site.www.port, site.portal.port, site.crm.port].map(upstream);
    let maildir = site.mail.maildir.clone();
    let mut watch = Watch::new(site.collector_port, maildir, upstreams.to_vec());
    wait_until_watched(term, site.collector_port, &upstreams)?;
    let results = [
        deploy_that_dies(term, &mut site, &traffic, &mut watch)?,
        workers_that_loop(term, &site, &traffic, &mut watch)?,
    ];
    heal(term, &mut site, &mut watch)?;
    summary(term, &traffic, &watch, &results, &upstream(site.www.port));
    drop(traffic);
    term.line("\nstopping everything the demo started…");
    drop(site);
    Ok(())
}

/// WEB-031: client-portal's v2 dies at `import flask`; expect UpstreamDown.
fn deploy_that_dies(
    term: &mut Term,
    site: &mut Site,
    traffic: &Traffic,
    watch: &mut Watch,
) -> anyhow::Result<Diagnosis> {
    heading(
        term,
        "1/2",
        &format!("{PORTAL}: a deploy that dies at start (WEB-031, 502)"),
    );
    term.line(&format!(
        "  {}  deploying v2: current → releases/v2, then SIGHUP; the app (pid {}) re-executes \
         itself into v2, whose venv has no flask",
        now(),
        site.portal.pid().unwrap_or(0)
    ));
    traffic.arm(PORTAL);
    site.portal.deploy_v2()?;
    diagnose(
        term,
        watch,
        traffic,
        PORTAL,
        site.portal.port,
        "UpstreamDown",
    )
}

/// INC-001: crm's workers loop at 100% CPU; expect UpstreamSaturated.
fn workers_that_loop(
    term: &mut Term,
    site: &Site,
    traffic: &Traffic,
    watch: &mut Watch,
) -> anyhow::Result<Diagnosis> {
    heading(
        term,
        "2/2",
        &format!("{CRM}: workers stuck in a loop (INC-001, 504)"),
    );
    term.line(&format!(
        "  {}  the bad release: SIGUSR1 to crm; each of its {} workers now loops at 100% CPU on \
         the next request it takes, never answering; nginx gives up after {CRM_READ_TIMEOUT_S} s",
        now(),
        site.crm.workers
    ));
    traffic.arm(CRM);
    site.crm.release_the_loop();
    diagnose(
        term,
        watch,
        traffic,
        CRM,
        site.crm.port,
        "UpstreamSaturated",
    )
}

/// Both fixed as an SRE would: roll client-portal back, restart crm; then every alert of
/// ours resolves.
fn heal(term: &mut Term, site: &mut Site, watch: &mut Watch) -> anyhow::Result<()> {
    heading(term, "fix", "both healed");
    site.portal.roll_back()?;
    term.line(&format!(
        "  {}  client-portal: rolled back (current → releases/v1) and started again (pid {})",
        now(),
        site.portal.pid().unwrap_or(0)
    ));
    site.crm.restart()?;
    term.line(&format!(
        "  {}  crm: restarted (the looping workers are gone, {} fresh ones serve)",
        now(),
        site.crm.workers
    ));
    let healed = [upstream(site.portal.port), upstream(site.crm.port)];
    let resolved = |w: &Watch| {
        w.quiet()
            && healed
                .iter()
                .all(|u| w.seen(u, AlertState::Resolved).is_some())
    };
    if !watch.wait(
        term,
        "waiting for the all-clear",
        DIAGNOSIS_LIMIT,
        true,
        resolved,
    )? {
        let now = listed(site.collector_port, &healed);
        anyhow::bail!("not resolved within {DIAGNOSIS_LIMIT:?}; the collector lists:\n{now}");
    }
    let mailed = |w: &Watch| healed.iter().all(|u| w.mail_seen(u, "RESOLVED").is_some());
    if !watch.wait(term, "waiting for the mail", MAIL_LIMIT, true, mailed)? {
        term.line("  no RESOLVED mail within 30 s (see logs/collector.log)");
    }
    Ok(())
}

/// One incident's diagnosis as the demo saw it.
struct Diagnosis {
    host: &'static str,
    upstream: String,
    cause: String,
    status: u16,
    /// First failing request (its send) → the alert seen here / the mail delivered.
    to_alert: f64,
    to_mail: Option<f64>,
}

fn diagnose(
    term: &mut Term,
    watch: &mut Watch,
    traffic: &Traffic,
    host: &'static str,
    port: u16,
    cause: &str,
) -> anyhow::Result<Diagnosis> {
    let up = upstream(port);
    let fired = |w: &Watch| {
        w.seen(&up, AlertState::Firing)
            .is_some_and(|(_, a)| a.key.cause == cause)
    };
    if !watch.wait(
        term,
        "waiting for the diagnosis",
        DIAGNOSIS_LIMIT,
        true,
        fired,
    )? {
        let now = listed(watch.collector_port, std::slice::from_ref(&up));
        anyhow::bail!(
            "no {cause} for {host} ({up}) within {DIAGNOSIS_LIMIT:?}; the collector lists:\n{now}"
        );
    }
    let (seen_at, alert) = watch
        .seen(&up, AlertState::Firing)
        .cloned()
        .expect("waited for it");
    let first = first_failure(traffic, host)?;
    let since = |t: SystemTime| t.duration_since(first).map_or(0.0, |d| d.as_secs_f64());
    let sent = if alert.status == 504 {
        format!(
            "sent {}, answered 504 by nginx {CRM_READ_TIMEOUT_S} s later",
            clock_ms(first)
        )
    } else {
        format!("sent {}", clock_ms(first))
    };
    let to_alert = since(seen_at);
    term.line(&format!(
        "  on the terminal {to_alert:.1} s after the first failing request ({sent})"
    ));
    let mailed = |w: &Watch| w.mail_seen(&up, "FIRING").is_some();
    let to_mail = if watch.wait(term, "waiting for the mail", MAIL_LIMIT, true, mailed)? {
        let t = since(watch.mail_seen(&up, "FIRING").expect("waited for it").0);
        term.line(&format!("  in the mailbox {t:.1} s after it"));
        Some(t)
    } else {
        term.line("  no mail within 30 s (see logs/collector.log)");
        None
    };
    Ok(Diagnosis {
        host,
        upstream: up,
        cause: alert.key.cause,
        status: alert.status,
        to_alert,
        to_mail,
    })
}

/// The send time of `host`'s first failing request since it was armed (the failure that
/// decided the alert may be recorded here a moment after the alert is seen).
fn first_failure(traffic: &Traffic, host: &str) -> anyhow::Result<SystemTime> {
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(t) = traffic.host(host).first_failure {
            return Ok(t);
        }
        anyhow::ensure!(
            Instant::now() < end,
            "no failing request to {host} recorded"
        );
        interrupt::sleep(Duration::from_millis(50))?;
    }
}

/// What the collector lists for `upstreams`, rendered, for a failure message.
pub(crate) fn listed(collector_port: u16, upstreams: &[String]) -> String {
    match alert_view::fetch(collector_port) {
        Ok(alerts) => {
            let style = crate::term::Style::plain(100);
            let ours: Vec<String> = alerts
                .iter()
                .filter(|a| upstreams.contains(&a.key.upstream))
                .map(|a| format!("[{:?}] {}", a.state, alert_view::render(a, &style)))
                .collect();
            if ours.is_empty() {
                "no alert for these upstreams".into()
            } else {
                ours.join("\n")
            }
        }
        Err(e) => e.to_string(),
    }
}

/// Waits until the collector's metrics say the agent sees every upstream listening.
pub(crate) fn wait_until_watched(
    term: &mut Term,
    collector_port: u16,
    upstreams: &[String],
) -> anyhow::Result<()> {
    let start = Instant::now();
    let limit = Duration::from_secs(60);
    loop {
        interrupt::check()?;
        let metrics = http::get(
            collector_port,
            "/metrics",
            "127.0.0.1",
            Duration::from_secs(5),
        )?;
        if upstreams.iter().all(|u| listening(&metrics.body, u)) {
            term.clear_progress();
            term.line("  the agent sees all three upstreams listening (vigil_upstream_listening 1): all is well");
            return Ok(());
        }
        anyhow::ensure!(
            start.elapsed() < limit,
            "after {limit:?} the collector still has no vigil_upstream_listening 1 for each of {upstreams:?} (see logs/agent.log)"
        );
        term.progress(
            "waiting for the agent to see the site",
            start.elapsed().as_secs_f64(),
            "",
        );
        interrupt::sleep(Duration::from_millis(200))?;
    }
}

/// `vigil_upstream_listening{…upstream="127.0.0.1:P"…} 1` is in the exposition.
fn listening(metrics: &str, upstream: &str) -> bool {
    let label = format!("upstream=\"{upstream}\"");
    metrics.lines().any(|l| {
        l.starts_with("vigil_upstream_listening{") && l.contains(&label) && l.ends_with(" 1")
    })
}

fn summary(term: &mut Term, traffic: &Traffic, watch: &Watch, results: &[Diagnosis], www: &str) {
    let title = "\nsummary (time from the first failing request's send)";
    let title = term.style.paint(Colour::Bold, title);
    term.line(&title);
    for d in results {
        let mail = d
            .to_mail
            .map_or("no mail".to_owned(), |t| format!("mail {t:.1} s"));
        let cause = format!("{} ({})", d.cause, d.status);
        term.line(&format!(
            "  {:<27} {cause:<25} alert {:.1} s, {mail}",
            d.host, d.to_alert
        ));
    }
    let www_fired = watch.alerts.iter().any(|(_, a)| a.key.upstream == www);
    term.line(&format!(
        "  {WWW:<27} {}",
        if www_fired {
            "alerted (see above)"
        } else {
            "no alert"
        }
    ));
    // Whatever else fired on the demo's upstreams is shown as it is, not hidden.
    let expected = |a: &alert_view::Alert| {
        results
            .iter()
            .any(|d| d.upstream == a.key.upstream && d.cause == a.key.cause)
    };
    for (_, a) in watch
        .alerts
        .iter()
        .filter(|(_, a)| a.state == AlertState::Firing)
    {
        if !expected(a) && a.key.upstream != www {
            let at = alert_view::clock(a.fired_at_ms.unwrap_or(a.last_seen_ms));
            let site = a.server_names.join(", ");
            term.line(&format!(
                "  also fired: {} ({}) on {site} at {at}",
                a.key.cause, a.status
            ));
        }
    }
    let answers: Vec<String> = [WWW, PORTAL, CRM]
        .iter()
        .map(|h| {
            let counts: Vec<String> = traffic
                .host(h)
                .answers
                .iter()
                .map(|(s, n)| format!("{s} × {n}"))
                .collect();
            format!("{h}: {}", counts.join(", "))
        })
        .collect();
    term.line(&format!("  visitors got: {}", answers.join("; ")));
}

fn visits() -> Vec<Visits> {
    let every = |ms| Duration::from_millis(ms);
    vec![
        Visits {
            host: WWW,
            every: every(200),
            open_loop: false,
        },
        Visits {
            host: PORTAL,
            every: every(200),
            open_loop: false,
        },
        Visits {
            host: CRM,
            every: every(500),
            open_loop: true,
        },
    ]
}

fn upstream(port: u16) -> String {
    format!("127.0.0.1:{port}")
}

/// `10:14:03` UTC now.
fn now() -> String {
    clock_ms(SystemTime::now())
}

fn unix_ms(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn clock_ms(t: SystemTime) -> String {
    let ms = unix_ms(t);
    format!("{}.{:03}", alert_view::clock(ms), ms.rem_euclid(1000))
}

fn heading(term: &mut Term, tag: &str, text: &str) {
    let line = format!("\n{tag}  {text}");
    let painted = term.style.paint(Colour::Bold, &line);
    term.line(&painted);
}
