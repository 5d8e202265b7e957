//! Healthy connections travel as summaries, and the collector's metrics are the same as if
//! each connection had been sent alone. Real nginx proxies fast, slow (1.2 s, past the
//! agent's 1 s threshold) and refused requests; the real agent, logging every connection it
//! sees at trace level, streams to a real collector; the same connections sent one by one to
//! a second real collector give the per-record metrics to compare with.
use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::Duration,
};

use serde_json::Value;
use vigil_e2e::{
    bin,
    collector::Collector,
    free_port, http_get,
    nginx::{Nginx, Route},
    scratch_dir, upstreams, wait_for,
};
use vigil_wire::{Batch, ConnectResult, ConnectionOutcome};

const FAST: usize = 400;
const SLOW: usize = 3;
const DEAD: usize = 20;
/// What the metrics are made of, per connection family.
const FAMILIES: [&str; 6] = [
    "vigil_upstream_connects_total",
    "vigil_upstream_connect_duration_seconds",
    "vigil_upstream_first_byte_seconds",
    "vigil_upstream_silent_closes_total",
    "vigil_upstream_resets_total",
    "vigil_upstream_syn_retransmits_total",
];

/// `vigil-agent run` whose trace-level JSON log lines about connections are kept.
struct LoggingAgent {
    child: Child,
    connections: Arc<Mutex<Vec<Value>>>,
}

impl LoggingAgent {
    fn start(collector: &str, ports: &[u16], extra: &[&str]) -> LoggingAgent {
        let dir = scratch_dir(&format!("aggregation-agent-{}", ports[0]));
        // Explicit (idle) logs: nginx's own access lines would blur the record counts.
        let (error_log, access_log) = (dir.join("error.log"), dir.join("access.log"));
        std::fs::write(&error_log, "").unwrap();
        std::fs::write(&access_log, "").unwrap();
        let ports: Vec<String> = ports.iter().map(u16::to_string).collect();
        let mut child = Command::new(bin("vigil-agent"))
            .env("VIGIL_LOG", "info,vigil_agent::ship::outbox=trace")
            .env("VIGIL_LOG_FORMAT", "json")
            .args(["run", "--collector", collector, "--node", "test-node"])
            .args(["--ports", &ports.join(","), "--interval", "5s"])
            .args(["--listen-health", "off"])
            .arg("--state-dir")
            .arg(dir.join("state"))
            .arg("--nginx-error-log")
            .arg(&error_log)
            .arg("--nginx-access-log")
            .arg(&access_log)
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start vigil-agent");
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let mut seen = Vec::new();
        for line in lines.by_ref() {
            let line = line.unwrap();
            if line.contains("vigil-agent run: ready") {
                break;
            }
            seen.push(line);
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "vigil-agent exited before it was ready:\n{}",
            seen.join("\n")
        );
        let connections = Arc::new(Mutex::new(Vec::new()));
        let sink = connections.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                match serde_json::from_str::<Value>(&line) {
                    Ok(v) if v["fields"]["message"] == "connection" => {
                        sink.lock().unwrap().push(v["fields"].clone())
                    }
                    Ok(_) => {}
                    Err(_) => eprintln!("agent: {line}"),
                }
            }
        });
        LoggingAgent { child, connections }
    }

    /// The logged connections to 127.0.0.1:`port`.
    fn to(&self, port: u16) -> Vec<Value> {
        let dst = format!("127.0.0.1:{port}");
        let all = self.connections.lock().unwrap();
        all.iter()
            .filter(|c| c["dst"] == dst.as_str())
            .cloned()
            .collect()
    }
}

impl Drop for LoggingAgent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A logged connection as the agent sends one alone.
fn outcome(c: &Value) -> ConnectionOutcome {
    let result = ConnectResult::ALL
        .into_iter()
        .find(|r| c["result"] == r.label() && *r != ConnectResult::Unspecified)
        .unwrap_or_else(|| panic!("unknown result in {c}"));
    ConnectionOutcome {
        comm: c["comm"].as_str().unwrap().to_owned(),
        dst: c["dst"].as_str().unwrap().to_owned(),
        result: result as i32,
        connect_us: c["connect_us"].as_u64().unwrap(),
        first_byte_us: c["first_byte_us"].as_u64(),
        silent_close: c["silent_close"].as_bool().unwrap(),
        reset: c["reset"].as_bool().unwrap(),
        syn_retransmits: c["syn_retransmits"].as_u64().unwrap() as u32,
        ..Default::default()
    }
}

/// The connection families' samples about `upstreams`, by series.
fn connection_series(text: &str, upstreams: &[String]) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| FAMILIES.iter().any(|f| l.starts_with(f)))
        .filter(|l| {
            upstreams
                .iter()
                .any(|u| l.contains(&format!("upstream=\"{u}\"")))
        })
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').unwrap();
            (series.to_owned(), value.parse().unwrap())
        })
        .collect()
}

