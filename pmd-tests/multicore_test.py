"""Two workers, two queues per port: every flow is owned by one worker, chosen from its
client side, so a reply that the kernel's af_packet fanout puts on the other worker's
queue is handed over and still finds its flow. Two Services share the same pods and
targetPort, so a reply can only be reverse-NATed through its flow entry (the endpoint
is ambiguous): a split flow would show up as a failed connection or a wrong peer.

  client ns --veth-- l4m-wan [l4lbd: 2 workers, qpairs=2] l4m-lan --veth-- node ns -- pods

Both workers share CPU 1 here (EAL --lcores 0@0,1@1,2@1); the test checks correctness,
not speed. Run as root: /usr/bin/python3 -m pytest -v pmd-tests/multicore_test.py
"""

import json
import signal
import subprocess
import time

import pytest

from e2e_test import L4LBD, LIB, PODS, PY, TOPO, free_tcp_port

PREFIX = "l4m"
VIPS = ["172.16.12.100", "172.16.12.102"]
PER_VIP = 150

CONFIG = f"""
dataplane:
  eal: [--no-huge, -m, "512", --no-pci, --no-shconf, --file-prefix, {PREFIX},
        --lcores, "0@0,1@1,2@1"]
  workers: [1, 2]
  flowTable: {{capacity: 65536}}
  ports:
    - {{name: wan, device: "net_af_packet0,iface={PREFIX}-wan,qpairs=2", address: 10.0.0.1/24}}
    - {{name: lan, device: "net_af_packet1,iface={PREFIX}-lan,qpairs=2", address: 10.128.0.1/24}}
  routes:
    - {{prefix: 10.4.1.0/24, via: 10.128.0.21}}
control:
  api: {{listen: 127.0.0.1:{free_tcp_port()}}}
  metrics: {{listen: 127.0.0.1:{free_tcp_port()}}}
services:
  - name: frontend
    vip: {VIPS[0]}
    ports: [{{name: http, protocol: TCP, port: 80, targetPort: 8080}}]
    backends: [{{ip: 10.4.1.11}}, {{ip: 10.4.1.12}}, {{ip: 10.4.1.13}}]
  - name: frontend-canary
    vip: {VIPS[1]}
    ports: [{{name: http, protocol: TCP, port: 80, targetPort: 8080}}]
    backends: [{{ip: 10.4.1.11}}, {{ip: 10.4.1.12}}, {{ip: 10.4.1.13}}]
"""


def topo(action):
    r = subprocess.run(["bash", "-c", f'source "{TOPO}" && topo_{action} {PREFIX}'],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, f"topo_{action} {PREFIX}:\n{r.stdout}{r.stderr}"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    if not L4LBD.is_file():
        pytest.fail(f"{L4LBD} is missing: build it first")
    work = tmp_path_factory.mktemp("multicore")
    config, log_path, stats_path = work / "l4m.yaml", work / "l4lbd.log", work / "stats.json"
    config.write_text(CONFIG)
    subprocess.run(["pkill", "-f", "l4lbd --config .*l4m.yaml"], check=False)
    topo("down")
    pods, l4lbd = [], None
    try:
        topo("up")
        for name in PODS:
            p = subprocess.Popen(["ip", "netns", "exec", f"{PREFIX}-{name}", PY,
                                  str(LIB / "pod_server.py"), "--name", name, "--tcp-port",
                                  "8080", "--udp-port", "5353"],
                                 stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            pods.append(p)
            assert "ready" in p.stdout.readline()
        with open(log_path, "w") as log:
            l4lbd = subprocess.Popen([str(L4LBD), "--config", str(config), "--stats-file",
                                      str(stats_path)], stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while "ready:" not in log_path.read_text() and time.monotonic() < deadline:
            assert l4lbd.poll() is None, log_path.read_text()
            time.sleep(0.1)
        assert "ready: 2 worker(s)" in log_path.read_text(), log_path.read_text()
        results = {}
        for vip in VIPS:
            r = subprocess.run(["ip", "netns", "exec", f"{PREFIX}-client", PY,
                                str(LIB / "client.py"), "http", "--vip", vip, "--port", "80",
                                "--count", str(PER_VIP), "--timeout", "3", "--json"],
                               capture_output=True, text=True, timeout=600)
            results[vip] = json.loads(r.stdout)
        l4lbd.send_signal(signal.SIGTERM)
        code = l4lbd.wait(timeout=20)
        stats = json.loads(stats_path.read_text())
        yield {"results": results, "exit": code, "stats": stats, "log": log_path.read_text()}
    finally:
        if l4lbd is not None and l4lbd.poll() is None:
            l4lbd.kill()
        for p in pods:
            p.terminate()
            p.wait(timeout=5)
        topo("down")


def test_every_connection_succeeds_with_the_right_peer(run):
    for vip, r in run["results"].items():
        assert r["ok"] == PER_VIP and r["failed"] == 0, (vip, r["errors"], run["log"][-2000:])
        # Replies reverse-NATed to the VIP the client dialled, never the other one.
        assert r["peers"] == [f"{vip}:80"], (vip, r["peers"])
        assert set(r["per_pod"]) == set(PODS), (vip, r["per_pod"])


def test_flows_were_handed_over_and_none_split(run):
    assert run["exit"] == 0, run["log"][-2000:]
    c, drops = run["stats"]["counters"], run["stats"]["drops"]
    print({k: v for k, v in c.items() if v}, {k: v for k, v in drops.items() if v})
    # The fanout hash ignores our owner function, so about half the packets arrive on the
    # other worker's queue.
    assert c["handoff_sent"] > 0
    assert c["handoff_sent"] == c["handoff_received"] + c["handoff_left_at_stop"]
    assert drops["handoff_full"] == 0
    # Ambiguous endpoints: every reply went through its flow entry, none was lost.
    assert c["nat_reverse_stateless"] == 0
    assert drops["no_flow"] == 0
    assert c["nat_reverse"] >= 3 * 2 * PER_VIP
    assert c["flow_insert_failed"] == 0


def test_af_packet_ports_steer_in_software(run):
    # net_af_packet has neither RSS field selection nor rte_flow: one line per port says so.
    for port, side in (("wan", "clients"), ("lan", "pods")):
        lines = [l for l in run["log"].splitlines() if f"port {port}: steering " in l]
        assert len(lines) == 1, run["log"][-3000:]
        assert f"port {port}: steering software ({side} side: rte_flow RSS rule for TCP not " \
               "created" in lines[0], lines[0]
