"""SIGHUP reload on the live end-to-end topology: a bad file keeps the running config and
logs `file:line: reason`; a good file applies at once (here: a pod leaves the Service)
while traffic keeps flowing. Uses the e2e lab (prefix l4t); run as root:

  /usr/bin/python3 -m pytest -v pmd-tests/reload_test.py
"""

import re
import signal
import subprocess
import time

import pytest

from e2e_test import (HTTP_PORT, HTTP_VIP, L4LBD, PODS, PY, UDP_PORT, UDP_VIP, Lab,
                      stop_stale_l4lbd, topo)

RELOAD_TIMEOUT_S = 10


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    if not L4LBD.is_file():
        pytest.fail(f"{L4LBD} is missing: build it first (meson compile -C build)")
    stop_stale_l4lbd()
    topo("down")
    lab = Lab(tmp_path_factory.mktemp("reload"))
    try:
        topo("up")
        lab.start_pods()
        lab.start_l4lbd()
        yield lab
    finally:
        exit_code, _ = lab.stop_l4lbd()
        lab.stop_pods()
        topo("down")
    assert exit_code == 0, f"l4lbd exit code {exit_code}:\n{lab.log_tail()}"


def sighup_and_wait(lab, needle):
    before = lab.log_path.read_text(errors="replace")
    lab.l4lbd.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + RELOAD_TIMEOUT_S
    while time.monotonic() < deadline:
        new = lab.log_path.read_text(errors="replace")[len(before):]
        if needle in new:
            return new
        time.sleep(0.1)
    raise AssertionError(f"no '{needle}' in the log {RELOAD_TIMEOUT_S} s after SIGHUP:\n"
                         f"{lab.log_tail()}")


def http(lab, count):
    r = lab.client("http", HTTP_VIP, HTTP_PORT, count, stop_after_failures=10)
    assert r["ok"] == count and r["failed"] == 0, r
    return {pod for pod, n in r["per_pod"].items() if n > 0}


def udp_from(lab, sport, count):
    """count datagrams to the UDP VIP from one fixed client port (one flow); the pods that
    answered, in order (None for no answer within 1 s)."""
    code = (
        "import socket, sys\n"
        "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
        "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
        f"s.bind(('0.0.0.0', {sport}))\n"
        "s.settimeout(1.0)\n"
        f"for i in range({count}):\n"
        f"    s.sendto(b'q', ('{UDP_VIP}', {UDP_PORT}))\n"
        "    try:\n"
        "        print(s.recv(256).decode().split()[0])\n"
        "    except socket.timeout:\n"
        "        print('None')\n")
    r = subprocess.run(["ip", "netns", "exec", f"{lab.prefix}-client", PY, "-c", code],
                       capture_output=True, text=True, timeout=count * 2 + 10)
    assert r.returncode == 0, r.stderr
    return [None if w == "None" else w for w in r.stdout.split()]


def test_bad_reload_keeps_running_config(lab):
    good = lab.config.read_text()
    assert http(lab, 60) == set(PODS)
    bad = good.replace("vip: 172.16.12.100", "vip: 172.16.12.300")
    bad_line = bad.splitlines().index("    vip: 172.16.12.300") + 1
    lab.config.write_text(bad)
    try:
        logged = sighup_and_wait(lab, "keeping generation 1")
    finally:
        lab.config.write_text(good)
    expected = (f'{lab.config}:{bad_line}: services[0].vip: "172.16.12.300" '
                "is not an IPv4 address")
    assert expected in logged, logged
    # The running Services are untouched: traffic still reaches every pod.
    assert http(lab, 60) == set(PODS)


def test_good_reload_applies_while_traffic_flows(lab):
    text = lab.config.read_text()
    smaller, n = re.subn(r",?\s*\{ip: 10\.4\.1\.13\}", "", text, count=1)
    assert n == 1, "conf/demo.yaml no longer lists 10.4.1.13 as the first Service's backend"
    lab.config.write_text(smaller)
    logged = sighup_and_wait(lab, "reloaded")
    assert "generation 2" in logged, logged
    # New flows go only to the pods still listed; none fail during or after the change.
    assert http(lab, 90) == {"pod-a", "pod-b"}


def test_reload_reaches_flows_already_forwarding(lab):
    # Packets of a known flow take the worker's fast lane, which reuses the decision of the
    # flow's first packet: a reload must still reach them. Here the flow's pod leaves the
    # Service: the next datagram is repicked to a pod still listed.
    sport = 47001
    before = udp_from(lab, sport, 6)
    assert None not in before and len(set(before)) == 1, before
    pinned = before[0]
    text = lab.config.read_text()
    dns = text.index("  - name: dns")
    pinned_ip = PODS[pinned]
    # Out of the backend list "[{ip: a}, {ip: b}, ...]" with one of its commas, whichever
    # place the pod has in it (the first has no comma before it).
    entry = r"\{ip: " + re.escape(pinned_ip) + r"\}"
    smaller, n = re.subn(r",\s*" + entry, "", text[dns:], count=1)
    if n == 0:
        smaller, n = re.subn(entry + r",?\s*", "", text[dns:], count=1)
    assert n == 1, f"the dns Service does not list {pinned_ip}"
    lab.config.write_text(text[:dns] + smaller)
    try:
        sighup_and_wait(lab, "reloaded")
        after = udp_from(lab, sport, 6)
    finally:
        lab.config.write_text(text)
        sighup_and_wait(lab, "reloaded")
    assert None not in after and len(set(after)) == 1, after
    assert after[0] != pinned, f"the flow still reaches {pinned} after it left the Service"