fn requests(port: u16, path: &'static str, n: usize, status: u16, threads: usize) {
    let workers: Vec<_> = (0..threads)
        .map(|t| {
            std::thread::spawn(move || {
                for _ in (t..n).step_by(threads) {
                    assert_eq!(http_get(port, path), status, "GET {path}");
                }
            })
        })
        .collect();
    workers.into_iter().for_each(|w| w.join().unwrap());
}

#[test]
fn aggregation_summaries_give_the_metrics_of_every_connection_sent_alone() {
    let fast = upstreams::http_ok(Duration::ZERO);
    let slow = upstreams::http_ok(Duration::from_millis(1200));
    let dead = free_port();
    let routes = [
        Route {
            path: "/fast/",
            upstream_port: fast.port,
        },
        Route {
            path: "/slow/",
            upstream_port: slow.port,
        },
        Route {
            path: "/dead/",
            upstream_port: dead,
        },
    ];
    let nginx = Nginx::start(
        "aggregation",
        &routes,
        "proxy_connect_timeout 5s; proxy_read_timeout 10s;",
    );
    let summarised = Collector::start("aggregation", "");
    let per_record = Collector::start("aggregation-per-record", "");
    let agent = LoggingAgent::start(&summarised.url(), &[fast.port, slow.port, dead], &[]);

    let front = nginx.port;
    let slow_requests = std::thread::spawn(move || requests(front, "/slow/", SLOW, 200, SLOW));
    requests(front, "/fast/", FAST, 200, 4);
    requests(front, "/dead/", DEAD, 502, 1);
    slow_requests.join().unwrap();

    let ports = [fast.port, slow.port, dead];
    let counts = || ports.map(|p| agent.to(p).len());
    assert!(
        wait_for(Duration::from_secs(30), || counts() == [FAST, SLOW, DEAD]),
        "connections the agent logged (fast, slow, dead): {:?}",
        counts()
    );
    let upstreams: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let connects = |c: &Collector| {
        connection_series(&c.metrics(), &upstreams)
            .iter()
            .filter(|(k, _)| k.starts_with("vigil_upstream_connects_total"))
            .map(|(_, v)| *v as usize)
            .sum::<usize>()
    };
    let total = FAST + SLOW + DEAD;
    assert!(
        wait_for(Duration::from_secs(30), || connects(&summarised) == total),
        "connects counted by the collector: {} of {total}",
        connects(&summarised)
    );

    let logged: Vec<Value> = ports.iter().flat_map(|&p| agent.to(p)).collect();
    let healthy = logged.iter().filter(|c| c["healthy"] == true).count();
    let batch = Batch {
        agent_id: "per-record/1".into(),
        sequence: 1,
        node: "test-node".into(),
        connections: logged.iter().map(outcome).collect(),
        ..Default::default()
    };
    assert_eq!(
        per_record.ingest(&batch.encode_compressed(), None).status,
        200
    );

    let want = connection_series(&per_record.metrics(), &upstreams);
    let got = connection_series(&summarised.metrics(), &upstreams);
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>(),
        "the same series"
    );
    for (series, &want) in &want {
        let got = got[series];
        if series.contains("_sum{") {
            // Equal in whole microseconds; added in another order in floating point.
            assert!(
                (got - want).abs() <= want.abs() * 1e-9,
                "{series}: {got} vs {want}"
            );
        } else {
            assert_eq!(got, want, "{series}");
        }
    }

    // The traffic is what it was meant to be, and the healthy part was summarised.
    let at = |name: &str, port: u16, extra: (&str, &str)| {
        let upstream = format!("127.0.0.1:{port}");
        summarised.value(name, &[("upstream", &upstream), extra])
    };
    assert_eq!(
        at("vigil_upstream_connects_total", dead, ("result", "refused")),
        DEAD as f64
    );
    assert_eq!(
        at(
            "vigil_upstream_first_byte_seconds_bucket",
            slow.port,
            ("le", "1")
        ),
        0.0
    );
    assert_eq!(
        at(
            "vigil_upstream_first_byte_seconds_bucket",
            slow.port,
            ("le", "2.5")
        ),
        SLOW as f64
    );
    assert_eq!(
        at(
            "vigil_upstream_first_byte_seconds_count",
            fast.port,
            ("client", "nginx")
        ),
        FAST as f64
    );
    assert!(
        healthy >= FAST * 9 / 10,
        "{healthy} of {FAST} fast connections summarised"
    );
    assert!(
        logged
            .iter()
            .filter(|c| c["dst"] != upstreams[0].as_str())
            .all(|c| c["healthy"] == false),
        "slow and refused connections travel alone"
    );
    let records = summarised.value("vigil_ingest_records_total", &[]);
    assert!(
        records + (healthy / 2) as f64 <= total as f64,
        "{records} records for {total} connections, {healthy} of them healthy"
    );
}
