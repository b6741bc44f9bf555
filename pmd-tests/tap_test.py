"""End-to-end through net_tap ports: l4lbd's TX checksum offload path with real TCP/UDP.

  client ns l4p-client [TAP l4p-wan]==fd==[l4lbd]==fd==[TAP l4p-lan] node ns l4p-node -- pods a/b/c

l4lbd asks for TX checksum offload (IPv4 + TCP + UDP) on a port that offers it and
otherwise updates checksums incrementally in software. The af_packet ports of
e2e_test.py never offer it; net_tap does (the PMD computes the checksums in software
when it writes the frame to the TAP fd), so this is the test that runs the offload
path under real TCP. Nothing on the way forgives a bad checksum: the kernel receives
frames written to a TAP without a virtio-net header as CHECKSUM_NONE and verifies
IPv4, TCP and UDP checksums itself. On top of that, the test captures the forwarded
frames on both kernel ends of the TAPs and recomputes every checksum.

Layout: the same client/node/pods as e2e_test.py (pmd-tests/lib/topo.sh, prefix "l4p"
so it can run beside the "l4t" tests and the "l4d" demo), but without the wan/lan
veths: l4lbd creates TAP interfaces l4p-wan and l4p-lan itself when it starts, and
once it logs "ready:" topo_attach_tap moves them into l4p-client and l4p-node and
configures them there as the veth ends would be. The PMD keeps its fds.

The config is conf/demo.yaml with the af_packet devices swapped for
net_tapN,iface=l4p-{wan,lan} (plus explicit port MACs) and the file prefix l4p. Run as
root:

  /usr/bin/python3 -m pytest -v pmd-tests/tap_test.py

L4LBD=/path/to/l4lbd overrides the binary (default: build/src/l4lbd). A missing binary
is a failure, never a skip. Needs tcpdump (apt-get install -y tcpdump) and scapy.
"""

import json
import os
import re
import select
import signal
import subprocess
import time
from pathlib import Path

import pytest

import e2e_test
from e2e_test import free_tcp_port, stop_stale_l4lbd, topo

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
LIB = HERE / "lib"
TOPO = LIB / "topo.sh"
L4LBD = Path(os.environ.get("L4LBD", REPO / "build" / "src" / "l4lbd"))
DEMO_CONFIG = REPO / "conf" / "demo.yaml"
PY = "/usr/bin/python3"  # the Debian Python, whatever `python3` is on PATH

PREFIX = "l4p"
PODS = {"pod-a": "10.4.1.11", "pod-b": "10.4.1.12", "pod-c": "10.4.1.13"}
POD_NET = "10.4.1.0/24"
CLIENT_IP = "10.0.0.2"
HTTP_VIP, HTTP_PORT, HTTP_TARGET = "172.16.12.100", 80, 8080
UDP_VIP, UDP_PORT, UDP_TARGET = "172.16.12.101", 53, 5353
# The port MACs l4lbd is given (the TAP PMD takes them); topo_attach_tap gives the
# kernel ends of the TAPs their own (02:00:0a:00:00:02 client, 02:00:0a:80:00:15 node).
PORT_MACS = {"wan": "02:00:0a:00:00:01", "lan": "02:00:0a:80:00:01"}

HTTP_COUNT = 100
UDP_COUNT = 20
# Maglev over 3 equal backends: about 33 of 100 flows each (sd ~4.7); 10 is far outside
# chance yet catches a stuck or badly skewed pick.
MIN_POD_SHARE = 0.10
# At least this many forwarded frames must be captured and checked per direction.
MIN_CAPTURED = 20


DROP_REASONS_ZERO = (
    "ipv4_bad_checksum", "no_flow", "no_route", "ttl_exceeded", "no_backend",
    "acl_denied", "ipv4_truncated", "ipv4_bad_ihl", "ipv4_bad_total_length",
    "l4_truncated", "tcp_bad_data_offset", "udp_bad_length", "mtu_exceeded",
    "neighbor_hold_full", "neighbor_timeout", "neighbor_table_full", "tx_full",
    "no_service_port")


