"""Hostile input through the real l4lbd on a real path (network namespaces, two workers):
IPv4 fragments, ICMP errors both ways, path MTU discovery, echo to a VIP, and a SYN flood
at many times the flow-table capacity while live connections keep talking.

  client ns [TAP l4f-wan] == l4lbd (2 workers, net_tap) == [TAP l4f-lan] node ns -- pods

net_tap, not net_af_packet: the af_packet PMD joins its sockets to a fanout group with
PACKET_FANOUT_FLAG_DEFRAG, so the kernel would reassemble fragments before l4lbd saw
them. The TAPs are moved into the client and node namespaces once l4lbd has made them.

- The lan port is configured with MTU 1450: a DF packet of 1500 bytes from the client
  gets ICMP fragmentation needed (1450), which the client's kernel must accept (it quotes
  the client's own packet) and learn.
- The client reaches the fragment VIP through a route of MTU 1400: its kernel fragments a
  4,000-byte datagram; pods echo it whole (fragmented again on the way back).
- A UDP Service port whose targetPort nobody listens on: the pod's port unreachable comes
  back translated, so the client's connected socket sees ECONNREFUSED.
- The SYN flood: spoofed sources in 198.18.0.0/15 (routed back to the client, which
  drops the SYN-ACKs), 15 x the flow-table capacity.

Run as root: /usr/bin/python3 -m pytest -v pmd-tests/hostile_test.py
"""

import json
import re
import signal
import socket
import subprocess
import time
import urllib.request

import pytest

from e2e_test import L4LBD, LIB, PODS, PY, TOPO, free_tcp_port

PREFIX = "l4f"
UDP_VIP, PMTU_VIP, TCP_VIP = "172.16.14.10", "172.16.14.12", "172.16.14.11"
ECHO_PORT, CLOSED_PORT, STREAM_PORT = 7000, 9, 9000
CAPACITY = 4096
FLOOD = 15 * CAPACITY
FLOOD_RATE = 20000  # per second: ~3 s of flood, within what l4lbd takes on a busy 2-core box
LIVE = 20
METRICS_PORT = free_tcp_port()

CONFIG = f"""
dataplane:
  eal: [--no-huge, -m, "512", --no-pci, --no-shconf, --file-prefix, {PREFIX},
        --lcores, "0@0,1@1,2@1"]
  workers: [1, 2]
  flowTable: {{capacity: {CAPACITY}}}
  answerVipPings: true
  ports:
    - {{name: wan, device: "net_tap0,iface={PREFIX}-wan", address: 10.0.0.1/24,
       mac: "02:00:00:00:f0:01"}}
    - {{name: lan, device: "net_tap1,iface={PREFIX}-lan", address: 10.128.0.1/24,
       mac: "02:00:00:00:f0:02", mtu: 1450}}
  routes:
    - {{prefix: 10.4.1.0/24, via: 10.128.0.21}}
    - {{prefix: 198.18.0.0/15, via: 10.0.0.2}}
control:
  api: {{listen: 127.0.0.1:{free_tcp_port()}}}
  metrics: {{listen: 127.0.0.1:{METRICS_PORT}}}
services:
  - name: udp-echo
    vip: {UDP_VIP}
    ports:
      - {{name: echo, protocol: UDP, port: {ECHO_PORT}}}
      - {{name: closed, protocol: UDP, port: {CLOSED_PORT}, targetPort: 9999}}
    backends: [{{ip: 10.4.1.12}}, {{ip: 10.4.1.13}}]
  - name: pmtu                # pod-a alone: its endpoint stays unambiguous for replies
    vip: {PMTU_VIP}
    ports: [{{name: echo, protocol: UDP, port: 7001, targetPort: {ECHO_PORT}}}]
    backends: [{{ip: 10.4.1.11}}]
  - name: stream
    vip: {TCP_VIP}
    ports: [{{name: echo, protocol: TCP, port: {STREAM_PORT}}}]
    backends: [{{ip: 10.4.1.11}}, {{ip: 10.4.1.12}}, {{ip: 10.4.1.13}}]
"""


def sh(cmd, timeout=60):
    r = subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"{cmd}:\n{r.stdout}{r.stderr}"
    return r.stdout


def topo(action):
    sh(f'bash -c \'source "{TOPO}" && topo_{action} {PREFIX}\'')


def in_client(*argv, timeout=60):
    r = subprocess.run(["ip", "netns", "exec", f"{PREFIX}-client", *argv], capture_output=True,
                       text=True, timeout=timeout)
    return r


def client_py(script, *args, timeout=60):
    r = in_client(PY, str(LIB / script), *args, timeout=timeout)
    assert r.returncode == 0, f"{script} {args}:\n{r.stdout}{r.stderr}"
    return json.loads(r.stdout.strip().splitlines()[-1])


def scrape():
    """Worker counters summed over lcores, from the Prometheus endpoint."""
    with urllib.request.urlopen(f"http://127.0.0.1:{METRICS_PORT}/metrics", timeout=5) as r:
        text = r.read().decode()
    sums = {}
    for m in re.finditer(r"^l4lb_(\w+)_total\{([^}]*)\} (\S+)$", text, re.M):
        name = m.group(1)
        if name == "drops":
            name = "drop_" + re.search(r'reason="(\w+)"', m.group(2)).group(1)
        sums[name] = sums.get(name, 0) + float(m.group(3))
    return sums


