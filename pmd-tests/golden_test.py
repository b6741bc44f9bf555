"""Golden pcap tests: the real l4lbd on net_pcap ports, every output packet checked.

The test writes the input pcaps with scapy into a tmp dir, runs l4lbd on `net_pcap`
vdevs (rx_pcap = our input, tx_pcap = what l4lbd sent), stops it with SIGTERM and
compares every output frame, byte for byte, with a model computed here in Python
(addresses, ports, MACs, TTL, and header/L4 checksums recomputed by scapy). Nothing
binary is committed. Run as root:

  /usr/bin/python3 -m pytest -q pmd-tests/golden_test.py

Run A (two ports, wan + lan): ARP, ICMP echo, 300 TCP flows, UDP with ClientIP
affinity, ACL, wrong ports, a Service with no backends, host traffic, TTL, VLAN, IP
options, Ethernet padding, a zero UDP checksum, MTU, >= 20 kinds of malformed frame,
and replies from backends (reverse NAT). Every drop counter must equal the number of
packets of that kind sent; every received packet is either dropped (counted) or gives
exactly one output.

Run B (one port, so the output order is exactly the input order): two Services share
the same backends and targetPort (ambiguous endpoints); B1 forwards SYNs only, B2 (a
fresh l4lbd, same config) forwards the same SYNs plus the backends' replies, which must
be reverse-NATed through the flow table to the right VIP; Maglev must pick the same
backends in both runs; a reply for a flow never opened is dropped as no_flow.

Run C (next hops resolved by ARP): C1 (wan + lan) sends 10 SYNs to a Service whose
backends lie behind a next hop with no MAC that never answers: exactly 3 ARP requests
(at once, then every 200 ms) leave lan, 8 packets are held then dropped as
neighbor_timeout, 2 as neighbor_hold_full, nothing else goes out for them (control SYNs
to a static next hop still do). C2 (one port, exact order) sends the same to a next hop
that answers with an ARP reply in the same pcap: the ARP request, then the 8 held SYNs
with the learned MAC in order, later SYNs at once; neighbor_held == neighbor_released.

L4LBD=/path/to/l4lbd overrides the binary (default: build/src/l4lbd). A missing
binary is a failure, never a skip.
"""

import json
import os
import signal
import socket
import struct
import subprocess
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from scapy.layers.inet import ICMP, IP, TCP, UDP, IPOption
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import ARP, Dot1Q, Ether
from scapy.utils import RawPcapReader, RawPcapWriter

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
L4LBD = Path(os.environ.get("L4LBD", REPO / "build" / "src" / "l4lbd"))

READY_TIMEOUT_S = 30
DRAIN_S = 2.0          # after "ready:": net_pcap reads the whole rx pcap in well under this
STOP_TIMEOUT_S = 15
EAL = '[--no-huge, -m, "512", --no-pci, --no-shconf]'

# Addresses of the test network.
WAN_MAC, LAN_MAC = "02:00:00:00:00:01", "02:00:00:00:00:02"
WAN_IP, LAN_IP = "10.0.0.1", "10.128.0.1"
GW_IP, GW_MAC = "10.0.0.254", "02:00:00:00:00:fe"       # default route, static neighbour
NODE_IP, NODE_MAC = "10.128.0.21", "02:00:00:00:00:21"  # node of pod range 10.4.1.0/24
C2_IP, C2_MAC = "10.0.0.2", "02:00:00:00:aa:02"          # on-link clients, learned by ARP
C3_IP, C3_MAC = "10.0.0.3", "02:00:00:00:aa:03"
OTHER_MAC = "02:00:00:00:00:99"

HTTP_VIP, DNS_VIP, EMPTY_VIP = "172.16.12.100", "172.16.12.101", "172.16.12.102"
HTTP_BACKENDS = ("10.4.1.11", "10.4.1.12", "10.4.1.13")
DNS_BACKENDS = ("10.4.1.21", "10.4.1.22")
MTU = 1500

TCP_FLOWS = 300
# Maglev over 3 equal backends: each should get an even third of the flows. With 300
# flows a third is 100 (sd ~ 8 for a fair pick); +-30 % of it (70..130) is far outside
# chance yet catches a skewed or stuck pick.
SPREAD_TOLERANCE = 0.30


# --------------------------------------------------------------------------- running


def write_pcap(path, frames):
    w = RawPcapWriter(str(path), linktype=1, sync=True)
    w.write_header(None)
    for i, f in enumerate(frames):
        w.write_packet(f, sec=1_700_000_000 + i // 1000, usec=(i % 1000) * 1000)
    w.close()


def read_pcap(path):
    assert path.exists(), f"{path} was not written"
    return [bytes(data) for data, _meta in RawPcapReader(str(path))]


def run_l4lbd(workdir: Path, name: str, config_text: str, inputs: dict):
    """Runs l4lbd on the given per-port input frames; returns (outputs, stats, log)."""
    assert L4LBD.exists(), f"l4lbd binary missing: {L4LBD} (meson compile -C build src/l4lbd)"
    d = workdir / name
    d.mkdir()
    for port, frames in inputs.items():
        write_pcap(d / f"{port}_in.pcap", frames)
    config = d / "l4lb.yaml"
    config.write_text(config_text.replace("@DIR@", str(d)))
    stats_path, log_path = d / "stats.json", d / "l4lbd.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen([str(L4LBD), "--config", str(config), "--stats-file",
                                 str(stats_path)], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while "ready:" not in log_path.read_text(errors="replace"):
            assert proc.poll() is None, (f"l4lbd exited with {proc.returncode} before ready:\n"
                                         f"{log_path.read_text(errors='replace')}")
            assert time.monotonic() < deadline, "l4lbd not ready in time:\n" + \
                log_path.read_text(errors="replace")
            time.sleep(0.05)
        time.sleep(DRAIN_S)
        assert proc.poll() is None, "l4lbd died while forwarding:\n" + \
            log_path.read_text(errors="replace")
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=STOP_TIMEOUT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    log = log_path.read_text(errors="replace")
    assert rc == 0, f"l4lbd exit code {rc} after SIGTERM:\n{log}"
    stats = json.loads(stats_path.read_text())
    outputs = {port: read_pcap(d / f"{port}_out.pcap") for port in inputs}
    return outputs, stats, log


def port_yaml(name, index, address, mac):
    return (f'    - {{name: {name}, device: "net_pcap{index},rx_pcap=@DIR@/{name}_in.pcap,'
            f'tx_pcap=@DIR@/{name}_out.pcap", address: {address}, mac: "{mac}"}}\n')


