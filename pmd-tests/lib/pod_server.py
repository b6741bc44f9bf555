#!/usr/bin/python3
"""A pod for the l4lbd end-to-end runs: a tiny HTTP server and a UDP echo-ish server.

Every answer names the pod and the client address as the pod's kernel saw it, so a
caller can tell which backend Maglev picked and that the client's IP (and port)
came through the load balancer unchanged (passthrough, no SNAT).

  GET <anything>  -> 200, body "<name> <client ip>:<client port>\n", Connection: close
  GET /healthz    -> 200, body "ok\n"
  UDP datagram    -> one datagram back: "<name> <client ip>:<client port>"

Run inside a pod namespace:
  ip netns exec l4d-pod-a pod_server.py --name pod-a --tcp-port 8080 --udp-port 5353
Prints "ready ..." on stdout once both sockets listen; exits 0 on SIGTERM/SIGINT.

socketserver is used directly: http.server.HTTPServer resolves the bound address's
name at start-up (getfqdn), which stalls for seconds in a namespace without DNS.
"""

import argparse
import signal
import socket
import socketserver
import sys
import threading

MAX_REQUEST_HEAD = 16 * 1024


class HttpHandler(socketserver.BaseRequestHandler):
    def handle(self):
        conn = self.request
        conn.settimeout(5.0)
        head = b""
        try:
            while b"\r\n\r\n" not in head and b"\n\n" not in head:
                chunk = conn.recv(4096)
                if not chunk:
                    break
                head += chunk
                if len(head) > MAX_REQUEST_HEAD:
                    break
        except OSError:
            return
        request_line = head.split(b"\n", 1)[0].decode("latin-1").strip()
        parts = request_line.split()
        ip, port = self.client_address[:2]
        if len(parts) >= 2 and parts[0] in ("GET", "HEAD"):
            path = parts[1]
            if path == "/healthz" or path.startswith("/healthz?"):
                status, body = "200 OK", "ok\n"
            else:
                status, body = "200 OK", f"{self.server.pod_name} {ip}:{port}\n"
        else:
            status, body = "400 Bad Request", "bad request\n"
        payload = body.encode()
        response = (
            f"HTTP/1.1 {status}\r\n"
            f"Content-Type: text/plain\r\n"
            f"Content-Length: {len(payload)}\r\n"
            f"X-Pod: {self.server.pod_name}\r\n"
            f"Connection: close\r\n\r\n"
        ).encode()
        if not (len(parts) >= 1 and parts[0] == "HEAD"):
            response += payload
        try:
            conn.sendall(response)
        except OSError:
            pass


class HttpServer(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, addr, pod_name):
        self.pod_name = pod_name
        super().__init__(addr, HttpHandler)


class UdpHandler(socketserver.BaseRequestHandler):
    def handle(self):
        _data, sock = self.request
        ip, port = self.client_address[:2]
        try:
            sock.sendto(f"{self.server.pod_name} {ip}:{port}".encode(), self.client_address)
        except OSError:
            pass


class UdpServer(socketserver.UDPServer):
    allow_reuse_address = True

    def __init__(self, addr, pod_name):
        self.pod_name = pod_name
        super().__init__(addr, UdpHandler)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--name", required=True, help="pod name put in every answer")
    ap.add_argument("--bind", default="0.0.0.0")
    ap.add_argument("--tcp-port", type=int, default=8080)
    ap.add_argument("--udp-port", type=int, default=5353)
    args = ap.parse_args()

    servers = [
        HttpServer((args.bind, args.tcp_port), args.name),
        UdpServer((args.bind, args.udp_port), args.name),
    ]
    stop = threading.Event()

    def on_signal(_signum, _frame):
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    threads = [threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.2},
                                daemon=True) for s in servers]
    for t in threads:
        t.start()
    print(f"ready {args.name} tcp {args.bind}:{args.tcp_port} udp {args.bind}:{args.udp_port}",
          flush=True)
    while not stop.wait(0.5):
        pass
    for s in servers:
        s.shutdown()
        s.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
