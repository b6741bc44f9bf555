"""l4lbd's logs as rte_log types per module: levels from control.log and --log-level, the
data path's rate limit (first drop of a reason at info, later ones at debug, at most
dataPathLinesPerSecond lines a second per worker, the rest counted as suppressed), and
one line per config change naming what changed. Reads l4lbd's stderr; prefix l4c (the
capture test's veth lab). Run as root:

  /usr/bin/python3 -m pytest -v pmd-tests/logging_test.py
"""

import re
import signal
import subprocess
import time

import pytest

from capture_test import L4LBD, WEB_VIP, Lab, config, denied, send, sh

RATE = 5
LOG_CONFIG = f"""  log: {{level: info, modules: {{worker: debug}}, dataPathLinesPerSecond: {RATE}}}"""


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    assert L4LBD.is_file(), f"{L4LBD} is missing"
    tmp = tmp_path_factory.mktemp("logging")
    lab = Lab(tmp, LOG_CONFIG, args=["--log-level", "api=warning"])
    lab.tmp = tmp
    try:
        yield lab
    finally:
        rc = lab.stop()
    assert rc == 0, lab.log.read_text()[-3000:]


def lines(lab, pattern):
    return [l for l in lab.log.read_text().splitlines() if re.search(pattern, l)]


def test_levels_from_config_and_cli(lab):
    text = lab.log.read_text()
    assert re.search(r"Z l4lbd info \[control\] ready: 1 worker\(s\), 1 port\(s\)", text)
    assert re.search(r"Z l4lbd info \[config\] config .*: 2 services, 2 service ports", text)
    # --log-level api=warning silences the API's info line; the config said info.
    assert "[api]" not in text and "api: http://" not in text


def test_data_path_lines_are_rate_limited(lab):
    burst = 60
    start = time.monotonic()
    send(denied(burst))
    elapsed = time.monotonic() - start
    time.sleep(1.5)  # the bucket refills
    send(denied(1))
    time.sleep(0.5)
    logged = lines(lab, r"\[worker\] worker 0 \(lcore 1\): drop acl_denied: tcp 10\.0\.99\.9:310\d\d > "
                   + re.escape(WEB_VIP) + ":80")
    first = logged[0]
    assert " info [worker] " in first and first.endswith("(first on this worker)"), first
    assert all(" debug [worker] " in l for l in logged[1:])
    # At most a bucket (RATE lines) plus what refills while scapy sends, then one more.
    in_burst = logged[:-1]
    assert 1 <= len(in_burst) <= RATE + int(RATE * elapsed) + 1, (elapsed, logged)
    last = re.search(r"\((\d+) lines suppressed\)$", logged[-1])
    assert last, logged[-1]
    suppressed = sum(int(m.group(1)) for l in logged
                     if (m := re.search(r"\((\d+) lines suppressed\)$", l)))
    assert len(logged) + suppressed == burst + 1


def test_one_line_per_config_change(lab):
    extra = '{"name": "extra", "vip": "172.16.40.102", "ports": [{"name": "http", ' \
            '"protocol": "TCP", "port": 80, "targetPort": 8080}], "backends": [{"ip": "10.4.40.31"}]}'
    assert lab.request("PUT", "/v1/services/extra", extra)[0] == 201
    assert lab.request("DELETE", "/v1/services/extra")[0] == 200
    text = lab.cfg.read_text().replace("{ip: 10.4.40.21}", "{ip: 10.4.40.21}, {ip: 10.4.40.22}")
    text = text.replace("    - {prefix: 10.4.40.0/24, via: 10.0.40.21}",
                        "    - {prefix: 10.4.40.0/24, via: 10.0.40.21}\n"
                        "    - {prefix: 10.5.0.0/16, via: 10.0.40.21}")
    lab.cfg.write_text(text)
    assert lab.request("POST", "/v1/reload")[0] == 200
    time.sleep(0.3)
    assert len(lines(lab, r"\[config\] api: PUT Service extra: generation \d+: services added: extra$")) == 1
    assert len(lines(lab, r"\[config\] api: DELETE Service extra: generation \d+: "
                          r"services removed: extra$")) == 1
    assert len(lines(lab, r"\[config\] reloaded .*: generation \d+: services changed: dns; "
                          r"routes changed \(Maglev tables")) == 1


def test_bad_log_level(tmp_path):
    r = subprocess.run([str(L4LBD), "--log-level", "loud", "--config", "x.yaml"],
                       capture_output=True, text=True, timeout=10)
    assert r.returncode == 2
    assert r.stderr.strip() == 'l4lbd: --log-level: "loud" is not a log level (error, warning, info, debug)'
    r = subprocess.run([str(L4LBD), "--log-level", "pmd=debug", "--config", "x.yaml"],
                       capture_output=True, text=True, timeout=10)
    assert r.returncode == 2
    assert r.stderr.strip() == ('l4lbd: --log-level: "pmd" is not a log module '
                                '(control, config, health, api, worker, port)')


def test_eal_log_level_pattern(tmp_path):
    """The modules are rte_log types: EAL's own --log-level pattern reaches them too."""
    cfg = tmp_path / "null.yaml"
    cfg.write_text("""
dataplane:
  eal: [--no-huge, -m, "512", --no-pci, --no-shconf, --file-prefix, l4c-eal]
  workers: [1]
  flowTable: {capacity: 4096}
  ports:
    - {name: wan, device: "net_null0", address: 10.0.0.1/24}
control:
  api: {listen: 127.0.0.1:0}
  metrics: {listen: 127.0.0.1:0}
services: []
""")
    log = tmp_path / "l4lbd.log"
    with open(log, "w") as f:
        proc = subprocess.Popen([str(L4LBD), "--config", str(cfg), "--eal",
                                 "--log-level=l4lb.control:warning"], stdout=f, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while "[api] api: http://" not in log.read_text():
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        time.sleep(0.5)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    text = log.read_text()
    assert "[config] config " in text  # other modules keep info
    assert "ready:" not in text and "stopping" not in text  # l4lb.control is at warning