CONFIG_A = (
    "dataplane:\n"
    f"  eal: {EAL}\n"
    "  workers: [1]\n"
    "  flowTable: {capacity: 4096}\n"
    # TTL 0/1 stay plain drops here; malformed_test.py checks the ICMP errors l4lbd sends.
    "  icmpErrorsPerSecond: 0\n"
    "  ports:\n"
    + port_yaml("wan", 0, f"{WAN_IP}/24", WAN_MAC)
    + port_yaml("lan", 1, f"{LAN_IP}/24", LAN_MAC)
    + "  routes:\n"
    f"    - {{prefix: 10.4.1.0/24, via: {NODE_IP}}}\n"
    f"    - {{prefix: 0.0.0.0/0, via: {GW_IP}}}\n"
    "  neighbors:\n"
    f'    - {{ip: {NODE_IP}, mac: "{NODE_MAC}"}}\n'
    f'    - {{ip: {GW_IP}, mac: "{GW_MAC}"}}\n'
    "services:\n"
    "  - name: frontend\n"
    f"    vip: {HTTP_VIP}\n"
    "    ports: [{name: http, protocol: TCP, port: 80, targetPort: 8080}]\n"
    "    loadBalancerSourceRanges: [203.0.113.0/24, 10.0.0.0/24]\n"
    f"    backends: [{', '.join('{ip: %s}' % b for b in HTTP_BACKENDS)}]\n"
    "  - name: dns\n"
    f"    vip: {DNS_VIP}\n"
    "    ports: [{name: dns, protocol: UDP, port: 53, targetPort: 5353}]\n"
    "    sessionAffinity: ClientIP\n"
    f"    backends: [{', '.join('{ip: %s}' % b for b in DNS_BACKENDS)}]\n"
    "  - name: empty\n"
    f"    vip: {EMPTY_VIP}\n"
    "    ports: [{name: http, protocol: TCP, port: 80, targetPort: 8080}]\n"
    "    backends: []\n"
)


# --------------------------------------------------------------------------- model


@dataclass
class Expect:
    out_port: str
    kind: str                       # arp_reply, echo_reply, dnat, snat
    frame: Optional[bytes] = None   # the exact expected frame, or
    build: Optional[Callable[[str], bytes]] = None  # backend IP -> expected frame
    backends: tuple = ()
    flow: Optional[tuple] = None    # forward 5-tuple (dnat), for the same-backend check
    affinity: Optional[str] = None  # client IP of a ClientIP-affinity Service
    what: str = ""


@dataclass
class Model:
    inputs: dict = field(default_factory=lambda: {"wan": [], "lan": []})
    drops: Counter = field(default_factory=Counter)
    drop_examples: dict = field(default_factory=lambda: defaultdict(list))
    expect: dict = field(default_factory=dict)   # output key -> Expect
    next_id: int = 1

    def ip_id(self):
        self.next_id += 1
        assert self.next_id < 65536
        return self.next_id

    def drop(self, port, frame, reason, what=""):
        self.inputs[port].append(bytes(frame))
        self.drops[reason] += 1
        self.drop_examples[reason].append(what)

    def send(self, port, frame, key, exp):
        self.inputs[port].append(bytes(frame))
        assert key not in self.expect, f"test bug: duplicate output key {key}"
        self.expect[key] = exp


def out_key(frame):
    p = Ether(frame)
    if ARP in p:
        return ("arp", p[ARP].pdst, p[ARP].psrc)
    if IP in p:
        return ("ip", p[IP].id)
    return ("other", frame.hex())


def rebuilt(eth_dst, eth_src, ip):
    """Ether/IP frame with the IP and L4 checksums left to scapy to compute."""
    return bytes(Ether(dst=eth_dst, src=eth_src, type=0x0800) / ip)


def ip_of(frame):
    return Ether(frame)[IP].copy()


def dnat_builder(frame, out_mac, next_hop_mac, target_port, keep_zero_udp_csum=False):
    def build(backend):
        ip = ip_of(frame)
        ip.dst = backend
        ip.ttl -= 1
        del ip.chksum
        l4 = ip[TCP] if TCP in ip else ip[UDP]
        l4.dport = target_port
        if keep_zero_udp_csum:
            l4.chksum = 0
        else:
            del l4.chksum
        return rebuilt(next_hop_mac, out_mac, ip)
    return build


def snat_frame(frame, vip, vip_port, out_mac, next_hop_mac, keep_zero_udp_csum=False):
    ip = ip_of(frame)
    ip.src = vip
    ip.ttl -= 1
    del ip.chksum
    l4 = ip[TCP] if TCP in ip else ip[UDP]
    l4.sport = vip_port
    if keep_zero_udp_csum:
        l4.chksum = 0
    else:
        del l4.chksum
    return rebuilt(next_hop_mac, out_mac, ip)


def echo_reply_frame(frame, port_mac):
    p = Ether(frame)
    ip = p[IP].copy()
    ip.src, ip.dst = ip.dst, ip.src
    ip.ttl = 64
    del ip.chksum
    ip[ICMP].type = 0
    del ip[ICMP].chksum
    return rebuilt(p.src, port_mac, ip)


def arp_request(src_mac, src_ip, target_ip, dst_mac="ff:ff:ff:ff:ff:ff"):
    return bytes(Ether(dst=dst_mac, src=src_mac) /
                 ARP(op=1, hwsrc=src_mac, psrc=src_ip, hwdst="00:00:00:00:00:00",
                     pdst=target_ip))


def arp_reply_frame(req_mac, req_ip, asked_ip, port_mac):
    return bytes(Ether(dst=req_mac, src=port_mac, type=0x0806) /
                 ARP(op=2, hwsrc=port_mac, psrc=asked_ip, hwdst=req_mac, pdst=req_ip))


def raw_arp(htype=1, ptype=0x0800, hlen=6, plen=4, op=1):
    return struct.pack("!HHBBH", htype, ptype, hlen, plen, op) + \
        bytes.fromhex("02000000aa02") + bytes([10, 0, 0, 2]) + bytes(6) + bytes([10, 0, 0, 1])


def check_outputs(model, outputs):
    """Every output frame against the model; returns {key: backend chosen} for DNATs."""
    seen = {}
    problems = []
    for port, frames in outputs.items():
        for n, frame in enumerate(frames):
            key = out_key(frame)
            exp = model.expect.get(key)
            where = f"{port}_out #{n} {Ether(frame).summary()}"
            if exp is None:
                problems.append(f"unexpected output {where}: {frame.hex()}")
                continue
            if key in seen:
                problems.append(f"output twice: {exp.what} ({where})")
                continue
            if port != exp.out_port:
                problems.append(f"{exp.what}: out {port}, expected out {exp.out_port}")
            if exp.build is not None:
                backend = Ether(frame)[IP].dst
                if backend not in exp.backends:
                    problems.append(f"{exp.what}: to {backend}, not one of {exp.backends}")
                    seen[key] = backend
                    continue
                want = exp.build(backend)
            else:
                backend = None
                want = exp.frame
            if frame != want:
                problems.append(f"{exp.what}: {where}\n   got  {frame.hex()}"
                                f"\n   want {want.hex()}\n   got  {Ether(frame).summary()}"
                                f"\n   want {Ether(want).summary()}")
            seen[key] = backend
    missing = [model.expect[k].what for k in model.expect if k not in seen]
    if missing:
        problems.append(f"{len(missing)} expected outputs missing, e.g. {missing[:10]}")
    assert not problems, f"{len(problems)} output problems:\n" + "\n".join(problems[:40])
    got_kinds = Counter(model.expect[k].kind for k in seen)
    want_kinds = Counter(e.kind for e in model.expect.values())
    assert got_kinds == want_kinds
    return seen