def write_config(dest):
    """conf/demo.yaml with net_tap ports named for this test and its own control ports."""
    text = DEMO_CONFIG.read_text()

    def to_tap(m):
        index, role = m.group(1), m.group(2)
        assert role in PORT_MACS, f"unexpected interface l4d-{role} in {DEMO_CONFIG}"
        return f'device: "net_tap{index},iface={PREFIX}-{role}", mac: "{PORT_MACS[role]}"'

    text, n = re.subn(r'device:\s*"net_af_packet(\d+),iface=l4d-(\w+)"', to_tap, text)
    assert n == 2, f"expected two net_af_packet l4d-* devices in {DEMO_CONFIG}, found {n}"
    text, n = re.subn(r"(--file-prefix,\s*)l4d\b", rf"\g<1>{PREFIX}", text)
    assert n == 1, f"expected one --file-prefix l4d in {DEMO_CONFIG}, found {n}"
    text = re.sub(r"(listen:\s*127\.0\.0\.1:)\d+", lambda m: f"{m.group(1)}{free_tcp_port()}",
                  text)
    dest.write_text(text)
    return dest


def wait_for_line(stream, proc, needle, timeout):
    """Reads stream until a line contains needle; returns (found, what was read)."""
    deadline = time.monotonic() + timeout
    seen = ""
    while time.monotonic() < deadline:
        ready, _, _ = select.select([stream], [], [], 0.2)
        if ready:
            line = stream.readline()
            if not line:
                break
            seen += line
            if needle in line:
                return True, seen
        elif proc.poll() is not None:
            break
    return False, seen


class Capture:
    """tcpdump in a namespace, writing a pcap until stopped."""

    def __init__(self, ns, ifname, bpf, path):
        self.path = path
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, "tcpdump", "-i", ifname, "-n", "-U", "--immediate-mode", "-Z", "root", "-s", "0",
             "-w", str(path), bpf],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        ok, seen = wait_for_line(self.proc.stderr, self.proc, "listening on", 10)
        if not ok:
            self.stop()
            raise AssertionError(f"tcpdump -i {ifname} in {ns} did not start: {seen}")
        self.stderr = seen

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # flushes the pcap and exits
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stderr and not self.proc.stderr.closed:
            self.stderr += self.proc.stderr.read()
            self.proc.stderr.close()
        return self.path


class Lab(e2e_test.Lab):
    """The e2e lab with l4lbd on TAPs, plus captures on the TAPs' kernel ends."""

    prefix = PREFIX

    def __init__(self, workdir):
        super().__init__(workdir)
        self.captures = []

    def write_config(self, dest):
        return write_config(dest)

    def log_text(self):
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def start_captures(self):
        """Forwarded frames as the kernel ends of the TAPs receive them from l4lbd:
        client -> pod on the node side (DNAT), VIP -> client on the client side (SNAT)."""
        self.node_capture = Capture(f"{PREFIX}-node", f"{PREFIX}-lan",
                                    f"ip and (tcp or udp) and dst net {POD_NET}",
                                    self.workdir / "node-lan.pcap")
        self.captures.append(self.node_capture)
        self.client_capture = Capture(f"{PREFIX}-client", f"{PREFIX}-wan",
                                      f"ip and (tcp or udp) and (src host {HTTP_VIP} "
                                      f"or src host {UDP_VIP})",
                                      self.workdir / "client-wan.pcap")
        self.captures.append(self.client_capture)

    def stop_captures(self):
        for c in self.captures:
            c.stop()


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    if not L4LBD.is_file():
        pytest.fail(f"{L4LBD} is missing: build it first (meson compile -C build)")
    if os.geteuid() != 0:
        pytest.fail("needs root (network namespaces, TAP devices)")
    stop_stale_l4lbd(PREFIX)
    topo("down", PREFIX)  # whatever an earlier run left
    lab = Lab(tmp_path_factory.mktemp("tap"))
    try:
        topo("up_tap", PREFIX)
        lab.start_pods()
        lab.start_l4lbd()
        topo("attach_tap", PREFIX)
        lab.start_captures()
        yield lab
    finally:
        lab.stop_captures()
        exit_code, _ = lab.stop_l4lbd()
        lab.stop_pods()
        topo("down", PREFIX)
    if lab.l4lbd is not None:
        assert exit_code == 0, f"l4lbd exit code {exit_code} after SIGTERM:\n{lab.log_tail()}"


