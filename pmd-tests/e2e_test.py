"""End-to-end: the real l4lbd between network namespaces, real TCP/UDP clients and pods.

  client ns l4t-client --veth-- l4t-wan [l4lbd] l4t-lan --veth-- node ns l4t-node -- pods a/b/c

The topology is pmd-tests/lib/topo.sh with prefix "l4t" (the demo uses "l4d", so both
can run at once); the config is conf/demo.yaml with the interface names switched to
that prefix. Run as root:

  /usr/bin/python3 -m pytest -v pmd-tests/e2e_test.py

L4LBD=/path/to/l4lbd overrides the binary (default: build/src/l4lbd). A missing binary
is a failure, never a skip.
"""

import json
import os
import re
import select
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
LIB = HERE / "lib"
TOPO = LIB / "topo.sh"
L4LBD = Path(os.environ.get("L4LBD", REPO / "build" / "src" / "l4lbd"))
DEMO_CONFIG = REPO / "conf" / "demo.yaml"
PY = "/usr/bin/python3"  # the Debian Python, whatever `python3` is on PATH

PREFIX = "l4t"
PODS = {"pod-a": "10.4.1.11", "pod-b": "10.4.1.12", "pod-c": "10.4.1.13"}
CLIENT_IP = "10.0.0.2"
HTTP_VIP, HTTP_PORT = "172.16.12.100", 80
UDP_VIP, UDP_PORT = "172.16.12.101", 53
UNEXPOSED_PORT = 81

HTTP_COUNT = 300
UDP_COUNT = 20
# Maglev over 3 equal backends gives each about 1/3 of the flows (sd ~ 2.7 points for
# 300 flows); 15 % per pod is far outside chance yet catches a skewed or stuck pick.
MIN_POD_SHARE = 0.15

READY_TIMEOUT_S = 30
STOP_TIMEOUT_S = 15
PID_DIR = Path("/run/l4lb-e2e")


