"""Prometheus metrics of the real l4lbd after a known pcap: every counter equals exactly
what was sent, the exposition passes `promtool check metrics`, and a Service removed by
a reload loses its series. One net_pcap port, so the order of packets is exact.

  /usr/bin/python3 -m pytest -v pmd-tests/metrics_test.py   (as root)
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from scapy.all import IP, TCP, UDP, Ether, wrpcap

REPO = Path(__file__).resolve().parent.parent
L4LBD = Path(os.environ.get("L4LBD", REPO / "build" / "src" / "l4lbd"))
PORT_MAC, NODE_MAC, CLIENT_MAC = "02:00:00:00:00:01", "02:00:00:00:00:21", "02:00:00:00:00:aa"
WEB_VIP, DNS_VIP = "172.16.12.100", "172.16.12.101"
WEB_BACKENDS = ["10.4.1.11", "10.4.1.12", "10.4.1.13"]
DNS_BACKENDS = ["10.4.1.21", "10.4.1.22"]
FLOWS, DENIED, WRONG_PORT, REPLIES = 90, 7, 5, 30



def pcap_dataplane(eal_prefix, pcap_in, pcap_out):
    """The dataplane block the pcap-driven tests share: one net_pcap port, the node and the
    client as static neighbours, pod ranges via the node. Ends with a newline."""
    return f"""dataplane:
  eal: [--no-huge, -m, "512", --no-pci, --no-shconf, --file-prefix, {eal_prefix}]
  workers: [1]
  flowTable: {{capacity: 4096}}
  ports:
    - {{name: wan, device: "net_pcap0,rx_pcap={pcap_in},tx_pcap={pcap_out}", address: 10.0.0.1/16, mac: "{PORT_MAC}"}}
  routes:
    - {{prefix: 10.4.0.0/16, via: 10.0.0.21}}
  neighbors:
    - {{ip: 10.0.0.21, mac: "{NODE_MAC}"}}
    - {{ip: 10.0.0.2, mac: "{CLIENT_MAC}"}}
"""

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def config(pcap_in, pcap_out, metrics_port, with_dns=True):
    dns = f"""
  - name: dns
    vip: {DNS_VIP}
    ports: [{{name: dns, protocol: UDP, port: 53, targetPort: 5353}}]
    backends: [{', '.join('{ip: %s}' % b for b in DNS_BACKENDS)}]
""" if with_dns else ""
    return f"""
{pcap_dataplane("l4metrics", pcap_in, pcap_out)}control:
  metrics: {{listen: 127.0.0.1:{metrics_port}}}
