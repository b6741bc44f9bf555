"""Live capture (POST /v1/capture, l4lbctl capture) against a running l4lbd fed by scapy
over a veth pair (prefix l4c): the pcap holds exactly the packets sent to a Service (as
received, before NAT), or exactly those dropped for a reason, byte for byte; limits,
the file mode, one capture at a time, every validation error, and the capture metrics.

  /usr/bin/python3 -m pytest -v pmd-tests/capture_test.py   (as root)
"""

import json
import os
import re
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from scapy.all import IP, TCP, UDP, Ether, rdpcap, sendp

REPO = Path(__file__).resolve().parent.parent
L4LBD = Path(os.environ.get("L4LBD", REPO / "build" / "src" / "l4lbd"))
L4LBCTL = Path(os.environ.get("L4LBCTL", REPO / "build" / "src" / "l4lbctl"))
DP_IF, TX_IF = "l4c-dp", "l4c-tx"  # l4lbd's end, scapy's end
PORT_MAC, NODE_MAC, CLIENT_MAC = "02:00:00:00:0c:01", "02:00:00:00:0c:21", "02:00:00:00:0c:aa"
WEB_VIP, DNS_VIP = "172.16.40.100", "172.16.40.101"
WEB_BACKENDS = ["10.4.40.11", "10.4.40.12"]
ALLOWED, DENIED, DNS = 12, 5, 6


def sh(*cmd, check=True):
    return subprocess.run(cmd, capture_output=True, text=True, check=check)


def free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def config(api, metrics, log=""):
    return f"""
dataplane:
  eal: [--no-huge, -m, "512", --no-pci, --no-shconf, --file-prefix, l4c]
  workers: [1]
  flowTable: {{capacity: 4096}}
  ports:
    - {{name: wan, device: "net_af_packet0,iface={DP_IF}", address: 10.0.40.1/24, mac: "{PORT_MAC}"}}
  routes:
    - {{prefix: 10.4.40.0/24, via: 10.0.40.21}}
  neighbors:
    - {{ip: 10.0.40.21, mac: "{NODE_MAC}"}}
    - {{ip: 10.0.40.2, mac: "{CLIENT_MAC}"}}
control:
  api: {{listen: 127.0.0.1:{api}}}
  metrics: {{listen: 127.0.0.1:{metrics}}}
{log}
services:
  - name: web
    vip: {WEB_VIP}
    ports: [{{name: http, protocol: TCP, port: 80, targetPort: 8080}}]
    loadBalancerSourceRanges: [10.0.40.0/24]
    backends: [{', '.join('{ip: %s}' % b for b in WEB_BACKENDS)}]
  - name: dns
    vip: {DNS_VIP}
    ports: [{{name: dns, protocol: UDP, port: 53, targetPort: 5353}}]
    backends: [{{ip: 10.4.40.21}}]
"""


def base():
    return Ether(dst=PORT_MAC, src=CLIENT_MAC)


def allowed(n=ALLOWED, first=21000):
    return [base() / IP(src="10.0.40.2", dst=WEB_VIP) / TCP(sport=first + i, dport=80, flags="S")
            / (b"allowed-%04d...." % i) for i in range(n)]


def denied(n=DENIED):
    return [base() / IP(src="10.0.99.9", dst=WEB_VIP) / TCP(sport=31000 + i, dport=80, flags="S")
            / (b"denied-%04d....." % i) for i in range(n)]


def dns(n=DNS):
    return [base() / IP(src="10.0.40.2", dst=DNS_VIP) / UDP(sport=41000 + i, dport=53)
            / (b"query-%04d......" % i) for i in range(n)]


def replies(n):
    return [Ether(dst=PORT_MAC, src=NODE_MAC) / IP(src=WEB_BACKENDS[0], dst="10.0.40.2")
            / TCP(sport=8080, dport=21000 + i, flags="SA") / (b"reply-%04d......" % i)
            for i in range(n)]


def send(frames):
    sendp(frames, iface=TX_IF, verbose=False)