def check_drops(stats, expected):
    labels = set(stats["drops"])
    spec_labels = {
        "eth_truncated", "vlan_truncated", "vlan_stacked", "not_our_mac", "multicast",
        "bad_src_mac", "unsupported_ethertype", "ipv6_unsupported", "arp_malformed",
        "arp_not_for_us", "ipv4_truncated", "ipv4_bad_version", "ipv4_bad_ihl",
        "ipv4_bad_total_length", "ipv4_bad_checksum", "ipv4_bad_src", "ipv4_fragment",
        "ttl_exceeded", "l4_truncated", "tcp_bad_data_offset", "udp_bad_length",
        "unsupported_proto", "host_unsupported", "icmp_unsupported", "no_service_port",
        "acl_denied", "no_backend", "no_flow", "no_route", "neighbor_hold_full",
        "neighbor_timeout", "neighbor_table_full", "tx_full", "mtu_exceeded"}
    assert spec_labels <= labels, f"drop labels missing from stats: {spec_labels - labels}"
    assert set(expected) <= labels, f"test bug: unknown labels {set(expected) - labels}"
    wrong = {r: (stats["drops"][r], expected.get(r, 0)) for r in sorted(labels)
             if stats["drops"][r] != expected.get(r, 0)}
    assert not wrong, "drop counters differ (label: (l4lbd, expected)): " + repr(wrong)
    assert stats["drops_total"] == sum(expected.values()) == sum(stats["drops"].values())


def check_ports(stats, inputs, outputs):
    for port in inputs:
        s = stats["ports"][port]
        assert s["rx_packets"] == len(inputs[port]), (port, s)
        assert s["rx_bytes"] == sum(map(len, inputs[port])), (port, s)
        assert s["tx_packets"] == len(outputs[port]), (port, s)
        assert s["tx_bytes"] == sum(map(len, outputs[port])), (port, s)
    received = sum(len(f) for f in inputs.values())
    sent = sum(len(f) for f in outputs.values())
    # No ARP requests of l4lbd's own, so every output answers or forwards one input.
    assert stats["drops_total"] + sent == received, (stats["drops_total"], sent, received)


# --------------------------------------------------------------------------- run A


