"""Reload under load: long-lived TCP connections and a steady UDP stream with sequence
numbers run through one VIP of the live end-to-end topology (prefix l4t) while 240 changes
are applied through the REST API and SIGHUP: other Services added and removed, backends
added to this Service and weights changed, another Service's ACL toggled, the file
reloaded. Passes only if no UDP datagram is lost, no TCP connection is reset or moves to
another pod, and every change is visible in the data path right after the API answers.
Prints the worst latency from the 200 OK to the first answered packet under the new rule.
Run as root:

  /usr/bin/python3 -m pytest -v -s pmd-tests/reload_load_test.py
"""

import json
import re
import signal
import subprocess
import textwrap
import time

import pytest

from api_test import start_lab
from e2e_test import L4LBD, PODS, PREFIX, PY, stop_stale_l4lbd, topo

STREAM_VIP = "172.16.12.120"
TCP_PORT, UDP_PORT, ECHO_TCP, ECHO_UDP = 9000, 9001, 9000, 9001
ACL_VIP, ACL_PORT = "172.16.12.121", 7001
CHANGES = 240
SIGHUP_EVERY = 30
TCP_CONNECTIONS = 4
UDP_RATE = 400  # datagrams per second
PROBE_TIMEOUT_S = 1.0

# Each pod: TCP echo (lines, prefixed with the pod's name) and UDP echo (same).
ECHO_SERVER = textwrap.dedent("""\
    import socket, sys, threading
    name = sys.argv[1].encode()
    def tcp_conn(c):
        f = c.makefile("rb")
        try:
            for line in f:
                c.sendall(name + b" " + line)
        except OSError:
            pass
        c.close()
    def tcp():
        s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0", int(sys.argv[2]))); s.listen(64)
        while True:
            c, _ = s.accept()
            threading.Thread(target=tcp_conn, args=(c,), daemon=True).start()
    def udp():
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 21)
        s.bind(("0.0.0.0", int(sys.argv[3])))
        while True:
            d, a = s.recvfrom(2048)
            s.sendto(name + b" " + d, a)
    threading.Thread(target=tcp, daemon=True).start()
    threading.Thread(target=udp, daemon=True).start()
    print("ready", flush=True)
    sys.stdin.read()
    """)

# In the client namespace: the long-lived traffic. stdin "stop" -> JSON summary.
TRAFFIC = textwrap.dedent("""\
    import json, socket, sys, threading, time
    vip, tport, uport, nconn, rate = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
    stop = threading.Event()
    out = {"tcp_errors": [], "tcp_pods": [], "tcp_echoes": 0}
    conns = []
    for i in range(nconn):
        c = socket.create_connection((vip, tport), timeout=2)
        c.sendall(b"hello\\n"); f = c.makefile("rb")
        out["tcp_pods"].append(f.readline().split()[0].decode())
        conns.append((c, f))
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 21)
    u.connect((vip, uport)); u.settimeout(0.2)
    got, pods, sent = set(), set(), [0]
    def rx():
        while not (stop.is_set() and time.monotonic() > stop_at[0]):
            try:
                d = u.recv(2048)
            except socket.timeout:
                continue
            p, seq = d.split()
            pods.add(p.decode()); got.add(int(seq))
    stop_at = [float("inf")]
    def tx():
        t0 = time.monotonic(); n = 0
        while not stop.is_set():
            u.send(b"%d" % n); n += 1
            delay = t0 + n / rate - time.monotonic()
            if delay > 0: time.sleep(delay)
        sent[0] = n
    def tcp():
        while not stop.is_set():
            for i, (c, f) in enumerate(conns):
                try:
                    c.sendall(b"ping\\n")
                    line = f.readline()
                    if not line:
                        out["tcp_errors"].append(f"conn {i}: closed by peer")
                    elif line.split()[0].decode() != out["tcp_pods"][i]:
                        out["tcp_errors"].append(f"conn {i}: moved to {line.split()[0]}")
                    else:
                        out["tcp_echoes"] += 1
                except OSError as e:
                    out["tcp_errors"].append(f"conn {i}: {e!r}")
            time.sleep(0.05)
    threads = [threading.Thread(target=t) for t in (rx, tx, tcp)]
    for t in threads: t.start()
    print(json.dumps({"ready": True, "tcp_pods": out["tcp_pods"]}), flush=True)
    sys.stdin.readline()
    stop_at[0] = time.monotonic() + 1.5  # stragglers
    stop.set()
    for t in threads: t.join()
    for c, f in conns: c.close()
    missing = [s for s in range(sent[0]) if s not in got]
    out.update(sent=sent[0], received=len(got), missing=missing[:20], lost=len(missing),
               udp_pods=sorted(pods))
    print(json.dumps(out), flush=True)
    """)

