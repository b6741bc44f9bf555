#!/usr/bin/python3
"""Sends one UDP datagram to a VIP as IPv4 fragments in a chosen order (scapy, raw IP socket)
and waits for the echo on an ordinary UDP socket bound to the datagram's source port.
Prints JSON {"ok", "len", "peer", "error"}: ok when the echo is the datagram's payload,
whole, from VIP:port.

  ip netns exec l4f-client frag_send.py --src 10.0.0.2 --vip 172.16.14.10 --port 7000 \
      --size 4000 --fragsize 1376 --order reverse
"""
import argparse
import json
import os
import socket

from scapy.layers.inet import IP, UDP, fragment
from scapy.sendrecv import send


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--src", required=True)
    ap.add_argument("--vip", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--size", type=int, default=4000)
    ap.add_argument("--fragsize", type=int, default=1376)
    ap.add_argument("--order", choices=["forward", "reverse", "first-last"], default="reverse")
    ap.add_argument("--timeout", type=float, default=3.0)
    args = ap.parse_args()
    payload = os.urandom(args.size)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((args.src, 0))
    s.settimeout(args.timeout)
    sport = s.getsockname()[1]
    frags = fragment(IP(src=args.src, dst=args.vip, id=os.getpid() & 0xFFFF) /
                     UDP(sport=sport, dport=args.port) / payload, fragsize=args.fragsize)
    if args.order == "reverse":
        frags = frags[::-1]
    elif args.order == "first-last":
        frags = frags[1:] + frags[:1]
    send(frags, verbose=False)
    result = {"ok": False, "len": 0, "peer": None, "error": None, "fragments": len(frags)}
    try:
        data, peer = s.recvfrom(65535)
        result.update(len=len(data), peer=f"{peer[0]}:{peer[1]}",
                      ok=data == payload and peer == (args.vip, args.port))
    except OSError as e:
        result["error"] = repr(e)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
