//! `cargo xtask bench alerts`: how long from the first failing request to the alert, on the
//! terminal (seen in `GET /api/v1/alerts`, polled every 100 ms) and in the mailbox (the
//! Maildir, read every 250 ms), for the demo's two incidents on the demo's site: the 502
//! (client-portal's deploy dies at `import flask`) and the 504 (crm's workers loop at 100%
//! CPU). Measured from the send time of the first request that failed, as the visitors saw
//! it; for the 504 that request's answer comes `proxy_read_timeout` (3 s) later. Each run
//! heals the upstream and waits for the all-clear, so the next run is a new incident.
use std::time::{Duration, SystemTime};

use super::stats::{median, verdict};
use crate::{
    cmd::{build, require_root, workspace_root},
    demo::{
        site::{Site, CRM, CRM_READ_TIMEOUT_S, PORTAL, WWW},
        story::{listed, wait_until_watched},
        traffic::{Traffic, Visits},
        watch::Watch,
    },
    interrupt, setup,
    tasks::Exit,
    term::Term,
};

const RUNS: usize = 5;
const LIMIT: Duration = Duration::from_secs(60);

/// One incident kind: where it happens, what should fire, and the target.
struct Case {
    host: &'static str,
    cause: &'static str,
    target_s: f64,
    target: String,
}

/// Seconds from the first failing request to the alert (terminal) and to the mail.
#[derive(Default)]
struct Times {
    terminal: Vec<f64>,
    mailbox: Vec<f64>,
    /// Other causes that fired on the upstream during a run, its fix included.
    others: Vec<String>,
}

pub fn run() -> anyhow::Result<()> {
    require_root()?;
    setup::run()?;
    build(false)?;
    interrupt::install()?;
    match measure_all() {
        Err(_) if interrupt::requested() => {
            let message = "interrupted: every process the benchmark started is stopped".into();
            Err(Exit { code: 130, message }.into())
        }
        other => other,
    }
}

fn measure_all() -> anyhow::Result<()> {
    let mut term = Term::stdout();
    let dir = workspace_root().join("target/vigil-bench-alerts");
    println!("bench alerts: the demo's site under {}", dir.display());
    let mut site = Site::start(&dir, |l| println!("  {l}"))?;
    let visits = vec![
        Visits {
            host: WWW,
            every: Duration::from_millis(200),
            open_loop: false,
        },
        Visits {
            host: PORTAL,
            every: Duration::from_millis(200),
            open_loop: false,
        },
        Visits {
            host: CRM,
            every: Duration::from_millis(500),
            open_loop: true,
        },
    ];
    let traffic = Traffic::start(site.nginx_port, visits);
    let ours = [site.www.port, site.portal.port, site.crm.port].map(|p| format!("127.0.0.1:{p}"));
    let mut watch = Watch::new(
        site.collector_port,
        site.mail.maildir.clone(),
        ours.to_vec(),
    );
    wait_until_watched(&mut term, site.collector_port, &ours)?;
    let cases = [
        Case {
            host: PORTAL,
            cause: "UpstreamDown",
            target_s: 3.0,
            target: "≤ 3 s".into(),
        },
        Case {
            host: CRM,
            cause: "UpstreamSaturated",
            target_s: CRM_READ_TIMEOUT_S as f64 + 3.0,
            target: format!("≤ proxy_read_timeout {CRM_READ_TIMEOUT_S} s + 3 s"),
        },
    ];
    let mut times: [Times; 2] = Default::default();
    for round in 1..=RUNS {
        for (case, t) in cases.iter().zip(times.iter_mut()) {
            watch.clear_seen();
            traffic.arm(case.host);
            let upstream = if case.host == PORTAL {
                site.portal.deploy_v2()?;
                format!("127.0.0.1:{}", site.portal.port)
            } else {
                site.crm.release_the_loop();
                format!("127.0.0.1:{}", site.crm.port)
            };
            measure(&mut term, &mut watch, &traffic, case, &upstream, round, t)?;
            if case.host == PORTAL {
                site.portal.roll_back()?;
            } else {
                site.crm.restart()?;
            }
            // The next run must be a new incident: every alert of ours resolved first.
            if !watch.wait(
                &mut term,
                "waiting for the all-clear",
                LIMIT,
                false,
                Watch::quiet,
            )? {
                anyhow::bail!(
                    "not resolved within {LIMIT:?}:\n{}",
                    listed(site.collector_port, &ours)
                );
            }
            let others = other_causes(&watch, &upstream, case.cause);
            if !others.is_empty() {
                let shown = others.join(", ");
                term.line(&format!(
                    "  also fired on {upstream} during this run: {shown}"
                ));
            }
            t.others.extend(others);
        }
    }
    drop(traffic);
    drop(site);
    report(&cases, &mut times);
    Ok(())
}