def build_run_a():
    m = Model()
    wan, lan = "wan", "lan"

    def tcp(src, dst, sport, dport, flags="S", ttl=64, src_mac=GW_MAC, dst_mac=WAN_MAC,
            payload=b"", ip_id=None, **ipkw):
        return Ether(dst=dst_mac, src=src_mac) / IP(
            src=src, dst=dst, ttl=ttl, id=ip_id if ip_id is not None else m.ip_id(),
            **ipkw) / TCP(sport=sport, dport=dport, flags=flags, seq=1000 + sport,
                          ack=0 if flags == "S" else 5000) / payload

    def udp(src, dst, sport, dport, ttl=64, src_mac=GW_MAC, dst_mac=WAN_MAC,
            payload=b"query", chksum=None):
        u = UDP(sport=sport, dport=dport) if chksum is None else \
            UDP(sport=sport, dport=dport, chksum=chksum)
        return Ether(dst=dst_mac, src=src_mac) / IP(src=src, dst=dst, ttl=ttl, id=m.ip_id()) / \
            u / payload

    def client_mac(ip):
        return {C2_IP: C2_MAC, C3_IP: C3_MAC}.get(ip, GW_MAC)

    def fwd(frame, what, port=wan, flow_backends=HTTP_BACKENDS, target=8080, affinity=None,
            zero=False):
        f = bytes(frame)
        ip = Ether(f)[IP]
        l4 = ip[TCP] if TCP in ip else ip[UDP]
        m.send(port, f, ("ip", ip.id), Expect(
            out_port=lan, kind="dnat", build=dnat_builder(f, LAN_MAC, NODE_MAC, target, zero),
            backends=flow_backends, flow=(ip.proto, ip.src, l4.sport, ip.dst, l4.dport),
            affinity=affinity, what=what))

    def rev(frame, vip, vport, what, zero=False):
        f = bytes(frame)
        ip = Ether(f)[IP]
        m.send(lan, f, ("ip", ip.id), Expect(
            out_port=wan, kind="snat",
            frame=snat_frame(f, vip, vport, WAN_MAC, client_mac(ip.dst), zero), what=what))

    def arp(port, src_mac, src_ip, target, port_mac, dst_mac="ff:ff:ff:ff:ff:ff"):
        m.send(port, arp_request(src_mac, src_ip, target, dst_mac), ("arp", src_ip, target),
               Expect(out_port=port, kind="arp_reply",
                      frame=arp_reply_frame(src_mac, src_ip, target, port_mac),
                      what=f"ARP {src_ip} asks {target} on {port}"))

    def echo(port, src, src_mac, dst, port_mac):
        f = bytes(Ether(dst=port_mac, src=src_mac) /
                  IP(src=src, dst=dst, id=m.ip_id(), ttl=33) /
                  ICMP(type=8, id=0x4242, seq=len(m.inputs[port])) / b"ping-payload")
        m.send(port, f, ("ip", Ether(f)[IP].id),
               Expect(out_port=port, kind="echo_reply", frame=echo_reply_frame(f, port_mac),
                      what=f"echo {src}->{dst} on {port}"))

    # -- ARP first: the on-link clients must be learned before replies to them arrive.
    arp(wan, C2_MAC, C2_IP, WAN_IP, WAN_MAC)
    arp(wan, C2_MAC, C2_IP, HTTP_VIP, WAN_MAC)
    arp(wan, C3_MAC, C3_IP, HTTP_VIP, WAN_MAC, dst_mac=WAN_MAC)  # unicast request
    arp(wan, C3_MAC, C3_IP, DNS_VIP, WAN_MAC)
    arp(wan, C3_MAC, C3_IP, EMPTY_VIP, WAN_MAC)                  # a VIP without backends
    arp(lan, NODE_MAC, NODE_IP, LAN_IP, LAN_MAC)
    arp(lan, NODE_MAC, NODE_IP, HTTP_VIP, LAN_MAC)               # VIPs answer on any port
    m.drop(wan, arp_request(C2_MAC, C2_IP, "10.0.0.99"), "arp_not_for_us", "ARP 10.0.0.99")
    m.drop(wan, arp_request(C2_MAC, C2_IP, WAN_IP, dst_mac=OTHER_MAC), "not_our_mac",
           "ARP for us sent to another unicast MAC")
    m.drop(wan, arp_request(C2_MAC, C2_IP, WAN_IP, dst_mac="01:80:c2:00:00:0e"), "multicast",
           "ARP for us sent to a multicast MAC")
    m.drop(wan, arp_request(C3_MAC, C3_IP, "172.16.12.150"), "arp_not_for_us",
           "ARP non-VIP 172.16.12.150")

    # -- ICMP echo to port addresses and VIPs: answered out the ingress port.
    echo(wan, C2_IP, C2_MAC, WAN_IP, WAN_MAC)
    echo(wan, C2_IP, C2_MAC, HTTP_VIP, WAN_MAC)
    echo(wan, "203.0.113.9", GW_MAC, DNS_VIP, WAN_MAC)
    echo(wan, "203.0.113.9", GW_MAC, EMPTY_VIP, WAN_MAC)
    echo(wan, C3_IP, C3_MAC, LAN_IP, WAN_MAC)   # the other port's address, asked on wan
    echo(lan, NODE_IP, NODE_MAC, LAN_IP, LAN_MAC)
    echo(lan, NODE_IP, NODE_MAC, HTTP_VIP, LAN_MAC)

    # -- 300 TCP flows to frontend; the ACK of flow i comes 7 SYNs later.
    flows = []
    for i in range(TCP_FLOWS):
        src = C2_IP if i % 10 == 0 else f"203.0.113.{1 + i % 200}"
        flows.append((src, 20000 + i))

    def flow_pkt(i, flags, **kw):
        src, sport = flows[i]
        return tcp(src, HTTP_VIP, sport, 80, flags=flags, src_mac=client_mac(src), **kw)

    # Oversize (IP total length 1600 > MTU 1500) on flow 0 after its SYN, and exactly the
    # MTU (1500) on flow 1: only the first is dropped.
    big = lambda i, total: flow_pkt(i, "A", payload=b"x" * (total - 40))
    for i in range(TCP_FLOWS):
        fwd(flow_pkt(i, "S"), f"SYN flow {i} {flows[i]}")
        if i >= 7:
            fwd(flow_pkt(i - 7, "A"), f"ACK flow {i - 7} {flows[i - 7]}")
        if i == 10:
            f = big(0, 1600)
            assert len(f[IP]) == 1600
            m.drop(wan, f, "mtu_exceeded", "1600-byte packet")
            fwd(big(1, MTU), "1500-byte packet")
    for i in range(TCP_FLOWS - 7, TCP_FLOWS):
        fwd(flow_pkt(i, "A"), f"ACK flow {i}")

    # -- UDP to dns (ClientIP affinity): several clients, several ports each.
    dns_clients = [C2_IP, C3_IP] + [f"203.0.113.{50 + k}" for k in range(6)]
    dns_flows = set()
    for c in dns_clients:
        for sport in (5000, 5001, 40000, 53):
            fwd(udp(c, DNS_VIP, sport, 53, src_mac=client_mac(c)), f"dns {c}:{sport}",
                flow_backends=DNS_BACKENDS, target=5353, affinity=c)
            dns_flows.add((c, sport))
    # UDP without a checksum (0): DNATed, the checksum stays 0.
    f = udp("203.0.113.60", DNS_VIP, 999, 53, chksum=0)
    fwd(f, "dns zero checksum", flow_backends=DNS_BACKENDS, target=5353,
        affinity="203.0.113.60", zero=True)

    # -- Valid flows with a twist: one 802.1Q tag, IP options, Ethernet padding.
    vlan_syn = Ether(dst=WAN_MAC, src=GW_MAC) / Dot1Q(vlan=7) / IP(
        src="203.0.113.201", dst=HTTP_VIP, id=m.ip_id()) / TCP(sport=4444, dport=80, flags="S")
    fwd(vlan_syn, "VLAN-tagged SYN")
    opt_syn = tcp("203.0.113.202", HTTP_VIP, 4445, 80,
                  options=[IPOption(b"\x01\x01\x01\x00")])   # NOP NOP NOP EOL
    assert Ether(bytes(opt_syn))[IP].ihl == 6
    fwd(opt_syn, "SYN with IP options")
    padded = bytes(tcp("203.0.113.203", HTTP_VIP, 4446, 80)) + b"\xee" * 6   # 60-byte frame
    assert len(padded) == 60
    fwd(padded, "SYN with Ethernet padding")
    vlan_ack = Ether(dst=WAN_MAC, src=GW_MAC) / Dot1Q(vlan=7) / IP(
        src="203.0.113.201", dst=HTTP_VIP, id=m.ip_id()) / TCP(sport=4444, dport=80, flags="A")
    fwd(vlan_ack, "VLAN-tagged ACK")
    n_flows_created = TCP_FLOWS + len(dns_flows) + 1 + 3

    # -- Policy drops.
    m.drop(wan, tcp("198.51.100.7", HTTP_VIP, 1234, 80), "acl_denied", "198.51.100.7")
    m.drop(wan, tcp("192.0.2.44", HTTP_VIP, 1235, 80), "acl_denied", "192.0.2.44")
    m.drop(wan, tcp("10.0.1.5", HTTP_VIP, 1236, 80), "acl_denied", "10.0.1.5 (not 10.0.0/24)")
    m.drop(wan, tcp("203.0.113.5", HTTP_VIP, 1237, 81), "no_service_port", "tcp VIP:81")
    m.drop(wan, udp("203.0.113.5", HTTP_VIP, 1238, 80), "no_service_port", "udp VIP:80")
    m.drop(wan, tcp("203.0.113.5", DNS_VIP, 1239, 53), "no_service_port", "tcp dnsVIP:53")
    m.drop(wan, tcp("203.0.113.5", EMPTY_VIP, 1240, 81), "no_service_port", "tcp emptyVIP:81")
    m.drop(wan, tcp("203.0.113.5", EMPTY_VIP, 1241, 80), "no_backend", "empty Service")
    m.drop(wan, udp("203.0.113.5", EMPTY_VIP, 1241, 80), "no_service_port", "udp emptyVIP:80")
    m.drop(wan, tcp("203.0.113.5", "8.8.8.8", 1242, 80), "no_flow", "tcp to non-VIP")
    m.drop(wan, udp("203.0.113.5", "172.16.12.150", 1243, 53), "no_flow", "udp to non-VIP")
    m.drop(wan, Ether(dst=WAN_MAC, src=GW_MAC) / IP(src="203.0.113.5", dst="8.8.8.8",
           id=m.ip_id()) / ICMP(type=8), "no_flow", "echo to non-VIP")
    m.drop(wan, tcp("203.0.113.5", WAN_IP, 1244, 22), "host_unsupported", "tcp to wan IP")
    m.drop(wan, udp("203.0.113.5", LAN_IP, 1245, 53), "host_unsupported", "udp to lan IP")
    m.drop(lan, tcp(NODE_IP, LAN_IP, 1246, 179, src_mac=NODE_MAC, dst_mac=LAN_MAC),
           "host_unsupported", "tcp to lan IP on lan")
    m.drop(wan, Ether(dst=WAN_MAC, src=C2_MAC) / IP(src=C2_IP, dst=WAN_IP, id=m.ip_id()) /
           ICMP(type=13), "icmp_unsupported", "ICMP timestamp to wan IP")
    m.drop(wan, Ether(dst=WAN_MAC, src=C2_MAC) / IP(src=C2_IP, dst=HTTP_VIP, id=m.ip_id()) /
           ICMP(type=3, code=3) / (b"\x00" * 28), "icmp_unsupported", "ICMP unreachable to VIP")
    m.drop(wan, Ether(dst=WAN_MAC, src=C2_MAC) / IP(src=C2_IP, dst=WAN_IP, id=m.ip_id()) /
           ICMP(type=8, code=1), "icmp_unsupported", "echo with code 1")
    m.drop(wan, tcp("203.0.113.6", HTTP_VIP, 1247, 80, ttl=1), "ttl_exceeded", "TTL 1")
    m.drop(wan, tcp("203.0.113.6", HTTP_VIP, 1248, 80, ttl=0), "ttl_exceeded", "TTL 0")
    m.drop(wan, udp("203.0.113.6", DNS_VIP, 1249, 53, ttl=1), "ttl_exceeded", "UDP TTL 1")

    # -- Layer 2 drops.
    good = lambda **kw: tcp("203.0.113.7", HTTP_VIP, 1300, 80, **kw)
    m.drop(wan, good(dst_mac=OTHER_MAC), "not_our_mac", "to another MAC")
    m.drop(wan, good(dst_mac=LAN_MAC), "not_our_mac", "to the lan port's MAC on wan")
    m.drop(lan, tcp("10.4.1.11", C2_IP, 8080, 20000, flags="SA", src_mac=NODE_MAC,
                    dst_mac=WAN_MAC), "not_our_mac", "to wan's MAC on lan")
    m.drop(wan, good(dst_mac="01:00:5e:00:00:05"), "multicast", "IPv4 to multicast MAC")
    m.drop(wan, good(dst_mac="ff:ff:ff:ff:ff:ff"), "multicast", "IPv4 to broadcast MAC")
    m.drop(wan, good(src_mac="01:00:5e:00:00:01"), "bad_src_mac", "multicast source MAC")
    m.drop(wan, good(src_mac="ff:ff:ff:ff:ff:ff"), "bad_src_mac", "broadcast source MAC")
    m.drop(wan, arp_request("03:00:00:00:00:01", C2_IP, WAN_IP), "bad_src_mac",
           "ARP from a multicast MAC")
    eth = lambda t, src=GW_MAC: bytes(Ether(dst=WAN_MAC, src=src, type=t))
    m.drop(wan, eth(0x0800)[:10], "eth_truncated", "10-byte frame")
    m.drop(wan, eth(0x0800)[:13], "eth_truncated", "13-byte frame")
    m.drop(wan, eth(0x8100) + b"\x00\x07", "vlan_truncated", "half a VLAN tag")
    m.drop(wan, eth(0x88a8) + b"\x00\x07\x08", "vlan_truncated", "3 bytes of an 802.1ad tag")
    m.drop(wan, Ether(dst=WAN_MAC, src=GW_MAC) / Dot1Q(vlan=1) / Dot1Q(vlan=2) /
           IP(src="203.0.113.7", dst=HTTP_VIP) / TCP(dport=80), "vlan_stacked", "QinQ 8100")
    m.drop(wan, Ether(dst=WAN_MAC, src=GW_MAC, type=0x88a8) / Dot1Q(vlan=2, type=0x8100) /
           Dot1Q(vlan=3) / IP(src="203.0.113.7", dst=HTTP_VIP) / TCP(dport=80), "vlan_stacked",
           "QinQ 88a8 + 8100")
    m.drop(wan, eth(0x88cc) + b"\x02\x07\x04" + b"\x00" * 40, "unsupported_ethertype", "LLDP")
    m.drop(wan, eth(0x8847) + b"\x00" * 46, "unsupported_ethertype", "MPLS")
    m.drop(wan, Ether(dst=WAN_MAC, src=GW_MAC) / IPv6(src="2001:db8::1", dst="2001:db8::2") /
           UDP(dport=53), "ipv6_unsupported", "IPv6")
    m.drop(wan, Ether(dst=WAN_MAC, src=GW_MAC) / Dot1Q(vlan=3) /
           IPv6(src="2001:db8::1", dst="2001:db8::2") / TCP(dport=80), "ipv6_unsupported",
           "tagged IPv6")
    m.drop(wan, eth(0x0806, C2_MAC) + raw_arp()[:20], "arp_malformed", "ARP cut short")
    m.drop(wan, eth(0x0806, C2_MAC) + raw_arp(htype=6), "arp_malformed", "ARP htype 6")
    m.drop(wan, eth(0x0806, C2_MAC) + raw_arp(ptype=0x86dd), "arp_malformed", "ARP ptype v6")
    m.drop(wan, eth(0x0806, C2_MAC) + raw_arp(hlen=8), "arp_malformed", "ARP hlen 8")
    m.drop(wan, eth(0x0806, C2_MAC) + raw_arp(plen=16), "arp_malformed", "ARP plen 16")

    # -- IPv4 header drops (raw headers, checksums made right where the check comes later).
    def iphdr(ver_ihl=0x45, total=40, frag=0, ttl=64, proto=6, src="203.0.113.8",
              dst=HTTP_VIP, csum=None, options=b""):
        h = struct.pack("!BBHHHBBH4s4s", ver_ihl, 0, total, m.ip_id(), frag, ttl, proto, 0,
                        socket.inet_aton(src), socket.inet_aton(dst)) + options
        if csum is None:
            s = sum(struct.unpack(f"!{len(h) // 2}H", h))
            while s >> 16:
                s = (s & 0xffff) + (s >> 16)
            csum = ~s & 0xffff
        return h[:10] + struct.pack("!H", csum) + h[12:]

    tcp_seg = bytes(TCP(sport=1400, dport=80, flags="S"))   # checksum not checked by l4lbd
    e4 = eth(0x0800)
    m.drop(wan, e4 + iphdr()[:19], "ipv4_truncated", "19 bytes of IPv4")
    m.drop(wan, e4 + b"\x45", "ipv4_truncated", "1 byte of IPv4")
    m.drop(wan, e4 + iphdr(ver_ihl=0x65) + tcp_seg, "ipv4_bad_version", "version 6")
    m.drop(wan, e4 + iphdr(ver_ihl=0x05) + tcp_seg, "ipv4_bad_version", "version 0")
    m.drop(wan, e4 + iphdr(ver_ihl=0x44) + tcp_seg, "ipv4_bad_ihl", "IHL 4")
    m.drop(wan, e4 + iphdr(ver_ihl=0x4f, total=60) + tcp_seg, "ipv4_bad_ihl",
           "IHL 15 past the frame")
    m.drop(wan, e4 + iphdr(total=200) + tcp_seg, "ipv4_bad_total_length", "total > frame")
    m.drop(wan, e4 + iphdr(total=16) + tcp_seg, "ipv4_bad_total_length", "total < IHL")
    m.drop(wan, e4 + iphdr(csum=0x1234) + tcp_seg, "ipv4_bad_checksum", "bad header checksum")
    good_hdr = iphdr()
    bad = good_hdr[:10] + bytes([good_hdr[10] ^ 0x01, good_hdr[11]]) + good_hdr[12:]
    m.drop(wan, e4 + bad + tcp_seg, "ipv4_bad_checksum", "checksum off by one bit")
    for s in ("0.0.0.0", "0.1.2.3", "127.0.0.1", "224.0.0.9", "240.0.0.1", "255.255.255.255"):
        m.drop(wan, e4 + iphdr(src=s) + tcp_seg, "ipv4_bad_src", f"source {s}")
    # TCP/UDP fragments are forwarded (malformed_test.py and hostile_test.py check them);
    # other protocols' fragments and a TCP fragment at offset 8 (RFC 1858) are dropped.
    m.drop(wan, e4 + iphdr(frag=0x2000, proto=1, total=28) + b"\x08\x00\xf7\xff" + b"\x00" * 4,
           "ipv4_fragment", "ICMP, MF set")
    m.drop(wan, e4 + iphdr(frag=0x0010, proto=47) + tcp_seg, "ipv4_fragment", "GRE, offset 16")
    m.drop(wan, e4 + iphdr(frag=0x0001) + tcp_seg, "fragment_overlap", "TCP, offset 8")
    m.drop(wan, e4 + iphdr(total=30) + tcp_seg[:10], "l4_truncated", "10 bytes of TCP")
    m.drop(wan, e4 + iphdr(total=26, proto=17, dst=DNS_VIP) + b"\x13\x88\x00\x35\x00\x08",
           "l4_truncated", "6 bytes of UDP")
    m.drop(wan, e4 + iphdr(total=23, proto=1, dst=WAN_IP) + b"\x08\x00\x00", "l4_truncated",
           "3 bytes of ICMP")
    # A TCP header cut short by the IP total length, though the frame carries more.
    m.drop(wan, e4 + iphdr(total=36) + tcp_seg, "l4_truncated", "TCP cut by total length")
    for off in (4, 6, 15):
        seg = bytearray(tcp_seg)
        seg[12] = off << 4
        m.drop(wan, e4 + iphdr() + bytes(seg), "tcp_bad_data_offset", f"data offset {off}")
    udp_hdr = lambda length, payload: struct.pack("!HHHH", 5000, 53, length, 0) + payload
    m.drop(wan, e4 + iphdr(total=32, proto=17, dst=DNS_VIP) + udp_hdr(20, b"abcd"),
           "udp_bad_length", "UDP length past the payload")
    m.drop(wan, e4 + iphdr(total=32, proto=17, dst=DNS_VIP) + udp_hdr(7, b"abcd"),
           "udp_bad_length", "UDP length 7")
    m.drop(wan, e4 + iphdr(total=40, proto=47) + b"\x00" * 20, "unsupported_proto", "GRE")
    m.drop(wan, e4 + iphdr(total=40, proto=132) + b"\x00" * 20, "unsupported_proto", "SCTP")
    m.drop(wan, e4 + iphdr(total=40, proto=50, dst=WAN_IP) + b"\x00" * 20,
           "unsupported_proto", "ESP to the wan address")

    # -- lan: replies from backends. Every endpoint is unique to one Service port, so each
    # reply is reverse-NATed whether or not its flow is in the table (or was processed yet:
    # the two ports are read side by side). Replies to the on-link clients come last in
    # lan_in, well after the ARP that taught l4lbd their MACs heads wan_in.
    m.drop(lan, tcp("10.4.1.99", C2_IP, 8080, 20000, flags="SA", src_mac=NODE_MAC,
                    dst_mac=LAN_MAC), "no_flow", "from non-backend 10.4.1.99")
    m.drop(lan, tcp("10.4.1.11", C2_IP, 9090, 20000, flags="SA", src_mac=NODE_MAC,
                    dst_mac=LAN_MAC), "no_flow", "backend, wrong port")
    m.drop(lan, udp("10.4.1.11", C2_IP, 8080, 20000, src_mac=NODE_MAC, dst_mac=LAN_MAC),
           "no_flow", "backend, wrong protocol")
    m.drop(lan, tcp(NODE_IP, "203.0.113.9", 5555, 80, src_mac=NODE_MAC, dst_mac=LAN_MAC),
           "no_flow", "node to the internet (not a router)")
    n_replies = 0
    on_link = lambda ip: ip in (C2_IP, C3_IP)
    for last in (False, True):
        for i in range(TCP_FLOWS):
            src, sport = flows[i]
            # all of 10.0.0.2's flows (i % 10 == 0) and 30 of 203.0.113.x
            if i % 10 in (0, 3) and on_link(src) == last:
                backend = HTTP_BACKENDS[i % 3]
                rev(tcp(backend, src, 8080, sport, flags="SA", src_mac=NODE_MAC,
                        dst_mac=LAN_MAC), HTTP_VIP, 80, f"reply {backend} -> flow {i} {flows[i]}")
                n_replies += 1
        for k, (c, sport) in enumerate(sorted(dns_flows)):
            if k % 3 == 0 and on_link(c) == last:
                rev(udp(DNS_BACKENDS[k % 2], c, 5353, sport, src_mac=NODE_MAC, dst_mac=LAN_MAC,
                        payload=b"answer"), DNS_VIP, 53, f"dns reply to {c}:{sport}")
                n_replies += 1
        if not last:
            rev(udp(DNS_BACKENDS[1], "203.0.113.60", 5353, 999, src_mac=NODE_MAC,
                    dst_mac=LAN_MAC, chksum=0), DNS_VIP, 53, "dns reply with zero checksum",
                zero=True)
            n_replies += 1
    # A reply to an on-link client that never sent anything: stateless reverse NAT.
    rev(udp(DNS_BACKENDS[0], C3_IP, 5353, 7777, src_mac=NODE_MAC, dst_mac=LAN_MAC),
        DNS_VIP, 53, "dns reply without a flow to 10.0.0.3")
    n_replies += 1

    return m, dict(n_flows_created=n_flows_created, n_replies=n_replies, flows=flows)