class Lab:
    """l4lbd on one end of a veth pair in the root namespace; scapy sends on the other."""

    def __init__(self, tmp, log_config="", args=()):
        sh("ip", "link", "del", DP_IF, check=False)
        sh("ip", "link", "add", DP_IF, "type", "veth", "peer", "name", TX_IF)
        for ifc in (DP_IF, TX_IF):
            # No IPv6 (router solicitations, MLD): the only frames are the test's.
            sh("sysctl", "-qw", f"net.ipv6.conf.{ifc}.disable_ipv6=1")
            sh("ip", "link", "set", ifc, "up")
        self.api, self.metrics = free_port(), free_port()
        self.cfg = tmp / "l4lb.yaml"
        self.cfg.write_text(config(self.api, self.metrics, log_config))
        self.log = tmp / "l4lbd.log"
        with open(self.log, "w") as f:
            self.proc = subprocess.Popen([str(L4LBD), "--config", str(self.cfg), *args],
                                         stdout=f, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while "ready:" not in self.log.read_text():
            assert self.proc.poll() is None and time.monotonic() < deadline, self.log.read_text()
            time.sleep(0.1)
        time.sleep(0.5)

    def url(self, path):
        return f"http://127.0.0.1:{self.api}{path}"

    def request(self, method, path, body=None, timeout=30):
        data = None if body is None else (body if isinstance(body, (bytes, str)) else
                                           json.dumps(body))
        if isinstance(data, str):
            data = data.encode()
        req = urllib.request.Request(self.url(path), data=data, method=method)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, dict(r.headers), r.read()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), e.read()

    def wait_capture_active(self):
        deadline = time.monotonic() + 10
        while not json.loads(self.request("GET", "/v1/capture")[2])["active"]:
            assert time.monotonic() < deadline, "the capture never started"
            time.sleep(0.05)
        time.sleep(0.1)  # the worker sees it on its next loop

    def capture_while(self, body, frames):
        """POSTs the capture, sends the frames once it runs, returns its answer."""
        out = {}
        t = threading.Thread(target=lambda: out.setdefault("r", self.request("POST", "/v1/capture", body)))
        t.start()
        self.wait_capture_active()
        send(frames)
        t.join(timeout=body.get("seconds", 10) + 20)
        assert "r" in out, "the capture did not answer"
        return out["r"]

    def scrape(self):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics}/metrics", timeout=5) as r:
            return r.read().decode()

    def stop(self):
        try:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                return self.proc.wait(timeout=15)
            return self.proc.returncode
        finally:
            sh("ip", "link", "del", DP_IF, check=False)


def metric_sum(text, name):
    return sum(float(m.group(1)) for m in re.finditer(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.M))


def frames_of(pcap_bytes, tmp, name):
    f = tmp / name
    f.write_bytes(pcap_bytes)
    return [bytes(p) for p in rdpcap(str(f))]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    assert L4LBD.is_file(), f"{L4LBD} is missing"
    tmp = tmp_path_factory.mktemp("capture")
    lab = Lab(tmp)
    lab.tmp = tmp
    try:
        yield lab
    finally:
        rc = lab.stop()
    assert rc == 0, lab.log.read_text()[-3000:]


def test_capture_by_service_has_exactly_its_packets(lab):
    before = metric_sum(lab.scrape(), "l4lb_capture_packets_total")
    want = allowed() + denied()
    status, headers, body = lab.capture_while({"service": "web", "seconds": 2},
                                              allowed() + dns() + denied())
    assert status == 200, body
    assert headers["Content-Type"] == "application/vnd.tcpdump.pcap"
    got = frames_of(body, lab.tmp, "web.pcap")
    assert got == [bytes(f) for f in want]  # as received: before NAT, in order
    assert headers["X-Capture-Packets"] == str(len(want))
    assert headers["X-Capture-Missed"] == "0"
    text = lab.scrape()
    assert metric_sum(text, "l4lb_capture_packets_total") - before == len(want)
    assert metric_sum(text, "l4lb_capture_dropped_total") == 0


def test_capture_by_drop_reason(lab):
    status, _, body = lab.capture_while({"reason": "acl_denied", "seconds": 2},
                                        allowed(first=22000) + denied() + dns())
    assert status == 200, body
    assert frames_of(body, lab.tmp, "denied.pcap") == [bytes(f) for f in denied()]
    # The same reason for another Service: none of these.
    status, _, body = lab.capture_while({"reason": "acl_denied", "service": "dns", "seconds": 1},
                                        denied() + dns())
    assert status == 200 and frames_of(body, lab.tmp, "none.pcap") == []


def test_capture_direction_replies(lab):
    send(allowed(4, first=23000))
    status, _, body = lab.capture_while(
        {"service": "web", "direction": "from_backend", "proto": "tcp", "seconds": 2},
        allowed(3, first=23100) + replies(3))
    assert status == 200, body
    assert frames_of(body, lab.tmp, "replies.pcap") == [bytes(f) for f in replies(3)]


