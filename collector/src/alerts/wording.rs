//! How alerts say things: times, processes, exits, crash reasons, and the commands an SRE
//! runs next for a process under systemd or in a Kubernetes pod.
use vigil_wire::{ProcessExit, ProcessIdentity};

use super::model::Evidence;

pub fn evidence(kind: &str, text: impl Into<String>) -> Evidence {
    Evidence {
        kind: kind.to_owned(),
        text: text.into(),
    }
}

/// `10:13:58` (UTC) of a Unix-ms time.
pub fn clock(unix_ms: i64) -> String {
    let secs = unix_ms.div_euclid(1000).rem_euclid(86_400);
    format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60)
}

/// `2026-11-25T10:13:58Z` of a Unix-ms time (civil from days, Howard Hinnant's algorithm).
pub fn rfc3339(unix_ms: i64) -> String {
    let days = unix_ms.div_euclid(86_400_000);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{}Z", clock(unix_ms))
}

/// Seconds with at most one decimal: `1.5s`, `60s`.
pub fn seconds(ms: u64) -> String {
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{:.1}s", ms as f64 / 1000.0)
    }
}

/// `python3 app.py (pid 4242, unit drupal-client4.service)`.
pub fn process(p: &ProcessIdentity) -> String {
    let name = if p.cmdline.is_empty() {
        &p.comm
    } else {
        &p.cmdline
    };
    let mut place = vec![format!("pid {}", p.pid)];
    if !p.unit.is_empty() {
        place.push(format!("unit {}", p.unit));
    }
    if !p.pod_uid.is_empty() {
        place.push(format!("pod {}", p.pod_uid));
    }
    format!("{} ({})", super::evidence::cut(name, 160), place.join(", "))
}

/// `exited with status 1` / `was killed by signal 9 (SIGKILL)`.
pub fn exit(e: &ProcessExit) -> String {
    match (e.status, e.signal) {
        (_, Some(sig)) => format!("was killed by signal {sig}{}", signal_name(sig)),
        (Some(status), None) => format!("exited with status {status}"),
        (None, None) => "exited".to_owned(),
    }
}

fn signal_name(sig: i32) -> &'static str {
    match sig {
        1 => " (SIGHUP)",
        2 => " (SIGINT)",
        6 => " (SIGABRT)",
        9 => " (SIGKILL)",
        11 => " (SIGSEGV)",
        15 => " (SIGTERM)",
        _ => "",
    }
}

/// The line of its stderr that says why it died: the last non-blank one (a Python
/// traceback ends with the exception, Go's panic and most loggers put the cause last).
pub fn crash_reason(e: &ProcessExit) -> Option<String> {
    e.stderr_tail
        .iter()
        .rev()
        .map(|l| l.trim())
        .find(|l| !l.is_empty())
        .map(|l| super::evidence::cut(l, 300))
}

/// `pod:NAMESPACE/POD/CONTAINER` → its three parts.
fn pod_source(source: &str) -> Option<(&str, &str, &str)> {
    let mut parts = source.strip_prefix("pod:")?.splitn(3, '/');
    Some((parts.next()?, parts.next()?, parts.next().unwrap_or("")))
}

/// What to run to bring back the service that owned `owner`, given where its stderr was.
pub fn restart_step(
    owner: &ProcessIdentity,
    exit: Option<&ProcessExit>,
    fix_first: bool,
) -> String {
    let source = exit.map_or("", |e| e.stderr_source.as_str());
    let fix = if fix_first {
        "fix what its stderr says, then "
    } else {
        ""
    };
    if !owner.unit.is_empty() {
        return format!(
            "{fix}systemctl restart {unit} (journalctl -u {unit} -n 50 shows why it stopped)",
            unit = owner.unit
        );
    }
    if let Some((ns, pod, container)) = pod_source(source) {
        let c = if container.is_empty() {
            String::new()
        } else {
            format!(" -c {container}")
        };
        return format!(
            "kubectl -n {ns} logs {pod}{c} --previous, {fix}kubectl -n {ns} rollout restart \
             the deployment (or statefulset) that owns {pod}"
        );
    }
    if !owner.pod_uid.is_empty() {
        return format!(
            "find the pod: kubectl get pods -A -o jsonpath='{{range .items[?(@.metadata.uid==\"{uid}\")]}}{{.metadata.namespace}}/{{.metadata.name}}{{end}}'; \
             then kubectl -n NS logs POD --previous and {fix}kubectl -n NS rollout restart its deployment",
            uid = owner.pod_uid
        );
    }
    format!(
        "{fix}start {} again under a supervisor (systemd unit or Deployment) so it comes back by itself",
        process(owner)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_in_utc() {
        assert_eq!(clock(1_795_602_838_000), "10:33:58");
        assert_eq!(rfc3339(1_795_602_838_000), "2026-11-25T10:33:58Z");
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(seconds(1500), "1.5s");
        assert_eq!(seconds(60_000), "60s");
    }

    #[test]
    fn the_crash_reason_is_the_last_line_that_says_something() {
        let exit = ProcessExit {
            status: Some(1),
            stderr_tail: vec![
                "Traceback (most recent call last):".into(),
                "  File \"app.py\", line 1, in <module>".into(),
                "ModuleNotFoundError: No module named 'flask'".into(),
                "   ".into(),
            ],
            ..Default::default()
        };
        assert_eq!(
            crash_reason(&exit).as_deref(),
            Some("ModuleNotFoundError: No module named 'flask'")
        );
        assert_eq!(crash_reason(&ProcessExit::default()), None);
        assert_eq!(exit_text(Some(1), None), "exited with status 1");
        assert_eq!(exit_text(None, Some(9)), "was killed by signal 9 (SIGKILL)");
    }

    fn exit_text(status: Option<i32>, signal: Option<i32>) -> String {
        exit(&ProcessExit {
            status,
            signal,
            ..Default::default()
        })
    }

    #[test]
    fn next_steps_follow_where_the_process_ran() {
        let unit = ProcessIdentity {
            pid: 1,
            unit: "client-portal.service".into(),
            ..Default::default()
        };
        let step = restart_step(&unit, None, false);
        assert!(
            step.starts_with("systemctl restart client-portal.service"),
            "{step}"
        );
        let pod = ProcessIdentity {
            pid: 1,
            pod_uid: "0b7a".into(),
            ..Default::default()
        };
        let exit = ProcessExit {
            stderr_source: "pod:shop/web-7d9f-abcde/app".into(),
            ..Default::default()
        };
        let step = restart_step(&pod, Some(&exit), true);
        assert!(
            step.starts_with("kubectl -n shop logs web-7d9f-abcde -c app --previous"),
            "{step}"
        );
        assert!(step.contains("kubectl -n shop rollout restart"), "{step}");
        assert!(restart_step(&pod, None, false).contains("0b7a"));
    }
}