def test_golden_two_ports(tmp_path):
    m, info = build_run_a()
    assert len(m.drops) >= 20 + 7   # >= 20 malformed kinds, plus policy drops
    outputs, stats, log = run_l4lbd(tmp_path, "a", CONFIG_A, m.inputs)
    seen = check_outputs(m, outputs)
    check_drops(stats, m.drops)
    check_ports(stats, m.inputs, outputs)

    # Same 5-tuple -> same backend; ClientIP affinity -> same client IP, same backend.
    by_flow, by_client = defaultdict(set), defaultdict(set)
    for key, backend in seen.items():
        e = m.expect[key]
        if e.kind == "dnat":
            by_flow[e.flow].add(backend)
            if e.affinity:
                by_client[e.affinity].add(backend)
    split = {f: b for f, b in by_flow.items() if len(b) != 1}
    assert not split, f"flows sent to several backends: {split}"
    split = {c: b for c, b in by_client.items() if len(b) != 1}
    assert not split, f"ClientIP affinity broken: {split}"

    # Spread of the 300 TCP flows over the 3 backends.
    http_flows = {f: b for f, b in by_flow.items()
                  if f[3] == HTTP_VIP and (f[1], f[2]) in set(info["flows"])}
    assert len(http_flows) == TCP_FLOWS
    spread = Counter(next(iter(b)) for b in http_flows.values())
    even = TCP_FLOWS / len(HTTP_BACKENDS)
    for b in HTTP_BACKENDS:
        assert abs(spread[b] - even) <= SPREAD_TOLERANCE * even, f"spread {dict(spread)}"

    c = stats["counters"]
    kinds = Counter(e.kind for e in m.expect.values())
    assert c["arp_requests_answered"] == kinds["arp_reply"]
    assert c["icmp_echo_replies"] == kinds["echo_reply"]
    assert c["flows_created"] == info["n_flows_created"], c
    assert c["nat_reverse"] + c["nat_reverse_stateless"] == kinds["snat"] == info["n_replies"]
    assert c["arp_requests_sent"] == 0 and c["neighbor_held"] == 0, c
    assert c["flow_insert_failed"] == 0 and c["flows_reopened"] == 0, c


