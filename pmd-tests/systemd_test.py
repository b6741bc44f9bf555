"""l4lbd under systemd's notify protocol, and the unit file itself.

- l4lbd started with $NOTIFY_SOCKET and $WATCHDOG_USEC (as systemd does for
  Type=notify with WatchdogSec) sends READY=1 once it forwards, WATCHDOG=1 at half the
  watchdog interval, and STOPPING=1 on SIGTERM; without $NOTIFY_SOCKET it runs as
  before (every other pmd-test).
- deploy/systemd/l4lbd.service passes `systemd-analyze verify` (with its ExecStart
  paths pointed at this checkout's l4lbd and l4lb-setup).

net_null ports, no hugepages, no PCI; prefix l4vn. Run as root:
  /usr/bin/python3 -m pytest -v pmd-tests/systemd_test.py
"""

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

from e2e_test import L4LBD, REPO

UNIT = REPO / "deploy" / "systemd" / "l4lbd.service"
SETUP = REPO / "deploy" / "l4lb-setup"
WATCHDOG_USEC = 400_000

CONFIG = """\
dataplane:
  eal: [--no-huge, -m, "256", --no-pci, --no-shconf, --file-prefix, l4vn]
  workers: [1]
  flowTable: {capacity: 4096}
  ports:
    - {name: wan, device: net_null0, address: 10.0.0.1/24, promiscuous: true}
    - {name: lan, device: net_null1, address: 10.128.0.1/24}
control:
  api: {listen: 127.0.0.1:0}
  metrics: {listen: 127.0.0.1:0}
services: []
"""


def receive(sock, timeout):
    """Datagrams until the timeout, as (seconds since the call, text)."""
    got, t0 = [], time.monotonic()
    while True:
        left = timeout - (time.monotonic() - t0)
        if left <= 0:
            return got
        sock.settimeout(left)
        try:
            got.append((time.monotonic() - t0, sock.recv(512).decode()))
        except socket.timeout:
            return got


def test_l4lbd_notifies_ready_watchdog_and_stopping(tmp_path):
    assert L4LBD.is_file(), f"{L4LBD} is missing"
    config = tmp_path / "l4vn.yaml"
    config.write_text(CONFIG)
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    env = {**os.environ, "NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": str(WATCHDOG_USEC)}
    log = tmp_path / "l4lbd.log"
    with open(log, "w") as out:
        p = subprocess.Popen([str(L4LBD), "--config", str(config)], stdout=out,
                             stderr=subprocess.STDOUT, env=env)
    try:
        first = receive(sock, 30)[:1]
        assert first and first[0][1] == "READY=1", f"{first}\n{log.read_text()}"
        assert "ready:" in log.read_text(), "READY=1 came before l4lbd was ready"
        assert "(promiscuous)" in log.read_text(), log.read_text()
        pings = [t for t, msg in receive(sock, 2.0) if msg == "WATCHDOG=1"]
        # Every 200 ms (half of 400 ms): about 10 in 2 s; the control loop polls every 20 ms.
        assert 6 <= len(pings) <= 12, pings
        p.send_signal(signal.SIGTERM)
        rest = [msg for _, msg in receive(sock, 5)]
        assert "STOPPING=1" in rest, rest
        assert p.wait(timeout=15) == 0, log.read_text()
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        sock.close()


def test_unit_file_verifies(tmp_path):
    text = UNIT.read_text()
    for installed, here in (("/usr/local/bin/l4lbd", L4LBD), ("/usr/local/sbin/l4lb-setup", SETUP)):
        assert installed in text
        text = text.replace(installed, str(here))
    unit = tmp_path / "l4lbd.service"
    unit.write_text(text)
    r = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0 and not r.stderr.strip(), r.stdout + r.stderr
    for key in ("Type=notify", "WatchdogSec=", "Restart=on-failure", "ProtectSystem=strict",
                "ReadOnlyPaths=/etc/l4lb", "CapabilityBoundingSet=", "ExecStartPre=+",
                "ExecStopPost=+"):
        assert key in text, key


def cloud_init_config():
    """The /etc/l4lb/l4lb.yaml that deploy/cloud-init.yaml writes (a `content: |` block)."""
    lines = (REPO / "deploy" / "cloud-init.yaml").read_text().splitlines()
    start = next(i for i, l in enumerate(lines) if l.strip() == "- path: /etc/l4lb/l4lb.yaml")
    body = next(i for i in range(start, len(lines)) if lines[i].strip() == "content: |") + 1
    indent = len(lines[body]) - len(lines[body].lstrip())
    block = []
    for line in lines[body:]:
        if line.strip() and len(line) - len(line.lstrip()) < indent:
            break
        block.append(line[indent:])
    return "\n".join(block) + "\n"


def test_deploy_example_configs_load(tmp_path):
    cloud = tmp_path / "cloud-init-l4lb.yaml"
    cloud.write_text(cloud_init_config())
    assert "device:" in cloud.read_text()
    for config in (REPO / "deploy" / "image" / "l4lb.yaml", cloud):
        r = subprocess.run([str(L4LBD), "--check-config", str(config)], capture_output=True,
                           text=True, timeout=30)
        assert r.returncode == 0, f"{config}: {r.stdout}{r.stderr}"