def topo(action, prefix=PREFIX):
    r = subprocess.run(["bash", "-c", f'source "{TOPO}" && topo_{action} {prefix}'],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, f"topo_{action} {prefix} failed:\n{r.stdout}{r.stderr}"


def free_tcp_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_config(dest):
    """conf/demo.yaml with this test's interface names and its own control ports."""
    text = DEMO_CONFIG.read_text()
    text, n = re.subn(r"iface=l4d-", f"iface={PREFIX}-", text)
    assert n == 2, f"expected two l4d-* interfaces in {DEMO_CONFIG}, found {n}"
    text = re.sub(r"(--file-prefix,\s*)l4d\b", rf"\g<1>{PREFIX}", text)
    text = re.sub(r"(listen:\s*127\.0\.0\.1:)\d+", lambda m: f"{m.group(1)}{free_tcp_port()}",
                  text)
    dest.write_text(text)
    return dest


def stop_stale_l4lbd(prefix=PREFIX):
    """An l4lbd left by an earlier, killed run of this test still holds its ports."""
    pid_file = PID_DIR / f"{prefix}.pid"
    if not pid_file.exists():
        return
    try:
        pid = int(pid_file.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except (ValueError, OSError):
        cmdline = ""
    if "l4lbd" in cmdline and f"{prefix}.yaml" in cmdline:
        os.kill(pid, signal.SIGTERM)
        for _ in range(100):
            if not Path(f"/proc/{pid}").exists():
                break
            time.sleep(0.1)
    pid_file.unlink(missing_ok=True)


def wait_for_line(proc, needle, timeout):
    """Reads proc.stdout until a line contains needle; returns what was read."""
    deadline = time.monotonic() + timeout
    seen = ""
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 0.2)
        if ready:
            line = proc.stdout.readline()
            if not line:
                break
            seen += line
            if needle in line:
                return True, seen
        elif proc.poll() is not None:
            break
    return False, seen


class Lab:
    """The running topology: pods, l4lbd, and a way to run the client in its namespace.
    Other tests reuse it with their own prefix and config (tap_test: TAP ports)."""

    prefix = PREFIX

    def __init__(self, workdir):
        self.workdir = workdir
        self.config = self.write_config(workdir / f"{self.prefix}.yaml")
        self.log_path = workdir / "l4lbd.log"
        self.stats_path = workdir / "stats.json"
        self.pods = []
        self.l4lbd = None
        self.exit_code = None
        self.stats = None

    def write_config(self, dest):
        return write_config(dest)

    def log_tail(self, lines=40):
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no l4lbd log)"

    def start_pods(self):
        for name in PODS:
            ns = f"{self.prefix}-{name}"
            err = open(self.workdir / f"{name}.log", "w")
            p = subprocess.Popen(
                ["ip", "netns", "exec", ns, PY, str(LIB / "pod_server.py"), "--name", name,
                 "--tcp-port", "8080", "--udp-port", "5353"],
                stdout=subprocess.PIPE, stderr=err, text=True)
            err.close()
            self.pods.append(p)
            ok, seen = wait_for_line(p, "ready", 10)
            assert ok, f"{name} did not start: {seen}\n{(self.workdir / f'{name}.log').read_text()}"

    def start_l4lbd(self):
        r = subprocess.run([str(L4LBD), "--check-config", str(self.config)],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, f"--check-config {self.config}: {r.stdout}{r.stderr}"
        log = open(self.log_path, "w")
        self.l4lbd = subprocess.Popen(
            [str(L4LBD), "--config", str(self.config), "--stats-file", str(self.stats_path)],
            stdout=log, stderr=subprocess.STDOUT)
        log.close()
        PID_DIR.mkdir(parents=True, exist_ok=True)
        (PID_DIR / f"{self.prefix}.pid").write_text(f"{self.l4lbd.pid}\n")
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if "ready:" in self.log_path.read_text(errors="replace"):
                return
            if self.l4lbd.poll() is not None:
                break
            time.sleep(0.1)
        raise AssertionError(f"l4lbd not ready after {READY_TIMEOUT_S} s "
                             f"(exit code {self.l4lbd.poll()}):\n{self.log_tail()}")

    def stop_l4lbd(self):
        """SIGTERM; returns (exit code, stats dict or None). Idempotent."""
        if self.l4lbd is not None and self.exit_code is None:
            if self.l4lbd.poll() is None:
                self.l4lbd.send_signal(signal.SIGTERM)
            try:
                self.exit_code = self.l4lbd.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.l4lbd.kill()
                self.l4lbd.wait()
                self.exit_code = f"still running {STOP_TIMEOUT_S} s after SIGTERM (killed)"
            (PID_DIR / f"{self.prefix}.pid").unlink(missing_ok=True)
            try:
                self.stats = json.loads(self.stats_path.read_text())
            except (OSError, ValueError):
                self.stats = None
        return self.exit_code, self.stats

    def stop_pods(self):
        for p in self.pods:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.pods:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
            if p.stdout:
                p.stdout.close()

    def client(self, kind, vip, port, count, timeout=2.0, stop_after_failures=0):
        """Runs lib/client.py in the client namespace; returns its JSON summary."""
        cmd = ["ip", "netns", "exec", f"{self.prefix}-client", PY, str(LIB / "client.py"), kind,
               "--vip", vip, "--port", str(port), "--count", str(count),
               "--timeout", str(timeout), "--json"]
        if stop_after_failures:
            cmd += ["--stop-after-failures", str(stop_after_failures)]
        r = subprocess.run(cmd, capture_output=True, text=True,
                           timeout=count * (timeout + 1) + 30)
        assert r.stdout.strip(), f"client.py printed nothing: {r.stderr}"
        return json.loads(r.stdout)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    if not L4LBD.is_file():
        pytest.fail(f"{L4LBD} is missing: build it first (meson compile -C build)")
    if os.geteuid() != 0:
        pytest.fail("needs root (network namespaces, veth, DPDK af_packet)")
    stop_stale_l4lbd()
    topo("down")  # whatever an earlier run left
    lab = Lab(tmp_path_factory.mktemp("e2e"))
    try:
        topo("up")
        lab.start_pods()
        lab.start_l4lbd()
        yield lab
    finally:
        exit_code, _ = lab.stop_l4lbd()
        lab.stop_pods()
        topo("down")
    if lab.l4lbd is not None:
        assert exit_code == 0, f"l4lbd exit code {exit_code} after SIGTERM:\n{lab.log_tail()}"


@pytest.fixture(scope="module")
def http_run(lab):
    return lab.client("http", HTTP_VIP, HTTP_PORT, HTTP_COUNT, stop_after_failures=10)


@pytest.fixture(scope="module")
def udp_run(lab):
    return lab.client("udp", UDP_VIP, UDP_PORT, UDP_COUNT, stop_after_failures=5)


@pytest.fixture(scope="module")
def unexposed_probe(lab):
    """One TCP connect to VIP:81, a port no Service exposes, given 3 s."""
    return lab.client("http", HTTP_VIP, UNEXPOSED_PORT, 1, timeout=3.0)


def test_l4lbd_binary_exists():
    assert L4LBD.is_file(), f"{L4LBD} is missing: build it first (meson compile -C build)"


def test_http_connections_all_succeed(lab, http_run):
    assert HTTP_COUNT >= 200
    assert http_run["ok"] == HTTP_COUNT and http_run["failed"] == 0, (
        f"{http_run['failed']} of {HTTP_COUNT} HTTP connections failed: {http_run['errors']} "
        f"{http_run['error_samples']}\nl4lbd log:\n{lab.log_tail()}")
    # The client closes second (the pod closes first and keeps TIME_WAIT), so its kernel may
    # reuse a source port at once: nearly all, not all, connections have their own port.
    assert http_run["source_ports_distinct"] >= 0.9 * HTTP_COUNT


def test_http_spread_over_every_pod(http_run):
    per_pod = http_run["per_pod"]
    print(f"HTTP spread over {HTTP_COUNT} flows: {per_pod} ({http_run['elapsed_s']} s)")
    assert set(per_pod) == set(PODS), f"pods used: {per_pod}"
    floor = MIN_POD_SHARE * HTTP_COUNT
    for pod, n in per_pod.items():
        assert n >= floor, f"{pod} got {n} of {HTTP_COUNT} flows (< {MIN_POD_SHARE:.0%}): {per_pod}"


def test_http_client_sees_vip_as_peer(http_run):
    assert http_run["ok"] > 0
    assert http_run["peers"] == [f"{HTTP_VIP}:{HTTP_PORT}"]


def test_pods_see_real_client_address(http_run):
    assert http_run["ok"] > 0
    assert http_run["seen_client_ips"] == [CLIENT_IP], "source address was not preserved"
    # Passthrough: only the destination is rewritten, the client's port survives too.
    assert http_run["client_port_preserved"] == http_run["ok"]


def test_udp_request_replies(lab, udp_run):
    assert udp_run["ok"] == UDP_COUNT and udp_run["failed"] == 0, (
        f"{udp_run['failed']} of {UDP_COUNT} UDP requests failed: {udp_run['errors']}\n"
        f"l4lbd log:\n{lab.log_tail()}")
    assert set(udp_run["per_pod"]) <= set(PODS)
    assert udp_run["peers"] == [f"{UDP_VIP}:{UDP_PORT}"], "replies must come from the VIP"
    assert udp_run["seen_client_ips"] == [CLIENT_IP]
    assert udp_run["client_port_preserved"] == udp_run["ok"]


def test_unexposed_port_is_dropped(unexposed_probe):
    # l4lbd owns the VIP but no Service exposes TCP/81: it drops the SYN silently (no RST),
    # so the client times out instead of being refused.
    assert unexposed_probe["ok"] == 0
    assert unexposed_probe["errors"] == {"timeout": 1}, unexposed_probe


def test_stats_after_traffic(lab, http_run, udp_run, unexposed_probe):
    """Last: stops l4lbd (SIGTERM must give exit 0) and checks the counters it wrote."""
    exit_code, stats = lab.stop_l4lbd()
    assert exit_code == 0, f"l4lbd exit code {exit_code} after SIGTERM:\n{lab.log_tail()}"
    assert stats is not None, f"no readable {lab.stats_path}"
    c, drops, ports = stats["counters"], stats["drops"], stats.get("ports", {})
    report = json.dumps(stats, indent=1)
    print("counters:", {k: v for k, v in c.items() if v})
    print("drops:", {k: v for k, v in drops.items() if v})
    print("ports:", ports)

    for reason in ("no_flow", "no_route", "ttl_exceeded", "no_backend", "acl_denied",
                   "ipv4_bad_checksum", "ipv4_truncated", "ipv4_bad_ihl",
                   "ipv4_bad_total_length", "l4_truncated", "tcp_bad_data_offset",
                   "udp_bad_length", "mtu_exceeded", "neighbor_hold_full",
                   "neighbor_timeout", "neighbor_table_full", "tx_full"):
        assert drops.get(reason, 0) == 0, f"unexpected {reason} drops:\n{report}"
    # The SYN(s) to VIP:81.
    assert drops.get("no_service_port", 0) >= 1, report
    assert unexposed_probe["errors"] == {"timeout": 1}

    http_ok, udp_ok = http_run["ok"], udp_run["ok"]
    # Each HTTP connection sends at least SYN, ACK, request, FIN to the VIP and gets at
    # least SYN-ACK, response, FIN back; each UDP request is one datagram each way.
    sent = 4 * http_ok + udp_ok
    answered = 3 * http_ok + udp_ok
    assert c["nat_forward"] >= sent, f"nat_forward {c['nat_forward']} < {sent}:\n{report}"
    reversed_ = c["nat_reverse"] + c["nat_reverse_stateless"]
    assert reversed_ >= answered, f"reverse NAT {reversed_} < {answered}:\n{report}"
    new_flows = http_run["source_ports_distinct"] + udp_run["source_ports_distinct"]
    assert c["flows_created"] >= new_flows, report
    assert c["flow_insert_failed"] == 0, report
    if "wan" in ports and "lan" in ports:
        assert ports["wan"]["rx_packets"] >= sent, report
        assert ports["lan"]["tx_packets"] >= c["nat_forward"], report
        assert ports["wan"]["tx_packets"] >= reversed_, report