# In the client namespace: "VIP PORT" on stdin -> one UDP datagram; prints "ok" or "timeout".
PROBE = textwrap.dedent("""\
    import socket, sys
    for line in sys.stdin:
        vip, port = line.split()
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(float(sys.argv[1]))
        s.sendto(b"0", (vip, int(port)))
        try:
            s.recv(2048); print("ok", flush=True)
        except socket.timeout:
            print("timeout", flush=True)
        s.close()
    """)

STREAM_SERVICE = f"""\
  - name: stream
    vip: {STREAM_VIP}
    ports:
      - {{name: tcp, protocol: TCP, port: {TCP_PORT}, targetPort: {ECHO_TCP}}}
      - {{name: udp, protocol: UDP, port: {UDP_PORT}, targetPort: {ECHO_UDP}}}
    backends: [{{ip: 10.4.1.11}}, {{ip: 10.4.1.12}}]
  - name: guarded
    vip: {ACL_VIP}
    ports: [{{protocol: UDP, port: {ACL_PORT}, targetPort: {ECHO_UDP}}}]
    loadBalancerSourceRanges: [10.0.0.0/24]
    backends: [{{ip: 10.4.1.13}}]
"""


def stream_body(backends):
    if backends == [1, 2]:
        backends = [{"ip": "10.4.1.11", "weight": 1}, {"ip": "10.4.1.12", "weight": 2}]
    return {"name": "stream", "vip": STREAM_VIP,
            "ports": [{"name": "tcp", "protocol": "TCP", "port": TCP_PORT, "targetPort": ECHO_TCP},
                      {"name": "udp", "protocol": "UDP", "port": UDP_PORT, "targetPort": ECHO_UDP}],
            "backends": backends}


