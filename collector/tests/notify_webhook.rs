//! The webhook notifier against receivers on 127.0.0.1: a plain HTTP one in this test, and
//! Python's HTTPS server with a certificate from a throwaway CA (the `ca_pem` setting).
mod common;

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::TcpListener,
    process::{Command, Stdio},
    sync::mpsc,
};

use common::{alert, config, resolved, WAIT};
use serde_json::Value;
use vigil_collector::{
    alerts::model::Cause,
    notify::{payload, Notifiers, NotifyConfig},
};
use vigil_e2e::{scratch_dir, smtp::TestCerts};

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
fn notify_webhook_receives_alertmanager_webhook_json() {
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

/// Python's HTTPS server: prints its port, then each POST body on a line of its own.
const HTTPS_RECEIVER: &str = r#"
import http.server, ssl, sys
class Hook(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()
        print(body.decode(), flush=True)
    def log_message(self, *args):
        pass
server = http.server.HTTPServer(("127.0.0.1", 0), Hook)
tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
tls.load_cert_chain(sys.argv[1], sys.argv[2])
server.socket = tls.wrap_socket(server.socket, server_side=True)
print(server.server_address[1], flush=True)
server.serve_forever()
"#;

#[test]
fn notify_webhook_over_https_trusts_the_configured_ca() {
    let certs = TestCerts::generate(&scratch_dir("notify-https"));
    let mut receiver = Command::new("/usr/bin/python3")
        .args(["-c", HTTPS_RECEIVER])
        .args([&certs.cert, &certs.key])
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3");
    let mut lines = BufReader::new(receiver.stdout.take().unwrap()).lines();
    let port: u16 = lines.next().unwrap().unwrap().trim().parse().unwrap();
    let (tx, bodies) = mpsc::channel();
    std::thread::spawn(move || lines.map_while(Result::ok).try_for_each(|l| tx.send(l)));
    let notifiers = Notifiers::start(&NotifyConfig {
        webhooks: vec![format!("https://localhost:{port}/hook")],
        ca_pem: Some(std::fs::read(&certs.ca).unwrap()),
        ..config()
    })
    .unwrap();
    notifiers.transition(&alert("node-1", "127.0.0.1:8084", Cause::UpstreamDown));
    let body = bodies.recv_timeout(WAIT);
    let _ = receiver.kill();
    let _ = receiver.wait();
    let message: Value = serde_json::from_str(&body.expect("webhook POST over TLS")).unwrap();
    assert_eq!(message["alerts"][0]["labels"]["alertname"], "UpstreamDown");
}
