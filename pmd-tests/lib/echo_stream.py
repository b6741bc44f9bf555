#!/usr/bin/python3
"""Long-lived TCP connections through an l4lbd VIP, checked line by line.

  echo_stream.py serve  --name pod-a --port 9000
      (in a pod) answers every line "N" with "pod-a N"
  echo_stream.py stream --vip 172.16.12.100 --port 9000 --connections 24 [--interval 0.1]
      (in the client) opens the connections, sends "N" on each every --interval seconds
      and checks that each echo comes back in order, from the same pod, within --stale
      seconds. Prints "ready {json}" once every connection got its first echo (or failed),
      and runs until SIGTERM/SIGINT or --duration; then prints the summary as JSON.
  echo_stream.py dial   --vip 172.16.12.100 --port 9000 --duration 3
      (in the client) opens new connections one after another, one line each, and prints
      as JSON every attempt as [start, pod or null, error or null]; start is
      time.monotonic(), which is CLOCK_MONOTONIC and so comparable across namespaces and
      with the caller's own clock.

The stream summary: {"connections": [{pod, local_port, sent, echoed, max_rtt_ms, error,
error_at}], "per_pod": {pod: connections}}; error is null while a connection is intact,
otherwise "stalled", "closed", "reset", "moved" (an echo from another pod), "bad_echo" or
the connect error, and error_at is the time.monotonic() when it was seen.
"""

import argparse
import errno
import json
import select
import signal
import socket
import socketserver
import sys
import threading
import time


class EchoHandler(socketserver.StreamRequestHandler):
    def handle(self):
        name = self.server.pod_name.encode()
        try:
            for line in self.rfile:
                self.wfile.write(name + b" " + line)
                self.wfile.flush()
        except OSError:
            pass


class EchoServer(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, addr, pod_name):
        self.pod_name = pod_name
        super().__init__(addr, EchoHandler)


def serve(args):
    server = EchoServer((args.bind, args.port), args.name)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
                     daemon=True).start()
    print(f"ready echo {args.name} {args.bind}:{args.port}", flush=True)
    while not stop.wait(0.5):
        pass
    server.shutdown()
    server.server_close()
    return 0


def error_kind(e):
    if isinstance(e, socket.timeout):
        return "timeout"
    if isinstance(e, ConnectionRefusedError):
        return "refused"
    if isinstance(e, ConnectionResetError):
        return "reset"
    return errno.errorcode.get(getattr(e, "errno", None) or 0, type(e).__name__)


class Stream:
    """One connection: sends "seq\\n", expects "<pod> seq\\n" back, in order."""

    def __init__(self, vip, port, timeout):
        self.sock = None
        self.pod = None
        self.local_port = None
        self.sent = self.echoed = 0
        self.pending = []  # send times of lines not yet echoed, oldest first
        self.max_rtt = 0.0
        self.buf = b""
        self.error = None
        self.error_at = None
        try:
            self.sock = socket.create_connection((vip, port), timeout=timeout)
            self.local_port = self.sock.getsockname()[1]
            self.sock.setblocking(False)
        except OSError as e:
            self.fail(error_kind(e))

    def fail(self, kind):
        self.error, self.error_at = kind, time.monotonic()
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def send(self, now):
        try:
            self.sock.send(f"{self.sent}\n".encode())
        except OSError as e:
            self.fail(error_kind(e))
            return
        self.pending.append(now)
        self.sent += 1

    def receive(self, now):
        try:
            data = self.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError as e:
            self.fail(error_kind(e))
            return
        if not data:
            self.fail("closed")
            return
        self.buf += data
        while b"\n" in self.buf:
            line, self.buf = self.buf.split(b"\n", 1)
            fields = line.decode("latin-1").split()
            if len(fields) != 2 or fields[1] != str(self.echoed) or not self.pending:
                self.fail("bad_echo")
                return
            if self.pod is None:
                self.pod = fields[0]
            elif fields[0] != self.pod:
                self.fail("moved")
                return
            self.max_rtt = max(self.max_rtt, now - self.pending.pop(0))
            self.echoed += 1

    def summary(self):
        return {"pod": self.pod, "local_port": self.local_port, "sent": self.sent,
                "echoed": self.echoed, "max_rtt_ms": round(self.max_rtt * 1000, 1),
                "error": self.error, "error_at": self.error_at}


