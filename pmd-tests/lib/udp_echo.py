#!/usr/bin/python3
"""A pod's UDP echo for the hostile-input runs: every datagram goes back whole to its sender,
so a datagram that crossed l4lbd as fragments comes back the same way, reassembled by both
kernels. Prints "ready" once bound; exits on SIGTERM.

  ip netns exec l4f-pod-a udp_echo.py --port 7000
"""
import argparse
import signal
import socket
import sys


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, required=True)
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", args.port))
    print("ready", flush=True)
    while True:
        data, peer = s.recvfrom(65535)
        try:
            s.sendto(data, peer)
        except OSError:
            pass


if __name__ == "__main__":
    main()
