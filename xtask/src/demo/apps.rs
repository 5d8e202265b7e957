//! The demo's three upstream services, as the python files it writes under
//! target/vigil-demo. Standard library only, run by Debian's /usr/bin/python3.

/// www.example.com: healthy all along.
pub const WWW: &str = r#""""www.example.com: the company site. Healthy all along."""
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Site(BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"<h1>example.com</h1>\n"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Site)
print("www: serving on 127.0.0.1:%d" % server.server_address[1], flush=True)
server.serve_forever()
"#;

/// client-portal release v1, in production. SIGHUP deploys: the process re-executes
/// `current/app.py` in place (same pid), handing its listening socket over in LISTEN_FD,
/// the way gunicorn re-executes itself for an upgrade.
pub const PORTAL_V1: &str = r#""""client-portal v1: standard library only.

Started as `venv/bin/python current/app.py PORT`. On SIGHUP it re-executes current/app.py
(the release `current` points to now), same pid, passing the listening socket in LISTEN_FD.
"""
import os
import signal
import socket
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

RELEASE = "v1"


def listener(port):
    fd = os.environ.pop("LISTEN_FD", None)
    if fd is not None:
        return socket.socket(fileno=int(fd))
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", port))
    s.listen(128)
    return s


class Portal(BaseHTTPRequestHandler):
    def do_GET(self):
        body = ('{"app": "client-portal", "release": "%s"}\n' % RELEASE).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


sock = listener(int(sys.argv[1]))
server = ThreadingHTTPServer(sock.getsockname(), Portal, bind_and_activate=False)
server.socket.close()
server.socket = sock


def redeploy(signum, frame):
    print("client-portal %s: SIGHUP, re-executing %s" % (RELEASE, sys.argv[0]), file=sys.stderr, flush=True)
    os.set_inheritable(sock.fileno(), True)
    env = dict(os.environ, LISTEN_FD=str(sock.fileno()))
    os.execve(sys.executable, sys.orig_argv[:1] + sys.argv, env)


signal.signal(signal.SIGHUP, redeploy)
print("client-portal %s: serving on 127.0.0.1:%d" % (RELEASE, sock.getsockname()[1]), flush=True)
server.serve_forever()
"#;

/// client-portal release v2: moved to Flask, which the venv does not have.
pub const PORTAL_V2: &str = r#""""client-portal v2: moved to Flask.

requirements.txt lists flask; the deploy copied the code but never ran
`pip install -r requirements.txt` in the venv.
"""
import os
import socket
import sys

from flask import Flask

app = Flask(__name__)


@app.get("/")
def index():
    return {"app": "client-portal", "release": "v2"}


sock = socket.socket(fileno=int(os.environ["LISTEN_FD"]))
app.run(host="127.0.0.1", port=sock.getsockname()[1])
"#;

pub const PORTAL_V2_REQUIREMENTS: &str = "flask>=3.0\n";

/// crm.example.com's backend: a pre-fork server like gunicorn (a master and N forked
/// workers sharing one listening socket). SIGUSR1 is the bad release of INC-001: from then
/// on every request sends the worker that took it into a loop that never answers.
pub const CRM: &str = r#""""crm: a pre-fork server (a master, N workers sharing one listening socket).

SIGUSR1 to the master stands for the bad release: from then on each worker loops forever
(100% of a CPU) on the next request it takes, and never answers.
"""
import os
import signal
import socket
import sys

port, workers = int(sys.argv[1]), int(sys.argv[2])
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", port))
s.listen(2048)
master = os.getpid()
looping = False


def start_looping(signum, frame):
    global looping
    looping = True


def loop_forever():
    # The bug: a loop whose exit condition never comes true. Leaves only if the master is gone.
    n = 0
    while True:
        n += 1
        if n % 500000 == 0 and os.getppid() != master:
            os._exit(1)


def serve():
    signal.signal(signal.SIGUSR1, start_looping)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    while True:
        conn, _ = s.accept()
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(4096)
            if not chunk:
                break
            data += chunk
        if looping:
            loop_forever()
        body = b'{"app": "crm", "contacts": 1284}\n'
        head = b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
        try:
            conn.sendall(head % len(body) + body)
        except OSError:
            pass
        conn.close()


children = []
for _ in range(workers):
    pid = os.fork()
    if pid == 0:
        serve()
        os._exit(0)
    children.append(pid)


def relay(signum, frame):
    for c in children:
        os.kill(c, signum)


def stop(signum, frame):
    for c in children:
        os.kill(c, signal.SIGKILL)
    sys.exit(0)


signal.signal(signal.SIGUSR1, relay)
signal.signal(signal.SIGTERM, stop)
print("crm: %d workers serving on 127.0.0.1:%d" % (workers, port), flush=True)
while True:
    signal.pause()
"#;