services:
  - name: web
    vip: {WEB_VIP}
    ports: [{{name: http, protocol: TCP, port: 80, targetPort: 8080}}]
    loadBalancerSourceRanges: [10.0.0.0/24]
    backends: [{', '.join('{ip: %s}' % b for b in WEB_BACKENDS)}]
{dns}"""


def frames():
    base = Ether(dst=PORT_MAC, src=CLIENT_MAC)
    out = []
    for i in range(FLOWS):  # allowed client, new flows, 64-byte IP packets
        out.append(base / IP(src="10.0.0.2", dst=WEB_VIP) / TCP(sport=20000 + i, dport=80, flags="S")
                   / (b"x" * 24))
    for i in range(DENIED):
        out.append(base / IP(src="10.0.9.9", dst=WEB_VIP) / TCP(sport=30000 + i, dport=80))
    for i in range(WRONG_PORT):
        out.append(base / IP(src="10.0.0.2", dst=WEB_VIP) / TCP(sport=31000 + i, dport=81))
    for i in range(20):
        out.append(base / IP(src="10.0.0.2", dst=DNS_VIP) / UDP(sport=40000 + i, dport=53) / b"q")
    return out


def replies(chosen):
    """Replies from the backend each flow was sent to (found in the first run's output)."""
    out = []
    for sport, backend in list(chosen.items())[:REPLIES]:
        out.append(Ether(dst=PORT_MAC, src=NODE_MAC) / IP(src=backend, dst="10.0.0.2")
                   / TCP(sport=8080, dport=sport, flags="SA"))
    return out


def scrape(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        return r.read().decode()


def value(text, name, **labels):
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    for line in text.splitlines():
        m = re.match(rf"^{name}(?:\{{(.*)\}})? (\S+)$", line)
        if m and all(f'{k}="{v}"' in (m.group(1) or "") for k, v in labels.items()):
            return float(m.group(2))
    raise AssertionError(f"no {name}{{{want}}} in the scrape")


class Running:
    def __init__(self, tmp, text):
        self.cfg = tmp / "l4lb.yaml"
        self.cfg.write_text(text)
        self.log = tmp / "l4lbd.log"
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen([str(L4LBD), "--config", str(self.cfg)], stdout=log,
                                         stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while "ready:" not in self.log.read_text():
            assert self.proc.poll() is None and time.monotonic() < deadline, self.log.read_text()
            time.sleep(0.1)
        time.sleep(2)  # net_pcap reads the whole pcap at once

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        assert self.proc.wait(timeout=15) == 0, self.log.read_text()


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    assert L4LBD.is_file(), f"{L4LBD} is missing"
    tmp = tmp_path_factory.mktemp("metrics")
    # Pass 1 learns which backend each flow gets (Maglev is deterministic across runs).
    wrpcap(str(tmp / "in1.pcap"), frames())
    first = Running(tmp, config(tmp / "in1.pcap", tmp / "out1.pcap", free_port()))
    first.stop()
    from scapy.all import rdpcap
    chosen = {p[TCP].sport: p[IP].dst for p in rdpcap(str(tmp / "out1.pcap"))
              if TCP in p and p[TCP].dport == 8080}
    assert len(chosen) == FLOWS
    wrpcap(str(tmp / "in2.pcap"), frames() + replies(chosen))
    port = free_port()
    second = Running(tmp, config(tmp / "in2.pcap", tmp / "out2.pcap", port))
    try:
        text = scrape(port)
        second.cfg.write_text(config(tmp / "in2.pcap", tmp / "out2.pcap", port, with_dns=False))
        second.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while "reloaded" not in second.log.read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
        after = scrape(port)
    finally:
        second.stop()
    yield {"text": text, "after": after, "chosen": chosen, "dir": tmp}


def test_counters_equal_what_was_sent(run):
    t, chosen = run["text"], run["chosen"]
    per_backend = {b: sum(1 for v in chosen.values() if v == b) for b in WEB_BACKENDS}
    for b, n in per_backend.items():
        labels = dict(service="web", service_port="http", backend=b)
        assert value(t, "l4lb_backend_new_flows_total", **labels) == n
        assert value(t, "l4lb_backend_packets_total", direction="to_backend", **labels) == n
        assert value(t, "l4lb_backend_bytes_total", direction="to_backend", **labels) == n * 78
        assert value(t, "l4lb_backend_active_flows", **labels) == n
    replied = list(chosen.values())[:REPLIES]
    for b in WEB_BACKENDS:
        assert value(t, "l4lb_backend_packets_total", service="web", backend=b,
                     direction="from_backend") == replied.count(b)
    svc = dict(service="web", service_port="http")
    assert value(t, "l4lb_service_port_packets_total", direction="to_backend", **svc) == FLOWS
    assert value(t, "l4lb_service_port_packets_total", direction="from_backend", **svc) == REPLIES
    assert value(t, "l4lb_service_port_new_flows_total", **svc) == FLOWS
    assert value(t, "l4lb_service_port_acl_denied_total", **svc) == DENIED
    assert value(t, "l4lb_drops_total", reason="acl_denied") == DENIED
    assert value(t, "l4lb_drops_total", reason="no_service_port") == WRONG_PORT
    assert value(t, "l4lb_service_port_new_flows_total", service="dns", service_port="dns") == 20
    total = FLOWS + DENIED + WRONG_PORT + 20 + REPLIES
    assert value(t, "l4lb_port_rx_packets_total", port="wan", queue="0") == total
    assert value(t, "l4lb_port_tx_packets_total", port="wan", queue="0") == FLOWS + 20 + REPLIES
    assert value(t, "l4lb_flow_table_entries", lcore="1") == FLOWS + 20
    assert value(t, "l4lb_config_generation") == 1
    assert value(t, "l4lb_config_reloads_total", result="success") == 0


def test_exposition_passes_promtool(run):
    promtool = shutil.which("promtool")
    assert promtool, "promtool missing (Debian package prometheus)"
    for text in (run["text"], run["after"]):
        r = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True,
                           text=True)
        assert r.returncode == 0 and r.stdout.strip() == "" and r.stderr.strip() == "", (
            r.stdout + r.stderr)


def test_removed_service_series_disappear(run):
    after = run["after"]
    assert value(after, "l4lb_config_generation") == 2
    assert value(after, "l4lb_config_reloads_total", result="success") == 1
    assert 'service="dns"' not in after
    assert 'service="web"' in after