@pytest.fixture(scope="module")
def http_run(lab):
    return lab.client("http", HTTP_VIP, HTTP_PORT, HTTP_COUNT, stop_after_failures=10)


@pytest.fixture(scope="module")
def udp_run(lab):
    return lab.client("udp", UDP_VIP, UDP_PORT, UDP_COUNT, stop_after_failures=5)


@pytest.fixture(scope="module")
def captured(lab, http_run, udp_run):
    """Stops the captures after the traffic; returns {side: [scapy packets]}."""
    from scapy.all import rdpcap  # noqa: PLC0415 (slow import, only here)

    lab.stop_captures()
    out = {}
    for side, cap in (("node", lab.node_capture), ("client", lab.client_capture)):
        assert cap.path.exists(), f"no pcap from tcpdump on the {side} side: {cap.stderr}"
        out[side] = list(rdpcap(str(cap.path)))
    return out


def ones_sum(data, start=0):
    if len(data) % 2:
        data += b"\0"
    s = start
    for i in range(0, len(data), 2):
        s += (data[i] << 8) | data[i + 1]
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s


def recompute_checksums(frame):
    """Raw Ethernet/IPv4/TCP|UDP frame -> list of (field, stored, recomputed)."""
    eth_type = int.from_bytes(frame[12:14], "big")
    assert eth_type == 0x0800, f"not untagged IPv4: ethertype {eth_type:#06x}"
    ip = bytearray(frame[14:])
    ihl = (ip[0] & 0x0F) * 4
    total = int.from_bytes(ip[2:4], "big")
    proto = ip[9]
    hdr = bytearray(ip[:ihl])
    stored_ip = int.from_bytes(hdr[10:12], "big")
    hdr[10:12] = b"\0\0"
    expect_ip = ~ones_sum(bytes(hdr)) & 0xFFFF
    l4 = bytearray(ip[ihl:total])
    off = 16 if proto == 6 else 6
    stored_l4 = int.from_bytes(l4[off:off + 2], "big")
    l4[off:off + 2] = b"\0\0"
    pseudo = bytes(ip[12:20]) + bytes([0, proto]) + len(l4).to_bytes(2, "big")
    expect_l4 = ~ones_sum(bytes(l4), ones_sum(pseudo)) & 0xFFFF
    if proto == 17 and expect_l4 == 0:
        expect_l4 = 0xFFFF  # UDP sends a computed 0 as all ones
    if proto == 6 and expect_l4 == 0 and stored_l4 == 0xFFFF:
        # One's complement has two zeros; both verify. net_tap's software TX checksum
        # writes a computed 0 as 0xffff for TCP too (about 1 frame in 65536).
        expect_l4 = 0xFFFF
    return [("ip", stored_ip, expect_ip), ("tcp" if proto == 6 else "udp", stored_l4, expect_l4)]