fn measure(
    term: &mut Term,
    watch: &mut Watch,
    traffic: &Traffic,
    case: &Case,
    upstream: &str,
    round: usize,
    times: &mut Times,
) -> anyhow::Result<()> {
    use crate::alert_view::AlertState::Firing;
    let fired = |w: &Watch| {
        w.alerts.iter().any(|(_, a)| {
            a.key.upstream == upstream && a.state == Firing && a.key.cause == case.cause
        })
    };
    if !watch.wait(term, "waiting for the diagnosis", LIMIT, false, fired)? {
        anyhow::bail!(
            "run {round}: no {} on {upstream} within {LIMIT:?}:\n{}",
            case.cause,
            listed(watch.collector_port, &[upstream.to_owned()])
        );
    }
    let mailed = |w: &Watch| w.mail_seen(upstream, "FIRING").is_some();
    let has_mail = watch.wait(term, "waiting for the mail", LIMIT, false, mailed)?;
    let first = first_failure(traffic, case.host)?;
    let since = |t: SystemTime| t.duration_since(first).map_or(0.0, |d| d.as_secs_f64());
    let seen = watch
        .alerts
        .iter()
        .find(|(_, a)| a.key.upstream == upstream && a.state == Firing && a.key.cause == case.cause)
        .map(|(t, _)| since(*t))
        .expect("waited for it");
    times.terminal.push(seen);
    let mail = watch.mail_seen(upstream, "FIRING").map(|(t, _)| since(*t));
    if let Some(m) = mail {
        times.mailbox.push(m);
    }
    term.line(&format!(
        "{} run {round}/{RUNS}: terminal {seen:.2} s, mailbox {}",
        case.cause,
        mail.map_or("none".into(), |m| format!("{m:.2} s")),
    ));
    anyhow::ensure!(has_mail, "run {round}: no FIRING mail for {upstream}");
    Ok(())
}

/// Causes other than `cause` that fired on `upstream` since the run began (the fix
/// included): a wrong or extra diagnosis.
fn other_causes(watch: &Watch, upstream: &str, cause: &str) -> Vec<String> {
    use crate::alert_view::AlertState::Firing;
    watch
        .alerts
        .iter()
        .filter(|(_, a)| a.key.upstream == upstream && a.state == Firing && a.key.cause != cause)
        .map(|(_, a)| a.key.cause.clone())
        .collect()
}

fn first_failure(traffic: &Traffic, host: &str) -> anyhow::Result<SystemTime> {
    for _ in 0..200 {
        if let Some(t) = traffic.host(host).first_failure {
            return Ok(t);
        }
        interrupt::sleep(Duration::from_millis(50))?;
    }
    anyhow::bail!("no failing request to {host} recorded")
}

fn report(cases: &[Case], times: &mut [Times; 2]) {
    println!("\ntime from the first failing request's send to the alert ({RUNS} runs each; s):");
    for (case, t) in cases.iter().zip(times.iter_mut()) {
        for (place, samples) in [("terminal", &mut t.terminal), ("mailbox", &mut t.mailbox)] {
            if samples.is_empty() {
                println!("  {:<18} {place:<8}  no sample", case.cause);
                continue;
            }
            let max = samples.iter().copied().fold(f64::MIN, f64::max);
            let min = samples.iter().copied().fold(f64::MAX, f64::min);
            let med = median(samples);
            println!(
                "  {:<18} {place:<8}  min {min:.2}  median {med:.2}  max {max:.2}   target {} (every run): {}",
                case.cause,
                case.target,
                verdict(max <= case.target_s)
            );
        }
        if !t.others.is_empty() {
            let mut counts = std::collections::BTreeMap::<&str, usize>::new();
            for cause in &t.others {
                *counts.entry(cause).or_default() += 1;
            }
            let shown: Vec<String> = counts
                .iter()
                .map(|(c, n)| format!("{c} in {n} of {RUNS} runs"))
                .collect();
            println!(
                "  {:<18} also fired on the same upstream (the fix included): {}",
                "",
                shown.join(", ")
            );
        }
    }
    println!(
        "  (the mail waits for the notifiers' group_wait, 300 ms by default, to group transitions)"
    );
}