# --------------------------------------------------------------------------- run B

B_VIPS = ("172.16.12.100", "172.16.12.200")
B_NODE_IP, B_NODE_MAC = "10.0.0.21", "02:00:00:00:00:21"
B_FLOWS = 60

CONFIG_B = (
    "dataplane:\n"
    f"  eal: {EAL}\n"
    "  workers: [1]\n"
    "  flowTable: {capacity: 4096}\n"
    "  ports:\n"
    + port_yaml("wan", 0, f"{WAN_IP}/24", WAN_MAC)
    + "  routes:\n"
    f"    - {{prefix: 10.4.1.0/24, via: {B_NODE_IP}}}\n"
    f"    - {{prefix: 0.0.0.0/0, via: {GW_IP}}}\n"
    "  neighbors:\n"
    f'    - {{ip: {B_NODE_IP}, mac: "{B_NODE_MAC}"}}\n'
    f'    - {{ip: {GW_IP}, mac: "{GW_MAC}"}}\n'
    "services:\n"
    + "".join(
        f"  - name: svc{k}\n"
        f"    vip: {vip}\n"
        "    ports: [{name: http, protocol: TCP, port: 80, targetPort: 8080}]\n"
        f"    backends: [{', '.join('{ip: %s}' % b for b in HTTP_BACKENDS)}]\n"
        for k, vip in enumerate(B_VIPS))
)


