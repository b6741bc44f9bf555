"""Flow affinity across reloads, on the live e2e topology (prefix l4t): flows in the
table keep their backend when the backend set changes (a pod added, weights changed,
a pod drained with weight 0), re-pick only when their backend is removed outright
(counted `flows_repicked`), and end when their Service is removed.

Each UDP "flow" is a client socket bound to a fixed source port; the pod's answer names
the pod, so the test sees which backend every flow reaches.
"""

import json
import re
import signal
import subprocess
import time

import pytest

from e2e_test import L4LBD, PREFIX, PY, Lab, stop_stale_l4lbd, topo

FLOWS = 40
BASE_PORT = 41000
UDP_VIP = "172.16.12.101"

PROBE = r"""
import json, socket, sys
ports = range(int(sys.argv[1]), int(sys.argv[1]) + int(sys.argv[2]))
seen = {}
for port in ports:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("10.0.0.2", port))
    s.settimeout(1.0)
    s.sendto(b"which pod", (sys.argv[3], 53))
    try:
        seen[port] = s.recvfrom(512)[0].decode().split()[0]
    except socket.timeout:
        seen[port] = None
    s.close()
print(json.dumps(seen))
"""


def probe(base=BASE_PORT, count=FLOWS):
    r = subprocess.run(["ip", "netns", "exec", f"{PREFIX}-client", PY, "-c", PROBE, str(base),
                        str(count), UDP_VIP], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return {int(k): v for k, v in json.loads(r.stdout).items()}


def dns_backends(text, backends):
    """Rewrites the backend list of the dns Service in the demo config."""
    new, n = re.subn(r"(name: dns\n(?:.*\n)*?\s+backends: )\[[^\]]*\]", rf"\g<1>{backends}", text)
    assert n == 1, "conf/demo.yaml: dns Service layout changed"
    return new


def reload(lab, text):
    before = lab.log_path.read_text(errors="replace")
    lab.config.write_text(text)
    lab.l4lbd.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        new = lab.log_path.read_text(errors="replace")[len(before):]
        if "reloaded" in new:
            return
        assert "reload rejected" not in new, new
        time.sleep(0.1)
    raise AssertionError("no reload:\n" + lab.log_tail())


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    if not L4LBD.is_file():
        pytest.fail(f"{L4LBD} is missing: build it first")
    stop_stale_l4lbd()
    topo("down")
    lab = Lab(tmp_path_factory.mktemp("affinity"))
    try:
        topo("up")
        lab.start_pods()
        lab.start_l4lbd()
        yield lab
    finally:
        code, stats = lab.stop_l4lbd()
        lab.stop_pods()
        topo("down")
    assert code == 0, lab.log_tail()


def test_affinity_across_reloads(lab):
    original = lab.config.read_text()
    two = dns_backends(original, "[{ip: 10.4.1.11}, {ip: 10.4.1.12}]")
    reload(lab, two)
    first = probe()
    assert None not in first.values(), first
    assert set(first.values()) == {"pod-a", "pod-b"}

    # A pod joins and weights change: Maglev would move about a third of these flows,
    # but flows in the table keep their backend.
    reload(lab, dns_backends(original,
                             "[{ip: 10.4.1.11, weight: 3}, {ip: 10.4.1.12}, {ip: 10.4.1.13}]"))
    assert probe() == first
    # New flows do reach the new pod.
    fresh = probe(BASE_PORT + 1000, FLOWS)
    assert "pod-c" in fresh.values(), fresh

    # pod-a drains (weight 0): its flows stay, new flows avoid it.
    reload(lab, dns_backends(original,
                             "[{ip: 10.4.1.11, weight: 0}, {ip: 10.4.1.12}, {ip: 10.4.1.13}]"))
    assert probe() == first
    assert "pod-a" not in probe(BASE_PORT + 2000, FLOWS).values()

    # pod-b is removed outright: only its flows move, and they are counted.
    reload(lab, dns_backends(original, "[{ip: 10.4.1.11, weight: 0}, {ip: 10.4.1.13}]"))
    after = probe()
    moved = [p for p in first if first[p] == "pod-b"]
    assert moved, "no flow was on pod-b; pick other ports"
    for port, pod in after.items():
        if first[port] == "pod-b":
            assert pod == "pod-c", (port, pod)
        else:
            assert pod == first[port], (port, pod)

    # The Service is removed: its VIP stops answering at once.
    without = re.sub(r"  - name: dns\n(?:    .*\n)+", "", original)
    assert "name: dns" not in without
    reload(lab, without)
    assert set(probe(BASE_PORT, 5).values()) == {None}

    code, stats = lab.stop_l4lbd()
    assert code == 0
    c = stats["counters"]
    assert c["flows_repicked"] == len(moved), c
    assert c["flows_orphaned"] >= 5 or stats["drops"]["no_flow"] >= 5, stats