def in_client(script, *args, stdin=subprocess.PIPE):
    return subprocess.Popen(["ip", "netns", "exec", f"{PREFIX}-client", PY, "-c", script,
                             *map(str, args)],
                            stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    if not L4LBD.is_file():
        pytest.fail(f"{L4LBD} is missing: build it first (meson compile -C build)")
    stop_stale_l4lbd()
    topo("down")
    lab, client, _ = start_lab(tmp_path_factory.mktemp("reload-load"))
    text = lab.config.read_text()
    assert text.rstrip().splitlines()[-1].startswith("    backends"), "demo.yaml layout changed"
    lab.config.write_text(text.rstrip() + "\n" + STREAM_SERVICE)
    echo = []
    try:
        topo("up")
        lab.start_pods()
        for i, name in enumerate(PODS):
            p = subprocess.Popen(["ip", "netns", "exec", f"{PREFIX}-{name}", PY, "-c",
                                  ECHO_SERVER, name, str(ECHO_TCP), str(ECHO_UDP)],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            echo.append(p)
            assert p.stdout.readline().strip() == "ready"
        lab.start_l4lbd()
        yield lab, client
    finally:
        for p in echo:
            p.kill()
            p.wait()
        exit_code, _ = lab.stop_l4lbd()
        lab.stop_pods()
        topo("down")
    assert exit_code == 0, f"l4lbd exit code {exit_code}:\n{lab.log_tail()}"


def test_reload_under_load(env):
    lab, client = env
    file_text = lab.config.read_text()
    traffic = in_client(TRAFFIC, STREAM_VIP, TCP_PORT, UDP_PORT, TCP_CONNECTIONS, UDP_RATE)
    probe = in_client(PROBE, PROBE_TIMEOUT_S)
    latencies, failures, counts = [], [], {}
    try:
        first = traffic.stdout.readline()
        assert first, f"traffic did not start: {traffic.stderr.read()}"
        print("TCP connections on", json.loads(first)["tcp_pods"])
        time.sleep(0.5)

        def visible(vip, port, what):
            """Time from the answer to the first probe answered under the new rule."""
            t0 = time.monotonic()
            probe.stdin.write(f"{vip} {port}\n")
            probe.stdin.flush()
            answer = probe.stdout.readline().strip()
            if answer != "ok":
                failures.append(f"{what}: probe to {vip}:{port} got {answer or 'nothing'}")
            else:
                latencies.append((time.monotonic() - t0, what))

        def call(method, path, body=None, want=(200, 201)):
            status, answer = client.call(method, path, body)
            if status not in want:
                failures.append(f"{method} {path}: {status} {answer}")
            counts[method] = counts.get(method, 0) + 1
            return status

        live = []  # API-added Services, oldest first
        acl_open = True
        extra = 0
        for i in range(CHANGES):
            if i % SIGHUP_EVERY == SIGHUP_EVERY - 1:
                # The file (with one more Service every other time) replaces every API edit.
                variant = file_text + (
                    "  - {name: filesvc, vip: 172.16.12.122, ports: [{protocol: UDP, port: 7002, "
                    f"targetPort: {ECHO_UDP}}}], backends: [{{ip: 10.4.1.12}}]}}\n"
                    if (i // SIGHUP_EVERY) % 2 == 0 else "")
                lab.config.write_text(variant)
                gen = client.call("GET", "/v1/status")[1]["generation"]
                lab.l4lbd.send_signal(signal.SIGHUP)
                deadline = time.monotonic() + 5
                while client.call("GET", "/v1/status")[1]["generation"] == gen:
                    assert time.monotonic() < deadline, f"SIGHUP not applied:\n{lab.log_tail()}"
                    time.sleep(0.005)
                counts["SIGHUP"] = counts.get("SIGHUP", 0) + 1
                if variant != file_text:
                    visible("172.16.12.122", 7002, "SIGHUP adds filesvc")
                live, acl_open, extra = [], True, 0
                continue
            kind = i % 4
            if kind == 0:  # add another Service
                n = i // 4
                vip = f"172.16.14.{n % 250 + 1}"
                body = {"name": f"svc-{n}", "vip": vip,
                        "ports": [{"protocol": "UDP", "port": 7000, "targetPort": ECHO_UDP}],
                        "backends": [{"ip": ip} for ip in PODS.values()]}
                if call("PUT", f"/v1/services/svc-{n}", body) in (200, 201):
                    visible(vip, 7000, f"PUT svc-{n}")
                    live.append(f"svc-{n}")
            elif kind == 1:  # remove one (the oldest), or the stream's weights once more
                if live:
                    call("DELETE", f"/v1/services/{live.pop(0)}")
                else:
                    extra = 0
                    call("PUT", "/v1/services/stream", stream_body([1, 2]))
            elif kind == 2:  # this Service: more backends, other weights; a and b stay
                extra = extra % 6 + 1
                backends = [{"ip": "10.4.1.11", "weight": 1 + i % 3},
                            {"ip": "10.4.1.12", "weight": 1 + (i // 2) % 3}]
                backends += [{"ip": f"10.4.1.{50 + k}", "weight": k % 4} for k in range(extra)]
                if i % 8 == 2:
                    backends.append({"ip": "10.4.1.13"})
                call("PUT", "/v1/services/stream", stream_body(backends))
            else:  # toggle another Service's ACL
                acl_open = not acl_open
                body = {"name": "guarded", "vip": ACL_VIP,
                        "ports": [{"protocol": "UDP", "port": ACL_PORT, "targetPort": ECHO_UDP}],
                        "loadBalancerSourceRanges": ["10.0.0.0/24"] if acl_open
                        else ["203.0.113.0/24"],
                        "backends": [{"ip": "10.4.1.13"}]}
                if call("PUT", "/v1/services/guarded", body) in (200, 201) and acl_open:
                    visible(ACL_VIP, ACL_PORT, "ACL opened on guarded")
        time.sleep(0.5)
    finally:
        if traffic.poll() is None:
            traffic.stdin.write("stop\n")
            traffic.stdin.flush()
        try:
            out, err = traffic.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            traffic.kill()
            out, err = traffic.communicate()
        probe.kill()
        probe.wait()
    summary = json.loads(out.strip().splitlines()[-1]) if out.strip() else None
    assert summary, f"no traffic summary: {err}"
    worst = max(latencies) if latencies else (float("nan"), "-")
    latencies.sort()
    print(f"changes: {counts}; total {sum(counts.values())}")
    print(f"UDP: sent {summary['sent']}, received {summary['received']}, lost {summary['lost']}, "
          f"pods {summary['udp_pods']}; TCP: {TCP_CONNECTIONS} connections on "
          f"{summary['tcp_pods']}, {summary['tcp_echoes']} echoes, errors "
          f"{summary['tcp_errors'][:3]}")
    print(f"200 OK -> first answered packet under the new rule: {len(latencies)} probes, "
          f"median {latencies[len(latencies) // 2][0] * 1e3:.2f} ms, "
          f"worst {worst[0] * 1e3:.2f} ms ({worst[1]})")
    assert sum(counts.values()) == CHANGES >= 200
    assert not failures, failures[:10]
    assert summary["sent"] > UDP_RATE, summary
    assert summary["lost"] == 0, f"UDP datagrams lost: {summary['lost']}, e.g. {summary['missing']}"
    assert len(summary["udp_pods"]) == 1, f"the UDP flow moved: {summary['udp_pods']}"
    assert summary["tcp_errors"] == [], summary["tcp_errors"][:10]
    assert summary["tcp_echoes"] > 0
    assert "reload rejected" not in lab.log_path.read_text(errors="replace")