def b_flow(i):
    return f"203.0.113.{1 + i}", 30000 + i, B_VIPS[i % 2]


def b_syn(i):
    src, sport, vip = b_flow(i)
    return bytes(Ether(dst=WAN_MAC, src=GW_MAC) / IP(src=src, dst=vip, id=100 + i) /
                 TCP(sport=sport, dport=80, flags="S", seq=7 * i))


def b_reply(i, backend, ip_id):
    src, sport, _ = b_flow(i)
    return bytes(Ether(dst=WAN_MAC, src=B_NODE_MAC) / IP(src=backend, dst=src, id=ip_id) /
                 TCP(sport=8080, dport=sport, flags="SA", seq=99, ack=7 * i + 1))


def test_golden_ambiguous_endpoints_and_restart(tmp_path):
    # B1: SYNs only. One port: outputs come out in input order.
    syns = [b_syn(i) for i in range(B_FLOWS)]
    out1, stats1, _ = run_l4lbd(tmp_path, "b1", CONFIG_B, {"wan": syns})
    assert len(out1["wan"]) == B_FLOWS, f"B1: {len(out1['wan'])} outputs for {B_FLOWS} SYNs"
    backends1 = []
    for i, (syn, out) in enumerate(zip(syns, out1["wan"])):
        backend = Ether(out)[IP].dst
        assert backend in HTTP_BACKENDS, f"B1 flow {i}: {Ether(out).summary()}"
        want = dnat_builder(syn, WAN_MAC, B_NODE_MAC, 8080)(backend)
        assert out == want, f"B1 flow {i}:\n got  {out.hex()}\n want {want.hex()}"
        backends1.append(backend)
    assert stats1["drops_total"] == 0 and stats1["counters"]["flows_created"] == B_FLOWS
    assert len(set(backends1)) > 1, f"all flows went to one backend: {backends1}"

    # B2: fresh l4lbd, same SYNs, each flow's reply (from the backend B1 saw) three SYNs
    # later; a reply for a flow never opened at the end.
    frames, want = [], []
    pending = []
    for i in range(B_FLOWS):
        frames.append(syns[i])
        want.append(("dnat", i))
        pending.append(i)
        while pending and (pending[0] <= i - 3 or i == B_FLOWS - 1):
            j = pending.pop(0)
            frames.append(b_reply(j, backends1[j], 1000 + j))
            want.append(("snat", j))
    stray = bytes(Ether(dst=WAN_MAC, src=B_NODE_MAC) / IP(src=HTTP_BACKENDS[0],
                  dst="203.0.113.250", id=2000) / TCP(sport=8080, dport=40000, flags="SA"))
    frames.append(stray)
    out2, stats2, _ = run_l4lbd(tmp_path, "b2", CONFIG_B, {"wan": frames})
    expected = []
    for kind, i in want:
        src, sport, vip = b_flow(i)
        if kind == "dnat":
            expected.append(dnat_builder(syns[i], WAN_MAC, B_NODE_MAC, 8080)(backends1[i]))
        else:
            expected.append(snat_frame(b_reply(i, backends1[i], 1000 + i), vip, 80, WAN_MAC,
                                       GW_MAC))
    got = out2["wan"]
    assert len(got) == len(expected), f"B2: {len(got)} outputs, {len(expected)} expected"
    backends2 = [Ether(g)[IP].dst for g, (kind, _) in zip(got, want) if kind == "dnat"]
    assert backends2 == backends1, "Maglev picked differently after a restart"
    problems = [f"#{n} {want[n]}: got {Ether(g).summary() if g else None}, "
                f"want {Ether(w).summary()}"
                for n, (g, w) in enumerate(zip(got, expected)) if g != w]
    assert not problems, "B2 output differs:\n" + "\n".join(problems[:20])
    c = stats2["counters"]
    assert c["nat_reverse"] == B_FLOWS, c
    assert c["nat_reverse_stateless"] == 0, c
    check_drops(stats2, {"no_flow": 1})
    check_ports(stats2, {"wan": frames}, out2)


# --------------------------------------------------------------------------- run C

C_VIP = "172.16.12.110"
C_FLOWS = 10                      # to one unresolved next hop: 8 held, 2 over the limit
HOLD_PER_NEXT_HOP = 8
ARP_TRIES = 3
C1_NEXT_HOP = "10.128.0.99"       # on lan, never answers
C1_BACKENDS = ("10.4.9.11", "10.4.9.12", "10.4.9.13")
C2_NEXT_HOP, C2_NEXT_HOP_MAC = "10.0.0.98", "02:00:00:00:00:98"   # on wan, answers
C2_BACKENDS = ("10.4.7.11", "10.4.7.12", "10.4.7.13")


def services_yaml(*services):
    return "services:\n" + "".join(
        f"  - name: {name}\n"
        f"    vip: {vip}\n"
        "    ports: [{name: http, protocol: TCP, port: 80, targetPort: 8080}]\n"
        f"    backends: [{', '.join('{ip: %s}' % b for b in backends)}]\n"
        for name, vip, backends in services)


CONFIG_C1 = (
    "dataplane:\n"
    f"  eal: {EAL}\n"
    "  workers: [1]\n"
    "  flowTable: {capacity: 4096}\n"
    "  ports:\n"
    + port_yaml("wan", 0, f"{WAN_IP}/24", WAN_MAC)
    + port_yaml("lan", 1, f"{LAN_IP}/24", LAN_MAC)
    + "  routes:\n"
    f"    - {{prefix: 10.4.1.0/24, via: {NODE_IP}}}\n"
    f"    - {{prefix: 10.4.9.0/24, via: {C1_NEXT_HOP}}}\n"
    f"    - {{prefix: 0.0.0.0/0, via: {GW_IP}}}\n"
    "  neighbors:\n"
    f'    - {{ip: {NODE_IP}, mac: "{NODE_MAC}"}}\n'
    f'    - {{ip: {GW_IP}, mac: "{GW_MAC}"}}\n'
    + services_yaml(("frontend", HTTP_VIP, HTTP_BACKENDS), ("far", C_VIP, C1_BACKENDS))
)