def check_frames(packets, side, expect):
    """Every captured frame: valid IPv4 and L4 checksums, and the NATed fields in expect."""
    from scapy.all import IP, TCP, UDP, Ether  # noqa: PLC0415

    bad, kinds = [], {"tcp": 0, "udp": 0}
    for n, pkt in enumerate(packets):
        raw = bytes(pkt)
        for field, stored, want in recompute_checksums(raw):
            if stored != want:
                bad.append(f"#{n} {pkt.summary()}: {field} checksum {stored:#06x}, "
                           f"recomputed {want:#06x}")
        # Cross-check with scapy: rebuilt with the checksums cleared, the frame must
        # come out byte for byte the same.
        e = Ether(raw)
        del e[IP].chksum
        l4 = e[TCP] if TCP in e else e[UDP]
        stored_l4 = l4.chksum
        del l4.chksum
        want_raw = raw
        if TCP in e and stored_l4 == 0xFFFF:
            # scapy writes the other zero (see recompute_checksums).
            at = 14 + (raw[14] & 0x0F) * 4 + 16
            want_raw = raw[:at] + b"\0\0" + raw[at + 2:]
        if bytes(e)[:len(raw)] not in (raw, want_raw):
            bad.append(f"#{n} {pkt.summary()}: scapy recomputes other checksums")
        kinds["tcp" if TCP in pkt else "udp"] += 1
        problem = expect(pkt)
        if problem:
            bad.append(f"#{n} {pkt.summary()}: {problem}")
    assert not bad, f"{len(bad)} bad frames of {len(packets)} on the {side} side:\n" + \
        "\n".join(bad[:20])
    return kinds


def test_l4lbd_binary_exists():
    assert L4LBD.is_file(), f"{L4LBD} is missing: build it first (meson compile -C build)"


def test_ports_use_tx_checksum_offload(lab):
    log = lab.log_text()
    for name in ("wan", "lan"):
        lines = [ln for ln in log.splitlines() if re.search(rf"\bport {name}: net_tap", ln)]
        assert lines, f"no 'port {name}: net_tap...' line in the l4lbd log:\n{lab.log_tail()}"
        assert "checksums TX offload" in lines[-1], (
            f"port {name} does not use TX checksum offload on net_tap: {lines[-1]}")


def test_http_connections_all_succeed(lab, http_run):
    assert http_run["ok"] == HTTP_COUNT and http_run["failed"] == 0, (
        f"{http_run['failed']} of {HTTP_COUNT} HTTP connections failed: {http_run['errors']} "
        f"{http_run['error_samples']}\nl4lbd log:\n{lab.log_tail()}")
    # The client closes second (the pod closes first and keeps TIME_WAIT), so its kernel may
    # reuse a source port at once: nearly all, not all, connections have their own port.
    assert http_run["source_ports_distinct"] >= 0.9 * HTTP_COUNT
    assert http_run["peers"] == [f"{HTTP_VIP}:{HTTP_PORT}"]


def test_http_spread_over_every_pod(http_run):
    per_pod = http_run["per_pod"]
    print(f"HTTP spread over {HTTP_COUNT} flows: {per_pod} ({http_run['elapsed_s']} s)")
    assert set(per_pod) == set(PODS), f"pods used: {per_pod}"
    for pod, n in per_pod.items():
        assert n >= MIN_POD_SHARE * HTTP_COUNT, f"{pod} got {n} of {HTTP_COUNT}: {per_pod}"


def test_pods_see_real_client_address(http_run, udp_run):
    assert http_run["ok"] > 0 and udp_run["ok"] > 0
    assert http_run["seen_client_ips"] == [CLIENT_IP], "source address was not preserved"
    assert http_run["client_port_preserved"] == http_run["ok"]
    assert udp_run["seen_client_ips"] == [CLIENT_IP], "source address was not preserved"
    assert udp_run["client_port_preserved"] == udp_run["ok"]


def test_udp_request_replies(lab, udp_run):
    assert udp_run["ok"] == UDP_COUNT and udp_run["failed"] == 0, (
        f"{udp_run['failed']} of {UDP_COUNT} UDP requests failed: {udp_run['errors']}\n"
        f"l4lbd log:\n{lab.log_tail()}")
    assert set(udp_run["per_pod"]) <= set(PODS)
    assert udp_run["peers"] == [f"{UDP_VIP}:{UDP_PORT}"], "replies must come from the VIP"


