#!/usr/bin/python3
"""Writes the seed frames of fuzz_packet into fuzz/corpus/packet/ (they are committed; rerun
after changing this file). Valid frames for the Services that fuzz_packet.cc builds (the
addresses of pmd-tests/golden_test.py), some with 12 bytes of Ethernet padding, which
fuzz_packet reads as the addresses and ports of its adversarial rewrite."""

from pathlib import Path

from scapy.layers.inet import ICMP, IP, TCP, UDP, IPOption
from scapy.layers.l2 import ARP, Dot1Q, Ether

OUT = Path(__file__).resolve().parent / "corpus" / "packet"
WAN_MAC, GW_MAC, NODE_MAC = "02:00:00:00:00:01", "02:00:00:00:00:fe", "02:00:00:00:00:21"
HTTP_VIP, DNS_VIP, SHARED_VIP = "172.16.12.100", "172.16.12.101", "172.16.12.103"
PAD = bytes.fromhex("0a040b0c1f90" "ac100c64" "0050")   # 10.4.11.12:8080, 172.16.12.100:80


def eth(src=GW_MAC):
    return Ether(dst=WAN_MAC, src=src)


SEEDS = {
    "tcp_syn": eth() / IP(src="203.0.113.7", dst=HTTP_VIP) / TCP(sport=40000, dport=80, flags="S"),
    "tcp_ack_data_pad": bytes(eth() / IP(src="10.0.0.2", dst=HTTP_VIP) /
                              TCP(sport=40001, dport=80, flags="PA") / b"GET / HTTP/1.1\r\n\r\n") + PAD,
    "tcp_syn_options": eth() / IP(src="203.0.113.8", dst=HTTP_VIP, options=[IPOption(b"\x01\x01\x01\x00")]) /
                       TCP(sport=40002, dport=80, flags="S", options=[("MSS", 1460), ("SAckOK", b"")]),
    "tcp_vlan_syn": eth() / Dot1Q(vlan=7) / IP(src="203.0.113.9", dst=HTTP_VIP) /
                    TCP(sport=40003, dport=80, flags="S"),
    "tcp_reply": Ether(dst=WAN_MAC, src=NODE_MAC) / IP(src="10.4.1.12", dst="203.0.113.7") /
                 TCP(sport=8080, dport=40000, flags="SA"),
    "tcp_shared_vip": eth() / IP(src="198.51.100.1", dst=SHARED_VIP) / TCP(sport=1234, dport=80, flags="S"),
    "udp_dns_pad": bytes(eth() / IP(src="203.0.113.50", dst=DNS_VIP) / UDP(sport=5000, dport=53) /
                         b"query") + PAD,
    "udp_zero_csum": eth() / IP(src="203.0.113.60", dst=DNS_VIP) / UDP(sport=999, dport=53, chksum=0) / b"q",
    "udp_reply": Ether(dst=WAN_MAC, src=NODE_MAC) / IP(src="10.4.1.21", dst="203.0.113.50") /
                 UDP(sport=5353, dport=5000) / b"answer",
    "icmp_echo": eth() / IP(src="203.0.113.9", dst=HTTP_VIP) / ICMP(type=8, id=1, seq=1) / b"ping",
    "arp_request": Ether(dst="ff:ff:ff:ff:ff:ff", src=GW_MAC) /
                   ARP(op=1, hwsrc=GW_MAC, psrc="10.0.0.254", pdst=HTTP_VIP),
}

if __name__ == "__main__":
    OUT.mkdir(parents=True, exist_ok=True)
    for name, frame in SEEDS.items():
        (OUT / name).write_bytes(bytes(frame))
    print(f"{len(SEEDS)} seeds in {OUT}")
