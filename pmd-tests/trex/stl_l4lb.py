"""TRex STL profile: 64-byte client -> VIP frames for l4lbd, the scenarios of scripts/bench.

  start -f stl_l4lb.py -t scenario=established,flows=1000 -m 100% --port 0
  tunables: scenario = established | new-flows | baseline
            flows    = distinct client ip:port for `established` (1000, 1000000)
            proto    = tcp | udp
            vip, vport, dst_mac (l4lbd's wan MAC), size (frame without FCS, >= 60)

established: ACKs of `flows` flows (client IP x port from 198.18.0.0/15, RFC 2544), each
flow seen again every `flows` packets: every packet a flow-table hit.
new-flows:   SYNs sweeping 198.18.0.0/15 x ports 1024-65535 (8.4e9 tuples before the
             first repeat): every packet a new flow (miss, Maglev pick, insert).
baseline:    the same frames as established-1k, for a MAC-swapping forwarder
             (dpdk-testpmd --forward-mode=macswap) on the same ports and cores.

Checksums: the field engine rewrites IP and port, then the NIC fills the IPv4 and TCP/UDP
checksums (STLVmFixChecksumHw), so every frame leaves with correct checksums at line rate.
Not run against TRex here: checked only with `python3 -m py_compile`.
"""
from trex_stl_lib.api import (STLProfile, STLStream, STLPktBuilder, STLTXCont, STLVmTupleGen,
                              STLVmWrFlowVar, STLVmFixChecksumHw, STLScVmRaw,
                              CTRexVmInsFixHwCs)
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether

CLIENT_FIRST, CLIENT_LAST = "198.18.0.0", "198.19.255.255"


class L4lbProfile:
    def get_streams(self, direction=0, scenario="established", flows=1000, proto="tcp",
                    vip="172.16.12.100", vport=80, dst_mac="02:00:00:00:01:01", size=60,
                    **kwargs):
        flows = int(flows)
        vport = int(vport)
        if proto == "udp":
            l4 = UDP(sport=1024, dport=vport)
            l4_name, hw_type = "UDP", CTRexVmInsFixHwCs.L4_TYPE_UDP
        else:
            flags = "S" if scenario == "new-flows" else "A"
            l4 = TCP(sport=1024, dport=vport, flags=flags, seq=0x10000000)
            l4_name, hw_type = "TCP", CTRexVmInsFixHwCs.L4_TYPE_TCP
        base = Ether(dst=dst_mac) / IP(src=CLIENT_FIRST, dst=vip, ttl=64) / l4
        pad = max(0, int(size) - len(base))
        pkt = base / (b"\x00" * pad)

        if scenario == "new-flows":
            # No limit: the tuple generator walks every IP for port 1024, then 1025, ...
            tuples = STLVmTupleGen(ip_min=CLIENT_FIRST, ip_max=CLIENT_LAST, port_min=1024,
                                   port_max=65535, name="client")
        else:
            if scenario == "baseline":
                flows = 1000
            tuples = STLVmTupleGen(ip_min=CLIENT_FIRST, ip_max=CLIENT_LAST, port_min=1024,
                                   port_max=65535, limit_flows=flows, name="client")
        vm = STLScVmRaw([
            tuples,
            STLVmWrFlowVar(fv_name="client.ip", pkt_offset="IP.src"),
            STLVmWrFlowVar(fv_name="client.port", pkt_offset=f"{l4_name}.sport"),
            STLVmFixChecksumHw(l3_offset="IP", l4_offset=l4_name, l4_type=hw_type),
        ])
        return [STLStream(packet=STLPktBuilder(pkt=pkt, vm=vm), mode=STLTXCont())]

    def get_streams_tunables(self):
        return {}


def register():
    return L4lbProfile()
