#!/usr/bin/python3
"""Client for the l4lbd end-to-end runs: real TCP/UDP requests to a Service VIP.

  client.py http --vip 172.16.12.100 --port 80 --count 300 [--json]
  client.py udp  --vip 172.16.12.101 --port 53 --count 20 [--json]

Each request uses a new socket (so a new source port, hence a new flow for l4lbd) and
is tried once: a failure is counted, never retried. The pods (pod_server.py) answer
"<pod> <client ip>:<client port>", which tells which backend took the flow and what
source address reached it. For every request the client also records the address its
own kernel saw answering (getpeername for TCP, recvfrom for UDP): through a passthrough
load balancer that is the VIP:port, never the pod.

Output: a table per pod (count and share), or with --json one object:
  {ok, failed, attempted, per_pod: {pod: n}, peers: [distinct "ip:port"],
   seen_client_ips: [distinct], source_ports_distinct, client_port_preserved,
   errors: {kind: n}, error_samples: [...]}
"""

import argparse
import collections
import errno
import json
import socket
import sys
import time


def parse_answer(text):
    """'pod-a 10.0.0.2:41000' -> ('pod-a', '10.0.0.2', 41000); None when malformed."""
    fields = text.strip().split()
    if len(fields) != 2 or ":" not in fields[1]:
        return None
    ip, _, port = fields[1].rpartition(":")
    try:
        return fields[0], ip, int(port)
    except ValueError:
        return None


def http_once(vip, port, timeout):
    """One HTTP GET on a fresh connection. Returns a result dict (never raises)."""
    r = {"ok": False}
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    deadline = time.monotonic() + timeout
    try:
        s.connect((vip, port))
        r["local_port"] = s.getsockname()[1]
        peer = s.getpeername()
        r["peer"] = f"{peer[0]}:{peer[1]}"
        s.sendall(f"GET / HTTP/1.1\r\nHost: {vip}\r\nUser-Agent: l4lb-e2e\r\n"
                  "Connection: close\r\n\r\n".encode())
        data = b""
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise socket.timeout("response not complete in time")
            s.settimeout(remaining)
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        head, sep, body = data.partition(b"\r\n\r\n")
        status = head.split(b"\r\n", 1)[0].decode("latin-1")
        if not sep or not status.startswith("HTTP/1.") or status.split()[1:2] != ["200"]:
            r["error"] = "bad_response"
            r["detail"] = status or repr(data[:80])
            return r
        answer = parse_answer(body.decode("latin-1"))
        if answer is None:
            r["error"] = "bad_body"
            r["detail"] = repr(body[:80])
            return r
        r["pod"], r["seen_ip"], r["seen_port"] = answer
        r["ok"] = True
    except socket.timeout as e:
        r["error"] = "timeout"
        r["detail"] = str(e) or "timed out"
    except ConnectionRefusedError as e:
        r["error"] = "refused"
        r["detail"] = str(e)
    except ConnectionResetError as e:
        r["error"] = "reset"
        r["detail"] = str(e)
    except OSError as e:
        r["error"] = errno.errorcode.get(e.errno, type(e).__name__)
        r["detail"] = str(e)
    finally:
        s.close()
    return r


def udp_once(vip, port, timeout):
    """One datagram and its reply on a fresh, unconnected socket: recvfrom reports
    whoever answered, so a reply that skipped the reverse NAT shows up as such."""
    r = {"ok": False}
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(timeout)
    try:
        s.bind(("0.0.0.0", 0))
        r["local_port"] = s.getsockname()[1]
        s.sendto(b"l4lb-e2e ping", (vip, port))
        data, peer = s.recvfrom(65536)
        r["peer"] = f"{peer[0]}:{peer[1]}"
        answer = parse_answer(data.decode("latin-1"))
        if answer is None:
            r["error"] = "bad_body"
            r["detail"] = repr(data[:80])
            return r
        r["pod"], r["seen_ip"], r["seen_port"] = answer
        r["ok"] = True
    except socket.timeout:
        r["error"] = "timeout"
        r["detail"] = "no reply"
    except OSError as e:
        r["error"] = errno.errorcode.get(e.errno, type(e).__name__)
        r["detail"] = str(e)
    finally:
        s.close()
    return r


def summarise(results, count):
    ok = [r for r in results if r["ok"]]
    per_pod = collections.Counter(r["pod"] for r in ok)
    errors = collections.Counter(r["error"] for r in results if not r["ok"])
    samples = [f'{r["error"]}: {r.get("detail", "")}' for r in results if not r["ok"]][:5]
    ports = [r["local_port"] for r in results if "local_port" in r]
    return {
        "attempted": len(results),
        "ok": len(ok),
        # Requests not attempted (after --stop-after-failures) count as failed too.
        "failed": count - len(ok),
        "per_pod": dict(sorted(per_pod.items())),
        "peers": sorted({r["peer"] for r in ok}),
        "seen_client_ips": sorted({r["seen_ip"] for r in ok}),
        "source_ports_distinct": len(set(ports)),
        "client_port_preserved": sum(1 for r in ok if r["seen_port"] == r["local_port"]),
        "errors": dict(errors),
        "error_samples": samples,
    }


def print_table(kind, vip, port, s, count, elapsed):
    print(f"{kind.upper()} to {vip}:{port}: {s['ok']}/{count} ok, {s['failed']} failed "
          f"({elapsed:.1f}s)")
    if s["per_pod"]:
        print(f"  {'pod':<10} {'requests':>8} {'share':>7}")
        for pod, n in s["per_pod"].items():
            print(f"  {pod:<10} {n:>8} {100.0 * n / max(s['ok'], 1):>6.1f}%")
    print(f"  client saw replies from: {', '.join(s['peers']) or '-'}")
    print(f"  pods saw client IP(s):   {', '.join(s['seen_client_ips']) or '-'}"
          f" (source port preserved on {s['client_port_preserved']}/{s['ok']})")
    if s["errors"]:
        print(f"  errors: {s['errors']}")
        for e in s["error_samples"]:
            print(f"    {e}")


def main():
    ap = argparse.ArgumentParser(description="requests through an l4lbd Service VIP")
    ap.add_argument("kind", choices=["http", "udp"])
    ap.add_argument("--vip", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--count", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=2.0, help="seconds per request")
    ap.add_argument("--stop-after-failures", type=int, default=0, metavar="N",
                    help="give up after N failures (the rest count as failed); 0: never")
    ap.add_argument("--json", action="store_true", help="print the summary as JSON")
    ap.add_argument("--json-out", metavar="FILE", help="also write the JSON summary to FILE")
    args = ap.parse_args()

    once = http_once if args.kind == "http" else udp_once
    results = []
    failures = 0
    start = time.monotonic()
    for _ in range(args.count):
        r = once(args.vip, args.port, args.timeout)
        results.append(r)
        if not r["ok"]:
            failures += 1
            if args.stop_after_failures and failures >= args.stop_after_failures:
                break
    elapsed = time.monotonic() - start
    s = summarise(results, args.count)
    s["elapsed_s"] = round(elapsed, 3)
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(s, f)
            f.write("\n")
    if args.json:
        print(json.dumps(s))
    else:
        print_table(args.kind, args.vip, args.port, s, args.count, elapsed)
    return 0 if s["failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
