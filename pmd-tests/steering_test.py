"""Hardware steering falls back to software hand-off, logged and still correct.

Two workers on net_tap ports (tap_test.py's lab: TAPs moved into the client and node
namespaces, prefix "l4s"). net_tap advertises IPv4 TCP/UDP RSS but no SRC_ONLY/DST_ONLY
field selection, so each port tries rte_flow RSS rules; on this kernel (no tc flower)
the driver validates them and then fails to create them. l4lbd must notice, say so in
one start-up line per port, export the mode as l4lb_port_steering_info, and forward
every connection through the software hand-off with each reply reverse-NATed.
(multicore_test.py checks the same line for net_af_packet qpairs, which has no rte_flow.)

  /usr/bin/python3 -m pytest -v pmd-tests/steering_test.py
"""

import re
import urllib.request

import pytest

import tap_test
from e2e_test import stop_stale_l4lbd, topo

PREFIX = "l4s"
HTTP_COUNT = 60
UDP_COUNT = 20


def write_config(dest):
    """tap_test's config (conf/demo.yaml on TAPs), renamed to l4s, with two workers that
    share CPU 1 (correctness, not speed)."""
    tap_test.write_config(dest)
    text = dest.read_text()
    text, n = re.subn(rf"\b{tap_test.PREFIX}\b", PREFIX, text)
    assert n == 3, f"expected 2 interfaces and a file prefix named {tap_test.PREFIX}: {text}"
    text, n = re.subn(r'(eal: \[.*)\]', r'\1, --lcores, "0@0,1@1,2@1"]', text)
    assert n == 1, text
    text, n = re.subn(r"workers: \[1\]", "workers: [1, 2]", text)
    assert n == 1, text
    dest.write_text(text)
    return dest


class Lab(tap_test.Lab):
    prefix = PREFIX

    def write_config(self, dest):
        return write_config(dest)

    def start_captures(self):
        pass

    def metrics_port(self):
        m = re.search(r"metrics:\s*\{listen:\s*127\.0\.0\.1:(\d+)", self.config.read_text())
        return int(m.group(1))


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    if not tap_test.L4LBD.is_file():
        pytest.fail(f"{tap_test.L4LBD} is missing: build it first (meson compile -C build)")
    stop_stale_l4lbd(PREFIX)
    topo("down", PREFIX)
    lab = Lab(tmp_path_factory.mktemp("steering"))
    try:
        topo("up_tap", PREFIX)
        lab.start_pods()
        lab.start_l4lbd()
        topo("attach_tap", PREFIX)
        yield lab
    finally:
        exit_code, _ = lab.stop_l4lbd()
        lab.stop_pods()
        topo("down", PREFIX)
    if lab.l4lbd is not None:
        assert exit_code == 0, f"l4lbd exit code {exit_code} after SIGTERM:\n{lab.log_tail()}"


@pytest.fixture(scope="module")
def traffic(lab):
    http = lab.client("http", tap_test.HTTP_VIP, tap_test.HTTP_PORT, HTTP_COUNT,
                      stop_after_failures=10)
    udp = lab.client("udp", tap_test.UDP_VIP, tap_test.UDP_PORT, UDP_COUNT,
                     stop_after_failures=5)
    metrics = urllib.request.urlopen(f"http://127.0.0.1:{lab.metrics_port()}/metrics",
                                     timeout=10).read().decode()
    exit_code, stats = lab.stop_l4lbd()
    return {"http": http, "udp": udp, "metrics": metrics, "exit": exit_code, "stats": stats}


def test_each_port_logs_the_fallback_from_flow_rules(lab):
    log = lab.log_text()
    for port, side in (("wan", "clients"), ("lan", "pods")):
        line = re.search(rf"port {port}: steering (\S+) \(([^:]+) side: (.*)\)$", log, re.M)
        assert line, f"no steering line for {port}:\n{log}"
        mode, got_side, detail = line.groups()
        assert (mode, got_side) == ("software", side), line.group(0)
        # The rule was tried (not skipped) and its creation failed.
        assert "rte_flow RSS rule for TCP not created" in detail, line.group(0)
        assert len(re.findall(rf"port {port}: steering ", log)) == 1, log


def test_mode_is_exported(traffic):
    for port in ("wan", "lan"):
        assert f'l4lb_port_steering_info{{port="{port}",mode="software"}} 1' in \
            traffic["metrics"], [l for l in traffic["metrics"].splitlines() if "steering" in l]


def test_traffic_correct_through_software_hand_off(lab, traffic):
    http, udp = traffic["http"], traffic["udp"]
    assert http["ok"] == HTTP_COUNT and http["failed"] == 0, (http["errors"], lab.log_tail())
    assert http["peers"] == [f"{tap_test.HTTP_VIP}:{tap_test.HTTP_PORT}"], http["peers"]
    assert udp["ok"] == UDP_COUNT, (udp, lab.log_tail())
    assert traffic["exit"] == 0
    c, drops = traffic["stats"]["counters"], traffic["stats"]["drops"]
    # Nothing lost between workers; every hand-off arrived.
    # The kernel spreads flows over the TAP's two queues: some land on the other worker.
    assert c["handoff_sent"] > 0
    assert c["handoff_sent"] == c["handoff_received"] + c["handoff_left_at_stop"]
    assert drops["handoff_full"] == 0 and drops["no_flow"] == 0
    assert c["nat_reverse"] >= HTTP_COUNT * 2