def stream(args):
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    streams = [Stream(args.vip, args.port, args.timeout) for _ in range(args.connections)]
    start = time.monotonic()
    next_send = start
    announced = False
    while not stop.is_set():
        now = time.monotonic()
        if args.duration and now - start >= args.duration:
            break
        live = [s for s in streams if s.sock is not None]
        if now >= next_send:
            for s in live:
                s.send(now)
            next_send += args.interval
        live = [s for s in streams if s.sock is not None]
        for s in live:
            if s.pending and now - s.pending[0] > args.stale:
                s.fail("stalled")
        live = [s for s in streams if s.sock is not None]
        wait = max(0.0, min(next_send - time.monotonic(), 0.05))
        ready = select.select([s.sock for s in live], [], [], wait)[0] if live else []
        if not live:
            time.sleep(wait)
        now = time.monotonic()
        for s in live:
            if s.sock in ready:
                s.receive(now)
        if not announced and all(s.pod is not None or s.error for s in streams):
            announced = True
            print("ready " + json.dumps([s.pod for s in streams]), flush=True)
    per_pod = {}
    for s in streams:
        if s.pod is not None:
            per_pod[s.pod] = per_pod.get(s.pod, 0) + 1
        if s.sock is not None:
            s.sock.close()
    print(json.dumps({"connections": [s.summary() for s in streams], "per_pod": per_pod}),
          flush=True)
    return 0


def dial_once(vip, port, timeout):
    try:
        with socket.create_connection((vip, port), timeout=timeout) as s:
            s.sendall(b"0\n")
            data = b""
            while b"\n" not in data:
                chunk = s.recv(4096)
                if not chunk:
                    return None, "closed"
                data += chunk
            fields = data.split(b"\n", 1)[0].decode("latin-1").split()
            if len(fields) != 2 or fields[1] != "0":
                return None, "bad_echo"
            return fields[0], None
    except OSError as e:
        return None, error_kind(e)


def dial(args):
    attempts = []
    end = time.monotonic() + args.duration
    while time.monotonic() < end:
        t = time.monotonic()
        pod, err = dial_once(args.vip, args.port, args.timeout)
        attempts.append([round(t, 4), pod, err])
        time.sleep(args.pause)
    print(json.dumps({"attempts": attempts}), flush=True)
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="mode", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--name", required=True)
    s.add_argument("--bind", default="0.0.0.0")
    s.add_argument("--port", type=int, default=9000)
    for name in ("stream", "dial"):
        c = sub.add_parser(name)
        c.add_argument("--vip", required=True)
        c.add_argument("--port", type=int, required=True)
        c.add_argument("--timeout", type=float, default=1.0, help="connect/echo timeout, s")
        c.add_argument("--duration", type=float, default=0.0 if name == "stream" else 3.0,
                       help="seconds to run (stream: 0 = until SIGTERM)")
    st = sub.choices["stream"]
    st.add_argument("--connections", type=int, default=1)
    st.add_argument("--interval", type=float, default=0.1, help="seconds between lines")
    st.add_argument("--stale", type=float, default=1.0,
                    help="an echo later than this (s) fails the connection")
    sub.choices["dial"].add_argument("--pause", type=float, default=0.01,
                                     help="seconds between attempts")
    args = ap.parse_args()
    return {"serve": serve, "stream": stream, "dial": dial}[args.mode](args)


if __name__ == "__main__":
    sys.exit(main())
