"""The kernel exception path: each port has a TAP twin carrying its address, so the host's
own traffic works through l4lbd. On the e2e topology (prefix l4x):

- ping from the client to l4lbd's wan address is answered by the kernel;
- a TCP service of the host (bound to the wan address in the root namespace) serves the
  client through the twin;
- the host reaches a pod by the config's route (10.4.1.0/24 via the node), as health
  probes will: an HTTP GET /healthz from the root namespace answers `ok`.
"""

import json
import socket
import subprocess
import threading
import time

import pytest

from e2e_test import DEMO_CONFIG, L4LBD, LIB, PODS, PY, TOPO

PREFIX = "l4x"


def topo(action):
    r = subprocess.run(["bash", "-c", f'source "{TOPO}" && topo_{action} {PREFIX}'],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


def in_client(*cmd, timeout=30):
    return subprocess.run(["ip", "netns", "exec", f"{PREFIX}-client", *cmd],
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    assert L4LBD.is_file(), f"{L4LBD} is missing"
    work = tmp_path_factory.mktemp("exception")
    text = DEMO_CONFIG.read_text().replace("l4d-", f"{PREFIX}-").replace("l4d", PREFIX)
    text = text.replace('address: 10.0.0.1/24,', f'address: 10.0.0.1/24, tap: {PREFIX}-wan-k,')
    text = text.replace('address: 10.128.0.1/24,',
                        f'address: 10.128.0.1/24, tap: {PREFIX}-lan-k,')
    text = text.replace("127.0.0.1:9180", "127.0.0.1:0").replace("127.0.0.1:9100", "127.0.0.1:0")
    assert text.count("tap:") == 2, text
    config = work / "l4x.yaml"
    config.write_text(text)
    subprocess.run(["pkill", "-f", "l4lbd --config .*l4x.yaml"], check=False)
    topo("down")
    pods, l4lbd = [], None
    log_path = work / "l4lbd.log"
    try:
        topo("up")
        for name in PODS:
            p = subprocess.Popen(["ip", "netns", "exec", f"{PREFIX}-{name}", PY,
                                  str(LIB / "pod_server.py"), "--name", name, "--tcp-port",
                                  "8080", "--udp-port", "5353"],
                                 stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            pods.append(p)
            assert "ready" in p.stdout.readline()
        with open(log_path, "w") as log:
            l4lbd = subprocess.Popen([str(L4LBD), "--config", str(config), "--stats-file",
                                      str(work / "stats.json")], stdout=log,
                                     stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while "ready:" not in log_path.read_text():
            assert l4lbd.poll() is None and time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.1)
        yield {"log": log_path, "l4lbd": l4lbd, "work": work}
    finally:
        if l4lbd is not None and l4lbd.poll() is None:
            l4lbd.terminate()
            l4lbd.wait(timeout=15)
        for p in pods:
            p.terminate()
            p.wait(timeout=5)
        topo("down")


def test_twins_carry_the_port_addresses(lab):
    log = lab["log"].read_text()
    assert f"kernel twin {PREFIX}-wan-k carries 10.0.0.1/24" in log, log
    assert f"kernel twin {PREFIX}-lan-k carries 10.128.0.1/24" in log, log
    addrs = subprocess.run(["ip", "-4", "-o", "addr", "show", "dev", f"{PREFIX}-wan-k"],
                           capture_output=True, text=True).stdout
    assert "10.0.0.1/24" in addrs
    route = subprocess.run(["ip", "route", "get", "10.4.1.11"], capture_output=True,
                           text=True).stdout
    assert f"via 10.128.0.21 dev {PREFIX}-lan-k" in route, route


def test_ping_to_the_appliance(lab):
    r = in_client("ping", "-c", "3", "-i", "0.2", "-W", "2", "10.0.0.1")
    assert r.returncode == 0, r.stdout + r.stderr


def test_host_tcp_service_through_the_twin(lab):
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("10.0.0.1", 2222))
    srv.listen(4)
    got = {}

    def serve():
        conn, peer = srv.accept()
        got["peer"] = peer[0]
        conn.sendall(b"hello from the appliance\n")
        conn.close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        r = in_client(PY, "-c", "import socket; s=socket.create_connection(('10.0.0.1', 2222), "
                      "timeout=5); print(s.recv(100).decode().strip())")
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() == "hello from the appliance"
        t.join(5)
        assert got["peer"] == "10.0.0.2"
    finally:
        srv.close()


def test_host_reaches_pods_like_a_health_probe(lab):
    for ip in ("10.4.1.11", "10.4.1.12", "10.4.1.13"):
        s = socket.create_connection((ip, 8080), timeout=5)
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        answer = b""
        while chunk := s.recv(4096):
            answer += chunk
        s.close()
        assert answer.startswith(b"HTTP/1.") and b" 200 " in answer.split(b"\r\n")[0], answer
        assert answer.rstrip().endswith(b"ok"), answer


def test_counters(lab):
    lab["l4lbd"].terminate()
    assert lab["l4lbd"].wait(timeout=15) == 0
    stats = json.loads((lab["work"] / "stats.json").read_text())
    c = stats["counters"]
    assert c["to_kernel"] > 0 and c["from_kernel"] > 0, c
    assert stats["drops"]["host_unsupported"] == 0