def test_forwarded_checksums_valid_node_side(captured):
    """Client -> pod frames as l4lbd wrote them to l4p-lan (DNAT, offloaded checksums)."""
    pod_ips = set(PODS.values())

    def expect(pkt):
        from scapy.all import IP, TCP, UDP, Ether  # noqa: PLC0415
        ip = pkt[IP]
        l4 = pkt[TCP] if TCP in pkt else pkt[UDP]
        want_port = HTTP_TARGET if TCP in pkt else UDP_TARGET
        if ip.src != CLIENT_IP or ip.dst not in pod_ips or l4.dport != want_port:
            return f"not client -> pod:{want_port}"
        if ip.ttl != 63:
            return f"TTL {ip.ttl}, expected 63 (64 decremented once)"
        if pkt[Ether].src.lower() != PORT_MACS["lan"]:
            return f"source MAC {pkt[Ether].src}, expected l4lbd's lan {PORT_MACS['lan']}"
        return None

    kinds = check_frames(captured["node"], "node", expect)
    print(f"node side: checked {kinds}")
    assert kinds["tcp"] >= MIN_CAPTURED, f"too few TCP frames captured: {kinds}"
    assert kinds["udp"] >= min(MIN_CAPTURED, UDP_COUNT), f"too few UDP frames captured: {kinds}"


def test_forwarded_checksums_valid_client_side(captured):
    """VIP -> client frames as l4lbd wrote them to l4p-wan (reverse NAT, offloaded)."""

    def expect(pkt):
        from scapy.all import IP, TCP, UDP, Ether  # noqa: PLC0415
        ip = pkt[IP]
        l4 = pkt[TCP] if TCP in pkt else pkt[UDP]
        want = (HTTP_VIP, HTTP_PORT) if TCP in pkt else (UDP_VIP, UDP_PORT)
        if (ip.src, l4.sport) != want or ip.dst != CLIENT_IP:
            return f"not {want[0]}:{want[1]} -> client"
        # The pod sends with 64, the node routes it (63), l4lbd decrements it once more.
        if ip.ttl != 62:
            return f"TTL {ip.ttl}, expected 62 (64, less the node and l4lbd)"
        if pkt[Ether].src.lower() != PORT_MACS["wan"]:
            return f"source MAC {pkt[Ether].src}, expected l4lbd's wan {PORT_MACS['wan']}"
        return None

    kinds = check_frames(captured["client"], "client", expect)
    print(f"client side: checked {kinds}")
    assert kinds["tcp"] >= MIN_CAPTURED, f"too few TCP frames captured: {kinds}"
    assert kinds["udp"] >= min(MIN_CAPTURED, UDP_COUNT), f"too few UDP frames captured: {kinds}"


def test_stats_after_traffic(lab, http_run, udp_run, captured):
    """Last: stops l4lbd (SIGTERM must give exit 0) and checks the counters it wrote."""
    exit_code, stats = lab.stop_l4lbd()
    assert exit_code == 0, f"l4lbd exit code {exit_code} after SIGTERM:\n{lab.log_tail()}"
    assert stats is not None, f"no readable {lab.stats_path}"
    c, drops, ports = stats["counters"], stats["drops"], stats.get("ports", {})
    report = json.dumps(stats, indent=1)
    print("counters:", {k: v for k, v in c.items() if v})
    print("drops:", {k: v for k, v in drops.items() if v})
    print("ports:", ports)

    for reason in DROP_REASONS_ZERO:
        assert drops.get(reason, 0) == 0, f"unexpected {reason} drops:\n{report}"

    http_ok, udp_ok = http_run["ok"], udp_run["ok"]
    sent = 4 * http_ok + udp_ok
    answered = 3 * http_ok + udp_ok
    assert c["nat_forward"] >= sent, f"nat_forward {c['nat_forward']} < {sent}:\n{report}"
    reversed_ = c["nat_reverse"] + c.get("nat_reverse_stateless", 0)
    assert reversed_ >= answered, f"reverse NAT {reversed_} < {answered}:\n{report}"
    assert c["flows_created"] >= http_run["source_ports_distinct"] + \
        udp_run["source_ports_distinct"], report
    assert c.get("flow_insert_failed", 0) == 0, report
    if "wan" in ports and "lan" in ports:
        assert ports["wan"]["rx_packets"] >= sent, report
        assert ports["lan"]["tx_packets"] >= c["nat_forward"], report
        assert ports["wan"]["tx_packets"] >= reversed_, report
