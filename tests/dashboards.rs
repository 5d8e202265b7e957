//! The Grafana dashboards and Prometheus rules under dashboards/: Grafana's model, LogQL
//! through Grafana's own grammar, promtool's checks and unit tests, and every query run
//! against a real Prometheus and the Loki stand-in fed by real nginx traffic through the
//! agent and collector, where each must return data. Every test name starts with
//! `dashboards` so that `cargo xtask test dashboards` runs them all.
use std::{collections::BTreeSet, time::Duration};

use serde_json::{json, Value};
use vigil_e2e::{http, loki::LokiServer, wait_for};

#[path = "dashboards/grafana.rs"]
mod grafana;
#[path = "dashboards/logql.rs"]
mod logql;
#[path = "dashboards/rules.rs"]
mod rules;
#[path = "dashboards/scenario.rs"]
mod scenario;

use rules::{loaded_rules, query, upstreams_of};
use scenario::{Scenario, Upstreams};

#[test]
fn dashboards_follow_grafanas_model() {
    let mut problems = Vec::new();
    let mut uids = BTreeSet::new();
    for (file, d) in grafana::dashboards() {
        problems.extend(grafana::problems(&file, &d));
        if !uids.insert(d["uid"].to_string()) {
            problems.push(format!(
                "{file}: uid {} used by another dashboard",
                d["uid"]
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    let provisioning = grafana::dir().join("grafana/provisioning");
    let providers = std::fs::read_to_string(provisioning.join("dashboards/vigil.yaml")).unwrap();
    assert!(providers.contains("apiVersion: 1") && providers.contains("type: file"));
    let sources = std::fs::read_to_string(provisioning.join("datasources/vigil.yaml")).unwrap();
    assert!(sources.contains("type: prometheus") && sources.contains("type: loki"));
}

#[test]
fn dashboards_model_check_catches_what_grafana_rejects() {
    let (file, mut d) = grafana::dashboards().remove(0);
    assert!(grafana::problems(&file, &d).is_empty());
    let panels = d["panels"].as_array_mut().unwrap();
    panels[1]["datasource"] = json!({"type": "prometheus", "uid": "P1809F7CD0C75ACF3"});
    panels[2]["type"] = json!("graphh");
    panels[2]["gridPos"] = panels[1]["gridPos"].clone();
    panels[3]["id"] = panels[1]["id"].clone();
    panels[3]["targets"][0]["expr"] = json!("rate(x{node=~\"$nodes\"}[5m])");
    d["schemaVersion"] = json!(16);
    let found = grafana::problems(&file, &d).join("\n");
    for what in [
        "fixed datasource",
        "unknown type \"graphh\"",
        "overlap",
        "not unique",
        "undefined $nodes",
        "schemaVersion",
    ] {
        assert!(found.contains(what), "{what} not reported in:\n{found}");
    }
}

#[test]
fn dashboards_and_readme_logql_parse_with_grafanas_grammar() {
    let mut queries: Vec<String> = grafana::dashboards()
        .iter()
        .flat_map(|(file, d)| grafana::targets(file, d))
        .filter(|t| t.kind == "loki")
        .map(|t| substitute(&t.expr, "test-node"))
        .collect();
    assert!(
        queries.len() >= 3,
        "the Incidents dashboard's Loki panels: {queries:?}"
    );
    queries.extend(logql::readme_queries());
    // Not LogQL: the grammar must tell, or it tells nothing about the others.
    queries.push(r#"{job="vigil" |= "x""#.to_owned());
    let parsed = logql::parse(&queries);
    let (broken, rest) = parsed.split_last().unwrap();
    assert!(!broken.errors.is_empty(), "an unclosed selector parsed");
    let errors: Vec<String> = queries
        .iter()
        .zip(rest)
        .filter(|(_, p)| !p.errors.is_empty() || p.kind == "none")
        .map(|(q, p)| format!("{q}: {} {:?}", p.kind, p.errors))
        .collect();
    assert!(
        errors.is_empty(),
        "Grafana's LogQL grammar rejects:\n{}",
        errors.join("\n")
    );
}

#[test]
fn dashboards_rules_pass_promtool_and_every_cause_fires_and_stays_silent() {
    assert!(rules::promtool(&["check", "rules", "vigil-rules.yml"]).contains("SUCCESS"));
    let files = rules::unit_test_files();
    assert!(
        !files.is_empty(),
        "no promtool unit tests in dashboards/prometheus/tests"
    );
    let mut args = vec!["test", "rules"];
    args.extend(files.iter().map(String::as_str));
    rules::promtool(&args);
    let causes = rules::collector_causes();
    assert_eq!(causes.len(), 7, "the collector's causes: {causes:?}");
    assert_eq!(
        rules::alert_names(),
        causes,
        "one alert rule per collector cause"
    );
    let coverage = rules::unit_test_coverage();
    for cause in &causes {
        assert_eq!(
            coverage.get(cause),
            Some(&(true, true)),
            "{cause}: unit tests must see it fire and stay silent (firing, silent)"
        );
    }
}

/// Grafana's substitution for one node and the All value of `upstream`, on a Prometheus that
/// scrapes every second.
fn substitute(expr: &str, node: &str) -> String {
    expr.replace("$__rate_interval", "1m")
        .replace("${node}", node)
        .replace("$node", node)
        .replace("${upstream}", ".*")
        .replace("$upstream", ".*")
}

/// Which alert must hold which upstreams in this scenario, and which others it may also hold.
fn expected_alerts(u: &Upstreams) -> Vec<(&'static str, &str, Vec<&str>)> {
    vec![
        ("UpstreamDown", u.refused.as_str(), vec![]),
        ("UpstreamSaturated", u.saturated.as_str(), vec![]),
        ("UpstreamBacklogFull", u.backlog_full.as_str(), vec![]),
        ("UpstreamUnreachable", u.unreachable.as_str(), vec![]),
        ("UpstreamReset", u.reset.as_str(), vec![]),
        ("NoLiveUpstreams", u.group.as_str(), vec![]),
        // The full queue's first two connections got in and timed out reading, like the
        // collector's own UpstreamSlow for it at the start.
        (
            "UpstreamSlow",
            u.slow.as_str(),
            vec![u.backlog_full.as_str()],
        ),
    ]
}

/// Each alert rule's upstreams, and what is wrong with them (empty once right).
fn alert_mismatches(s: &Scenario, alerts: &[(String, String)]) -> Vec<String> {
    let mut wrong = Vec::new();
    for (name, want, may) in expected_alerts(&s.upstreams) {
        let rule = alerts
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, q)| q.as_str());
        let got = rule
            .map(|q| upstreams_of(&s.prometheus, q))
            .unwrap_or_default();
        let extra: Vec<&String> = got
            .iter()
            .filter(|g| *g != want && !may.contains(&g.as_str()))
            .collect();
        if !got.contains(want) || !extra.is_empty() {
            wrong.push(format!(
                "{name}: want {want} (may also hold {may:?}), got {got:?}"
            ));
        }
        let firing =
            format!("vigil_alerts_firing{{alertname=\"{name}\", upstream=\"{want}\"}} == 1");
        if query(&s.prometheus, &firing).is_ok_and(|r| r.is_empty()) {
            wrong.push(format!(
                "{name}: the collector's alert for {want} is not firing"
            ));
        }
    }
    if !wrong.is_empty() {
        wrong.push(contention(s));
    }
    wrong
}

/// What the spinning workers get: on a node loaded by other work (another build on these
/// two cores) they get less than half a core each, and neither the rule nor the collector
/// can call them CPU-bound; said with the failure so it explains itself.
fn contention(s: &Scenario) -> String {
    let cpu = format!(
        "vigil:upstream_busy_process_cpu:avg1m{{upstream=\"{}\"}}",
        s.upstreams.saturated
    );
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    format!(
        "(spinning workers' mean CPU: {:?} cores each; load average {})",
        query(&s.prometheus, &cpu).map(|r| r.first().map(|(_, v)| *v)),
        load.trim()
    )
}

/// Panels that may be empty in this scenario, and why.
fn expected_empty(s: &Scenario) -> Vec<(&'static str, &'static str)> {
    // The notifiers are configured (Alertmanager) but the collector does not start them yet:
    // once alerts reach Alertmanager, the panel must have data like every other.
    let notified = !s.alertmanager.wait(|alerts| !alerts.is_empty()).is_empty();
    if notified {
        vec![]
    } else {
        vec![(
            "Notifications",
            "no notification reached Alertmanager: the collector runs no notifier",
        )]
    }
}

/// Whether a Prometheus answer has at least one number (not NaN).
fn has_data(prom: &vigil_e2e::prometheus::Prometheus, promql: &str) -> Result<(), String> {
    let samples = query(prom, promql)?;
    if samples.iter().any(|(_, v)| v.is_finite()) {
        Ok(())
    } else {
        Err(format!(
            "no data ({} samples, none a number)",
            samples.len()
        ))
    }
}

/// `query_range` on the Loki stand-in: the number of entries, or its error.
fn loki_entries(loki: &LokiServer, logql: &str) -> Result<usize, String> {
    let path = format!(
        "/loki/api/v1/query_range?query={}&limit=1000",
        http::encode(logql)
    );
    let r = http::get(loki.port, &path).map_err(|e| e.to_string())?;
    if r.status != 200 {
        return Err(format!("{}: {}", r.status, r.body));
    }
    let v: Value = serde_json::from_str(&r.body).map_err(|e| e.to_string())?;
    Ok(v["data"]["result"].as_array().map_or(0, Vec::len))
}

/// The values of a `label_values(selector, label)` variable.
fn variable_values(
    prom: &vigil_e2e::prometheus::Prometheus,
    definition: &str,
    node: &str,
) -> BTreeSet<String> {
    let inner = definition
        .strip_prefix("label_values(")
        .and_then(|d| d.strip_suffix(')'))
        .unwrap_or_else(|| panic!("not label_values(...): {definition}"));
    let (selector, label) = inner.rsplit_once(',').unwrap();
    let label = label.trim();
    let promql = format!("count by ({label}) ({})", substitute(selector, node));
    query(prom, &promql)
        .unwrap_or_else(|e| panic!("{definition}: {e}"))
        .into_iter()
        .filter_map(|(labels, _)| labels.get(label).cloned())
        .collect()
}

#[test]
fn dashboards_and_rules_queries_return_data_from_real_traffic() {
    let s = Scenario::start(&[rules::rules_file()]);
    let prom = &s.prometheus;
    let loaded = loaded_rules(prom);
    let broken: Vec<String> = loaded
        .iter()
        .filter(|r| r.health == "err")
        .map(|r| format!("{}: {}", r.name, r.last_error))
        .collect();
    assert!(
        broken.is_empty(),
        "rules Prometheus cannot evaluate: {broken:?}"
    );
    let alerts: Vec<(String, String)> = loaded
        .iter()
        .filter(|r| r.kind == "alerting")
        .map(|r| (r.name.clone(), r.query.clone()))
        .collect();
    assert_eq!(alerts.len(), 7, "every alert rule loaded");

    // Each cause shows in its rule's expression, on its upstream only, and the collector
    // fires the same cause: the rules approximate it on this traffic.
    let mut wrong = Vec::new();
    let started = std::time::Instant::now();
    wait_for(Duration::from_secs(150), || {
        wrong = alert_mismatches(&s, &alerts);
        wrong.is_empty()
    });
    assert!(
        wrong.is_empty(),
        "alerts after 150 s of traffic:\n{}",
        wrong.join("\n")
    );
    eprintln!("every cause on its upstream after {:?}", started.elapsed());
    // Prometheus's own evaluation (every second here) holds them too: pending for `for`.
    let mut states = Vec::new();
    let active = wait_for(Duration::from_secs(20), || {
        states = loaded_rules(prom)
            .into_iter()
            .filter(|r| r.kind == "alerting")
            .map(|r| (r.name, r.state))
            .collect();
        states
            .iter()
            .all(|(_, state)| state == "pending" || state == "firing")
    });
    assert!(active, "Prometheus's own evaluation: {states:?}");

    let mut failures = Vec::new();
    for r in loaded.iter().filter(|r| r.kind == "recording") {
        if let Err(e) = has_data(prom, &r.name) {
            failures.push(format!("recording rule {}: {e}", r.name));
        }
    }
    let exempt = expected_empty(&s);
    let node = "test-node";
    for (file, d) in grafana::dashboards() {
        for (name, _, v) in grafana::variables(&d)
            .into_iter()
            .filter(|(_, t, _)| *t == "query")
        {
            let values = variable_values(prom, v["definition"].as_str().unwrap(), node);
            let want: Vec<&str> = match name {
                "node" => vec![node],
                "upstream" => vec![
                    &s.upstreams.healthy,
                    &s.upstreams.refused,
                    &s.upstreams.saturated,
                ],
                other => panic!("{file}: no expectation for variable {other}"),
            };
            if !want.iter().all(|w| values.contains(*w)) {
                failures.push(format!(
                    "{file}: variable {name} offers {values:?}, want {want:?} among them"
                ));
            }
        }
        for t in grafana::targets(&file, &d) {
            let expr = substitute(&t.expr, node);
            if let Some((_, why)) = exempt.iter().find(|(panel, _)| *panel == t.panel) {
                eprintln!(
                    "{} / {}: expected empty here ({why}); now: {:?}",
                    t.dashboard,
                    t.panel,
                    has_data(prom, &expr)
                );
                continue;
            }
            let result = match t.kind.as_str() {
                "prometheus" => has_data(prom, &expr),
                "loki" => loki_entries(&s.loki, &expr).and_then(|n| {
                    if n > 0 {
                        Ok(())
                    } else {
                        Err("no entries".into())
                    }
                }),
                other => Err(format!("unknown datasource type {other}")),
            };
            if let Err(e) = result {
                failures.push(format!("{} / {}: {expr}: {e}", t.dashboard, t.panel));
            }
        }
    }
    let readme = logql::readme_queries();
    for (q, parsed) in readme.iter().zip(logql::parse(&readme)) {
        if parsed.kind == "MetricExpr" {
            // Reported, not run: the stand-in evaluates log queries only.
            eprintln!("README metric query checked by the grammar only: {q}");
            continue;
        }
        match loki_entries(&s.loki, q) {
            Ok(n) if n > 0 => {}
            Ok(_) => failures.push(format!("README {q}: no entries")),
            Err(e) => failures.push(format!("README {q}: {e}")),
        }
    }
    assert!(
        failures.is_empty(),
        "queries without data:\n{}",
        failures.join("\n")
    );
}