CONFIG_C2 = (
    "dataplane:\n"
    f"  eal: {EAL}\n"
    "  workers: [1]\n"
    "  flowTable: {capacity: 4096}\n"
    "  ports:\n"
    + port_yaml("wan", 0, f"{WAN_IP}/24", WAN_MAC)
    + "  routes:\n"
    f"    - {{prefix: 10.4.1.0/24, via: {B_NODE_IP}}}\n"
    f"    - {{prefix: 10.4.7.0/24, via: {C2_NEXT_HOP}}}\n"
    f"    - {{prefix: 0.0.0.0/0, via: {GW_IP}}}\n"
    "  neighbors:\n"
    f'    - {{ip: {B_NODE_IP}, mac: "{B_NODE_MAC}"}}\n'
    f'    - {{ip: {GW_IP}, mac: "{GW_MAC}"}}\n'
    + services_yaml(("frontend", HTTP_VIP, HTTP_BACKENDS), ("far", C_VIP, C2_BACKENDS))
)


def c_syn(i, vip):
    return bytes(Ether(dst=WAN_MAC, src=GW_MAC) /
                 IP(src=f"203.0.113.{1 + i}", dst=vip, id=3000 + i) /
                 TCP(sport=31000 + i, dport=80, flags="S", seq=11 * i))


def check_sequence(name, got, want):
    """want: list of (what, frame) or (what, syn, out_mac, next_hop_mac, backends)."""
    problems = []
    if len(got) != len(want):
        problems.append(f"{len(got)} outputs, {len(want)} expected")
    for n, (g, w) in enumerate(zip(got, want)):
        what = w[0]
        if len(w) == 2:
            expected = w[1]
        else:
            _, syn, out_mac, nh_mac, backends = w
            backend = Ether(g)[IP].dst if IP in Ether(g) else None
            if backend not in backends:
                problems.append(f"#{n} {what}: to {backend}, not one of {backends}: "
                                f"{Ether(g).summary()}")
                continue
            expected = dnat_builder(syn, out_mac, nh_mac, 8080)(backend)
        if g != expected:
            problems.append(f"#{n} {what}:\n   got  {g.hex()}\n   want {expected.hex()}"
                            f"\n   got  {Ether(g).summary()}\n   want {Ether(expected).summary()}")
    extra = [Ether(g).summary() for g in got[len(want):]]
    assert not problems, f"{name} output differs:\n" + "\n".join(problems[:20]) + \
        (f"\n   extra outputs: {extra[:10]}" if extra else "")


def check_port_stats(stats, inputs, outputs):
    for port in inputs:
        s = stats["ports"][port]
        assert s["rx_packets"] == len(inputs[port]), (port, s)
        assert s["rx_bytes"] == sum(map(len, inputs[port])), (port, s)
        assert s["tx_packets"] == len(outputs[port]), (port, s)
        assert s["tx_bytes"] == sum(map(len, outputs[port])), (port, s)


def test_golden_neighbor_unresolved(tmp_path):
    # C1: two ports. 10 SYNs to a Service whose backends lie behind a next hop on lan
    # that has no MAC and never answers ARP; control SYNs to a static next hop around them.
    frames, lan_want = [], []
    n_ctl = 0

    def control():
        nonlocal n_ctl
        syn = c_syn(100 + n_ctl, HTTP_VIP)
        frames.append(syn)
        lan_want.append((f"control SYN {n_ctl}", syn, LAN_MAC, NODE_MAC, HTTP_BACKENDS))
        n_ctl += 1

    arp_req = arp_request(LAN_MAC, LAN_IP, C1_NEXT_HOP)
    control()
    control()
    for i in range(C_FLOWS):
        frames.append(c_syn(i, C_VIP))
        if i == 0:   # the first packet held sends the first ARP request at once
            lan_want.append(("ARP request 1 for the next hop", arp_req))
        if i == C_FLOWS // 2:
            control()
    control()
    # Retries every 200 ms, long after the whole pcap was read: 3 requests in all.
    lan_want += [(f"ARP request {k} (retry)", arp_req) for k in range(2, ARP_TRIES + 1)]

    inputs = {"wan": frames, "lan": []}
    outputs, stats, log = run_l4lbd(tmp_path, "c1", CONFIG_C1, inputs)
    assert len(arp_req) == 42 and Ether(arp_req)[ARP].op == 1
    assert outputs["wan"] == [], [Ether(f).summary() for f in outputs["wan"]]
    check_sequence("C1 lan", outputs["lan"], lan_want)
    check_drops(stats, {"neighbor_hold_full": C_FLOWS - HOLD_PER_NEXT_HOP,
                        "neighbor_timeout": HOLD_PER_NEXT_HOP})
    check_port_stats(stats, inputs, outputs)
    c = stats["counters"]
    assert c["arp_requests_sent"] == ARP_TRIES, c
    assert c["neighbor_held"] == HOLD_PER_NEXT_HOP, c
    assert c["neighbor_released"] == 0 and c["arp_learned"] == 0, c
    assert c["flows_created"] == C_FLOWS + n_ctl, c
    assert c["nat_forward"] == C_FLOWS + n_ctl, c
    assert c["arp_requests_answered"] == 0, c


def test_golden_neighbor_resolved(tmp_path):
    # C2: one port, so the output order is the input order. SYNs to a next hop with no
    # MAC (8 held, the rest dropped), a control SYN to a static next hop among them, the
    # next hop's ARP reply, then more SYNs (sent at once with the learned MAC).
    frames, want = [], []
    arp_req = arp_request(WAN_MAC, WAN_IP, C2_NEXT_HOP)
    held = []
    n_far = 0

    def far():
        nonlocal n_far
        syn = c_syn(n_far, C_VIP)
        frames.append(syn)
        n_far += 1
        return syn

    def control(k):
        syn = c_syn(100 + k, HTTP_VIP)
        frames.append(syn)
        want.append((f"control SYN {k}", syn, WAN_MAC, B_NODE_MAC, HTTP_BACKENDS))

    for i in range(C_FLOWS):
        syn = far()
        if i == 0:
            want.append(("ARP request for the next hop", arp_req))
        if i < HOLD_PER_NEXT_HOP:
            held.append((f"held SYN {i}", syn, WAN_MAC, C2_NEXT_HOP_MAC, C2_BACKENDS))
        if i == 2:
            control(0)
    frames.append(arp_reply_frame(WAN_MAC, WAN_IP, C2_NEXT_HOP, C2_NEXT_HOP_MAC))
    want += held                       # released in the order they were held
    n_after = 3
    for i in range(n_after):
        syn = far()
        want.append((f"SYN {C_FLOWS + i} after the reply", syn, WAN_MAC, C2_NEXT_HOP_MAC,
                     C2_BACKENDS))
    control(1)

    inputs = {"wan": frames}
    outputs, stats, log = run_l4lbd(tmp_path, "c2", CONFIG_C2, inputs)
    check_sequence("C2 wan", outputs["wan"], want)
    hold_full = C_FLOWS - HOLD_PER_NEXT_HOP
    check_drops(stats, {"neighbor_hold_full": hold_full})
    check_port_stats(stats, inputs, outputs)
    c = stats["counters"]
    assert c["arp_requests_sent"] == 1, c
    assert c["neighbor_held"] == c["neighbor_released"] == HOLD_PER_NEXT_HOP, c
    assert c["arp_learned"] == 1, c
    assert c["flows_created"] == n_far + 2 == c["nat_forward"], c
    # Every input but the ARP reply (consumed, not a drop) is dropped or forwarded once;
    # the ARP request is l4lbd's own.
    assert stats["drops_total"] + len(outputs["wan"]) - 1 == len(frames) - 1, \
        (stats["drops_total"], len(outputs["wan"]), len(frames))
