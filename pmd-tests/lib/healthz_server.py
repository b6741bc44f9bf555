#!/usr/bin/python3
"""A /healthz endpoint whose answer a test sets, for l4lbd's health-check runs.

  healthz_server.py --listen 8081=/tmp/pod-a.code --listen 8082 --listen 31000=/tmp/node-a.code

Each --listen PORT[=FILE] is one TCP listener. Every GET re-reads FILE: its first word is
the status code to answer (200, 500, 503 ...); no FILE, a missing or unreadable one: 200.
So a test flips a backend between healthy and unhealthy by writing one file, as the
kubelet's readiness endpoint or kube-proxy's healthCheckNodePort (200 with local
endpoints, 503 without) would flip. A listener without FILE doubles as "a port that
accepts" for TCP-connect checks.

Prints "ready ..." on stdout once every port listens; exits 0 on SIGTERM/SIGINT.
socketserver directly (not http.server): no getfqdn stall in a namespace without DNS.
"""

import argparse
import signal
import socketserver
import sys
import threading

REASONS = {200: "OK", 204: "No Content", 500: "Internal Server Error",
           503: "Service Unavailable", 404: "Not Found"}


def status_of(path):
    if not path:
        return 200
    try:
        with open(path) as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 200


class Handler(socketserver.BaseRequestHandler):
    def handle(self):
        conn = self.request
        conn.settimeout(5.0)
        head = b""
        try:
            while b"\r\n\r\n" not in head and b"\n\n" not in head and len(head) < 16384:
                chunk = conn.recv(4096)
                if not chunk:
                    break
                head += chunk
        except OSError:
            return
        code = status_of(self.server.status_file)
        body = b'{"localEndpoints": 1}\n' if code == 200 else b'{"localEndpoints": 0}\n'
        response = (f"HTTP/1.1 {code} {REASONS.get(code, 'Status')}\r\n"
                    f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
                    f"Connection: close\r\n\r\n").encode() + body
        try:
            conn.sendall(response)
        except OSError:
            pass


class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True
    request_queue_size = 64

    def __init__(self, addr, status_file):
        self.status_file = status_file
        super().__init__(addr, Handler)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--listen", action="append", required=True, metavar="PORT[=FILE]")
    ap.add_argument("--bind", default="0.0.0.0")
    args = ap.parse_args()

    servers = []
    for spec in args.listen:
        port, _, path = spec.partition("=")
        servers.append(Server((args.bind, int(port)), path or None))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    for s in servers:
        threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.2},
                         daemon=True).start()
    print("ready healthz " + " ".join(args.listen), flush=True)
    while not stop.wait(0.5):
        pass
    for s in servers:
        s.shutdown()
        s.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
