#!/usr/bin/python3
"""SYN flood from random spoofed sources, for the hostile-input runs: prebuilt Ethernet
frames sent as fast as one Python thread can through an AF_PACKET socket.

  ip netns exec l4f-client syn_flood.py --iface eth0 --dst-mac 02:.. --vip 172.16.14.11 \
      --port 9000 --count 60000 --net 198.18.0.0

Paced with --rate. Sources are random in 198.18.0.0/15 (RFC 2544's benchmark range) with random ports. Prints
"sending" once the frames are built, then JSON {"sent", "seconds"}.
"""
import argparse
import json
import random
import socket
import struct
import time

from inet_checksum import csum  # this script's folder is first on sys.path


def frame(dst_mac, src_mac, src, dst, sport, dport, seq):
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq, 0, 5 << 4, 0x02, 64240, 0, 0)
    pseudo = src + dst + struct.pack("!BBH", 0, 6, len(tcp))
    tcp = tcp[:16] + struct.pack("!H", csum(pseudo + tcp)) + tcp[18:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40, seq & 0xFFFF, 0, 64, 6, 0, src, dst)
    ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
    return dst_mac + src_mac + b"\x08\x00" + ip + tcp


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iface", default="eth0")
    ap.add_argument("--dst-mac", required=True)
    ap.add_argument("--vip", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--count", type=int, default=60000)
    ap.add_argument("--rate", type=int, default=0,
                    help="frames per second (0: as fast as possible); a TAP drops what its "
                         "queue cannot hold, so an unpaced flood mostly measures that")
    args = ap.parse_args()
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    s.bind((args.iface, 0))
    src_mac = s.getsockname()[4]
    dst_mac = bytes.fromhex(args.dst_mac.replace(":", ""))
    dst = socket.inet_aton(args.vip)
    rng = random.Random(7)
    frames = [frame(dst_mac, src_mac,
                    struct.pack("!I", 0xC6120000 | rng.getrandbits(17)), dst,
                    1024 + rng.getrandbits(15), args.port, rng.getrandbits(32))
              for _ in range(args.count)]
    print("sending", flush=True)
    sent = 0
    start = time.monotonic()
    for f in frames:
        try:
            s.send(f)
            sent += 1
        except OSError:
            time.sleep(0.0005)  # the device queue is full: let it drain
        if args.rate and sent % 64 == 0:
            ahead = start + sent / args.rate - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
    print(json.dumps({"sent": sent, "seconds": time.monotonic() - start}))


if __name__ == "__main__":
    main()
