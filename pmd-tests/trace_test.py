"""The packet tracer (GET /v1/trace, l4lbctl trace) against a running l4lbd whose flows
came from a known pcap: the trace runs the worker's own forwarding code in trace mode,
so it must agree with what the data path did to the same packets.

  /usr/bin/python3 -m pytest -v pmd-tests/trace_test.py   (as root)
"""

import json
import os
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from scapy.all import IP, TCP, Ether, rdpcap, wrpcap

from metrics_test import CLIENT_MAC, NODE_MAC, PORT_MAC, WEB_BACKENDS, WEB_VIP, free_port, pcap_dataplane

REPO = Path(__file__).resolve().parent.parent
L4LBD = Path(os.environ.get("L4LBD", REPO / "build" / "src" / "l4lbd"))
L4LBCTL = Path(os.environ.get("L4LBCTL", REPO / "build" / "src" / "l4lbctl"))
FLOWS = 20


def config(pcap_in, pcap_out, api_port):
    return f"""
{pcap_dataplane("l4trace", pcap_in, pcap_out)}control:
  api: {{listen: 127.0.0.1:{api_port}}}
  metrics: {{listen: 127.0.0.1:0}}
services:
  - name: web
    vip: {WEB_VIP}
    ports: [{{name: http, protocol: TCP, port: 80, targetPort: 8080}}]
    loadBalancerSourceRanges: [10.0.0.0/24, 10.0.5.0/24]
    backends: [{', '.join('{ip: %s}' % b for b in WEB_BACKENDS)}]
"""


def trace(api, **q):
    url = f"http://127.0.0.1:{api}/v1/trace?" + "&".join(f"{k}={v}" for k, v in q.items())
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.loads(r.read())


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    assert L4LBD.is_file(), f"{L4LBD} is missing"
    tmp = tmp_path_factory.mktemp("trace")
    frames = [Ether(dst=PORT_MAC, src=CLIENT_MAC) / IP(src="10.0.0.2", dst=WEB_VIP)
              / TCP(sport=20000 + i, dport=80, flags="S") for i in range(FLOWS)]
    wrpcap(str(tmp / "in.pcap"), frames)
    api = free_port()
    cfg = tmp / "l4lb.yaml"
    cfg.write_text(config(tmp / "in.pcap", tmp / "out.pcap", api))
    log = tmp / "l4lbd.log"
    with open(log, "w") as f:
        proc = subprocess.Popen([str(L4LBD), "--config", str(cfg)], stdout=f,
                                stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while "ready:" not in log.read_text():
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        time.sleep(2)
        yield {"api": api, "tmp": tmp, "proc": proc, "log": log}
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0, log.read_text()


def test_trace_agrees_with_the_data_path(run):
    # The out pcap is only complete at exit; ask the tracer first, compare after.
    traces = {i: trace(run["api"], proto="tcp", src="10.0.0.2", sport=20000 + i,
                       dst=WEB_VIP, dport=80) for i in range(FLOWS)}
    for t in traces.values():
        flow = [s for s in t["steps"] if s["step"] == "flow"][0]
        assert flow["result"] == "hit", t
        assert flow["state"] == "syn_sent"
        assert t["verdict"] == "forward"
        assert t["output"]["port"] == "wan" and t["output"]["dport"] == 8080
        assert t["output"]["dstMac"] == NODE_MAC and t["output"]["ttl"] == 63
        assert t["output"]["dst"] == flow["backend"]
    run["proc"].send_signal(signal.SIGTERM)
    assert run["proc"].wait(timeout=15) == 0
    sent = {p[TCP].sport: p[IP].dst for p in rdpcap(str(run["tmp"] / "out.pcap"))}
    assert len(sent) == FLOWS
    for i, t in traces.items():
        assert t["output"]["dst"] == sent[20000 + i], (i, t)


def test_new_flow_shows_the_maglev_pick_and_acl_range(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("trace2")
    wrpcap(str(tmp / "in.pcap"), [])
    api = free_port()
    cfg = tmp / "l4lb.yaml"
    cfg.write_text(config(tmp / "in.pcap", tmp / "out.pcap", api))
    log = tmp / "l4lbd.log"
    with open(log, "w") as f:
        proc = subprocess.Popen([str(L4LBD), "--config", str(cfg)], stdout=f,
                                stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while "ready:" not in log.read_text():
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        t = trace(api, proto="tcp", src="10.0.5.9", sport=1234, dst=WEB_VIP, dport=80)
        steps = {s["step"]: s for s in t["steps"]}
        assert steps["service_port"]["match"] == "web/http"
        assert steps["acl"] == {"step": "acl", "allowed": True, "range": 1}
        assert steps["flow"]["result"] == "miss"
        assert steps["maglev"]["backend"] in WEB_BACKENDS
        assert steps["nat"]["to"] == steps["maglev"]["backend"] + ":8080"
        assert t["verdict"] == "forward" and t["output"]["dst"] == steps["maglev"]["backend"]
        # Same tuple, same answer; and nothing was inserted by tracing.
        again = trace(api, proto="tcp", src="10.0.5.9", sport=1234, dst=WEB_VIP, dport=80)
        assert [s for s in again["steps"] if s["step"] == "flow"][0]["result"] == "miss"
        assert again["output"] == t["output"]

        denied = trace(api, proto="tcp", src="192.0.2.9", sport=1, dst=WEB_VIP, dport=80)
        assert denied["verdict"] == "drop" and denied["dropReason"] == "acl_denied"
        assert {"step": "acl", "allowed": False, "range": None} in denied["steps"]
        wrong = trace(api, proto="udp", src="10.0.0.2", sport=1, dst=WEB_VIP, dport=80)
        assert wrong["dropReason"] == "no_service_port"
        stray = trace(api, proto="tcp", src="10.4.1.99", sport=8080, dst="10.0.0.2", dport=5)
        assert stray["dropReason"] == "no_flow"
        reply = trace(api, proto="tcp", src=WEB_BACKENDS[0], sport=8080, dst="10.0.0.2",
                      dport=5)
        assert reply["verdict"] == "forward"  # unique endpoint: stateless reverse NAT
        assert reply["output"]["src"] == WEB_VIP and reply["output"]["sport"] == 80
        assert reply["output"]["dstMac"] == CLIENT_MAC
        unknown = trace(api, proto="tcp", src=WEB_BACKENDS[0], sport=8080, dst="10.0.0.3",
                        dport=5)
        assert unknown["verdict"].startswith("hold")  # would ARP for 10.0.0.3 first
        assert {"step": "neighbor", "ip": "10.0.0.3", "resolved": False} in unknown["steps"]

        # l4lbctl trace prints the same document.
        r = subprocess.run([str(L4LBCTL), "--server", f"http://127.0.0.1:{api}", "trace",
                            "--proto", "tcp", "--src", "10.0.5.9", "--sport", "1234",
                            "--dst", WEB_VIP, "--dport", "80", "-o", "json"],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["output"] == t["output"]

        for bad in ({"proto": "icmp"}, {"src": "1.2.3"}, {"sport": "0"}, {"port": "nope"}):
            q = dict(proto="tcp", src="10.0.0.2", sport=1, dst=WEB_VIP, dport=80)
            q.update(bad)
            try:
                trace(api, **q)
                raise AssertionError(f"{bad} was accepted")
            except urllib.error.HTTPError as e:
                assert e.code == 400
                assert "error" in json.loads(e.read())
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0, log.read_text()