def test_capture_count_limit_to_file(lab):
    out = lab.tmp / "dns-server.pcap"
    start = time.monotonic()
    status, _, body = lab.capture_while({"service": "dns", "count": 3, "seconds": 20,
                                         "snaplen": 64, "file": str(out)}, dns())
    assert status == 200, body
    assert time.monotonic() - start < 10  # the count ended it, not the 20 s
    answer = json.loads(body)
    assert answer["file"] == str(out) and answer["packets"] == 3
    assert answer["byReason"] == {"received": 3} and answer["missed"] == 0
    got = [bytes(p) for p in rdpcap(str(out))]
    assert got == [bytes(f)[:64] for f in dns()[:3]]


def test_one_capture_at_a_time_and_stop(lab):
    out = {}
    t = threading.Thread(target=lambda: out.setdefault(
        "r", lab.request("POST", "/v1/capture", {"service": "web", "seconds": 60})))
    t.start()
    lab.wait_capture_active()
    status, _, body = lab.request("POST", "/v1/capture", {"service": "dns"})
    assert status == 409 and json.loads(body)["error"] == "a capture is already running (one at a time)"
    start = time.monotonic()
    status, _, body = lab.request("DELETE", "/v1/capture")
    assert status == 200, body
    t.join(timeout=10)
    assert time.monotonic() - start < 5 and out["r"][0] == 200
    assert frames_of(out["r"][2], lab.tmp, "stopped.pcap") == []
    status, _, body = lab.request("DELETE", "/v1/capture")
    assert status == 404 and json.loads(body)["error"] == "no capture is running"


@pytest.mark.parametrize("body,field,error", [
    ("nope", "", "body must be a JSON object"),
    ({}, "", "give service, reason or both"),
    ({"service": "web", "limit": 1}, "limit", "unknown key \"limit\" (service, servicePort, reason, "
     "direction, proto, count, seconds, snaplen, file)"),
    ({"service": "nope"}, "service", "no Service named \"nope\""),
    ({"service": "web", "servicePort": "dns"}, "servicePort", "Service \"web\" has no port named \"dns\""),
    ({"reason": "acl_denied", "servicePort": "http"}, "servicePort", "servicePort needs service"),
    ({"service": "web", "direction": "up"}, "direction", "direction must be to_backend, from_backend or both"),
    ({"service": "web", "proto": "sctp"}, "proto", "proto must be tcp or udp"),
    ({"service": "web", "count": 0}, "count", "count must be an integer 1-100000"),
    ({"service": "web", "seconds": 301}, "seconds", "seconds must be an integer 1-300"),
    ({"service": "web", "snaplen": 4096}, "snaplen", "snaplen must be an integer 64-2048"),
    ({"service": "web", "file": "rel.pcap"}, "file", "file must be an absolute path on the server"),
    ({"service": "web", "file": "/nonexistent-dir/x.pcap"}, "file",
     "cannot write /nonexistent-dir/x.pcap: No such file or directory"),
])
def test_capture_validation(lab, body, field, error):
    status, _, answer = lab.request("POST", "/v1/capture", body)
    answer = json.loads(answer)
    assert (status, answer["error"], answer["field"]) == (400, error, field)


def test_capture_reason_error_lists_reasons(lab):
    status, _, answer = lab.request("POST", "/v1/capture", {"reason": "bogus"})
    answer = json.loads(answer)
    assert status == 400 and answer["field"] == "reason"
    assert answer["error"].startswith('reason must be "any" or one of eth_truncated, ')
    assert "acl_denied" in answer["error"]


def test_l4lbctl_capture(lab):
    out = lab.tmp / "ctl.pcap"
    proc = subprocess.Popen([str(L4LBCTL), "--server", lab.url(""), "capture", "--service", "web",
                             "--seconds", "2", "-w", str(out)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    lab.wait_capture_active()
    send(allowed(first=24000) + dns())
    stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr
    assert [bytes(p) for p in rdpcap(str(out))] == [bytes(f) for f in allowed(first=24000)]
    assert f"{ALLOWED} packets captured, 0 missed: {out}" in stderr
    rc = subprocess.run([str(L4LBCTL), "--server", lab.url(""), "capture", "--service", "nope",
                         "-w", str(out)], capture_output=True, text=True, timeout=30)
    assert rc.returncode == 1
    assert 'POST /v1/capture: 400: no Service named "nope"' in rc.stderr