def changed(before):
    """The counters and drops that moved since `before`: the diagnosis of a failure."""
    now = scrape()
    return {k: v - before.get(k, 0) for k, v in now.items()
            if v != before.get(k, 0) and not k.endswith(("cycles", "polls"))}


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    if not L4LBD.is_file():
        pytest.fail(f"{L4LBD} is missing: build it first")
    work = tmp_path_factory.mktemp("hostile")
    config, log_path, stats_path = work / "l4f.yaml", work / "l4lbd.log", work / "stats.json"
    config.write_text(CONFIG)
    topo("down")
    procs, state = [], {"l4lbd": None}
    try:
        topo("up_tap")
        for name in PODS:
            ns = f"{PREFIX}-{name}"
            for argv in ([str(LIB / "udp_echo.py"), "--port", str(ECHO_PORT)],
                         [str(LIB / "echo_stream.py"), "serve", "--name", name, "--port",
                          str(STREAM_PORT)]):
                p = subprocess.Popen(["ip", "netns", "exec", ns, PY, *argv],
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
                procs.append(p)
                assert "ready" in p.stdout.readline()
        with open(log_path, "w") as log:
            state["l4lbd"] = subprocess.Popen(
                [str(L4LBD), "--config", str(config), "--stats-file", str(stats_path)],
                stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while "ready:" not in log_path.read_text() and time.monotonic() < deadline:
            assert state["l4lbd"].poll() is None, log_path.read_text()
            time.sleep(0.1)
        assert "ready: 2 worker(s)" in log_path.read_text(), log_path.read_text()
        topo("attach_tap")
        sh(f"ip -n {PREFIX}-client route add {UDP_VIP}/32 via 10.0.0.1 mtu lock 1400")
        state.update(log=log_path, stats=stats_path)
        yield state
    finally:
        l4lbd = state["l4lbd"]
        if l4lbd is not None and l4lbd.poll() is None:
            l4lbd.kill()
            l4lbd.wait()
        for p in procs:
            p.terminate()
            p.wait(timeout=5)
        topo("down")


def test_ping_to_a_vip_is_answered(lab):
    r = in_client("ping", "-c", "2", "-i", "0.2", "-W", "2", TCP_VIP, timeout=20)
    assert r.returncode == 0, r.stdout + r.stderr
    assert scrape()["icmp_echo_replies"] >= 2


def test_df_packet_over_the_mtu_teaches_the_client_the_path_mtu(lab):
    code = f"""
import socket, json, errno
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IP, 10, 2)   # IP_MTU_DISCOVER = IP_PMTUDISC_DO: DF, no local fragments
s.connect(("{PMTU_VIP}", 7001))
s.settimeout(2)
s.send(b"x" * 1472)                       # 1500 bytes of IP: over l4lbd's lan MTU (1450)
first = None
try:
    s.recv(2000)
except OSError as e:
    first = e.errno                       # EMSGSIZE: the kernel learned the MTU
mtu = s.getsockopt(socket.IPPROTO_IP, 14) # IP_MTU
try:
    s.send(b"x" * 1472)
    again = None
except OSError as e:
    again = e.errno
s.send(b"y" * (mtu - 28))
echo = len(s.recv(2000))
print(json.dumps({{"first": first, "mtu": mtu, "again": again, "echo": echo}}))
"""
    r = in_client(PY, "-c", code, timeout=20)
    assert r.returncode == 0, r.stdout + r.stderr
    got = json.loads(r.stdout)
    import errno
    assert got["mtu"] == 1450, got
    assert got["again"] == errno.EMSGSIZE, got
    assert got["echo"] == 1450 - 28, got
    c = scrape()
    assert c["icmp_errors_sent"] >= 1, c


def test_fragmented_datagram_reaches_a_backend_whole_and_comes_back(lab):
    code = f"""
import os, socket, json
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.connect(("{UDP_VIP}", {ECHO_PORT}))
s.settimeout(3)
ok = 0
for i in range(5):
    data = os.urandom(4000)
    s.send(data)                           # route MTU 1400: three fragments
    ok += s.recv(65535) == data
print(json.dumps({{"ok": ok}}))
"""
    before = scrape()
    r = in_client(PY, "-c", code, timeout=30)
    assert r.returncode == 0, (r.stdout + r.stderr, changed(before))
    assert json.loads(r.stdout)["ok"] == 5
    c = scrape()
    # Both ways: 5 datagrams of 3 fragments to the pod, 5 echoes of 3 fragments back.
    assert c["frag_first"] - before.get("frag_first", 0) >= 10, c
    assert c["frag_forwarded"] - before.get("frag_forwarded", 0) >= 20, c


@pytest.mark.parametrize("order", ["reverse", "first-last"])
def test_fragments_out_of_order_are_held_then_follow_their_first(lab, order):
    before = scrape()
    got = client_py("frag_send.py", "--src", "10.0.0.2", "--vip", UDP_VIP, "--port",
                    str(ECHO_PORT), "--size", "4000", "--fragsize", "1376", "--order", order)
    assert got["ok"], got
    c = scrape()
    assert c["frag_held"] - before.get("frag_held", 0) >= got["fragments"] - 1, c


def test_port_unreachable_from_a_pod_reaches_the_client_as_the_vip(lab):
    code = f"""
import socket, json
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.connect(("{UDP_VIP}", {CLOSED_PORT}))
s.settimeout(2)
res = "timeout"
for _ in range(3):                        # the pod's kernel rate-limits its errors
    s.send(b"anyone?")
    try:
        s.recv(100)
        res = "answer"
        break
    except ConnectionRefusedError:
        res = "refused"
        break
    except socket.timeout:
        pass
print(json.dumps({{"result": res}}))
"""
    before = scrape()
    r = in_client(PY, "-c", code, timeout=20)
    assert r.returncode == 0, r.stdout + r.stderr
    # The kernel matches the error to the socket only if the quote reads client -> VIP:9.
    assert json.loads(r.stdout)["result"] == "refused"
    c = scrape()
    assert c["icmp_errors_translated"] - before.get("icmp_errors_translated", 0) >= 1, c


def test_syn_flood_spares_live_connections_and_new_ones_get_through(lab):
    stream = subprocess.Popen(
        ["ip", "netns", "exec", f"{PREFIX}-client", PY, str(LIB / "echo_stream.py"), "stream",
         "--vip", TCP_VIP, "--port", str(STREAM_PORT), "--connections", str(LIVE),
         "--interval", "0.1", "--stale", "5", "--timeout", "3"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert stream.stdout.readline().startswith("ready"), stream.stderr.read()
        neigh = in_client("ip", "neigh", "show", "10.0.0.1").stdout.split()
        wan_mac = neigh[neigh.index("lladdr") + 1]
        before = scrape()
        flood = subprocess.Popen(
            ["ip", "netns", "exec", f"{PREFIX}-client", PY, str(LIB / "syn_flood.py"),
             "--iface", f"{PREFIX}-wan", "--dst-mac", wan_mac, "--vip", TCP_VIP, "--port", str(STREAM_PORT), "--count",
             str(FLOOD), "--rate", str(FLOOD_RATE)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert flood.stdout.readline().startswith("sending"), flood.stderr.read()
        dial = client_py("echo_stream.py", "dial", "--vip", TCP_VIP, "--port", str(STREAM_PORT),
                         "--duration", "2.5", "--pause", "0.05", "--timeout", "8", timeout=60)
        out, err = flood.communicate(timeout=120)
        assert flood.returncode == 0, err
        sent = json.loads(out)
        after = scrape()
        time.sleep(1)
    finally:
        stream.send_signal(signal.SIGTERM)
        summary, _ = stream.communicate(timeout=30)
    conns = json.loads(summary.strip().splitlines()[-1])["connections"]
    forwarded = after["nat_forward"] - before["nat_forward"]
    print(f"\nSYN flood: {sent['sent']} SYNs in {sent['seconds']:.2f} s "
          f"({sent['sent'] / sent['seconds']:.0f}/s offered); l4lbd received "
          f"{after['port_rx_packets'] - before['port_rx_packets']:.0f} frames, forwarded {forwarded:.0f} "
          f"packets to backends ({forwarded / sent['seconds']:.0f}/s); evicted "
          f"{after['flows_evicted'] - before['flows_evicted']:.0f}, stateless (table full) "
          f"{after['flow_insert_failed'] - before['flow_insert_failed']:.0f}")
    broken = [c for c in conns if c["error"] is not None]
    assert not broken and len(conns) == LIVE, broken
    assert all(c["echoed"] >= 10 for c in conns), conns
    # The flood shares the client's TAP queue, which drops when full: a dialled SYN may be
    # lost there (not in l4lbd) and resent by the client after 1 s and 3 s, hence 8 s.
    attempts = dial["attempts"]
    failed = [a for a in attempts if a[2] is not None]
    assert attempts and not failed, failed
    # The table was overrun many times: un-established entries were evicted, never a live one.
    assert sent["sent"] == FLOOD
    assert after["flows_evicted"] - before["flows_evicted"] > CAPACITY, after


def test_l4lbd_exits_cleanly_and_counted_what_it_dropped(lab):
    l4lbd = lab["l4lbd"]
    l4lbd.send_signal(signal.SIGTERM)
    assert l4lbd.wait(timeout=20) == 0, lab["log"].read_text()[-2000:]
    stats = json.loads(lab["stats"].read_text())
    drops = stats["drops"]
    c = stats["counters"]
    assert drops["frag_needed"] >= 1, drops
    assert drops["handoff_full"] == 0, drops
    # Two workers: packets (fragments among them) crossed between them, and no fragment
    # was lost for want of a decision or of room.
    assert c["handoff_sent"] > 0 and c["frag_first"] > 0 and c["frag_held"] > 0, c
    for reason in ("frag_table_full", "frag_hold_full", "frag_timeout", "ipv4_bad_total_length"):
        assert drops[reason] == 0, drops
