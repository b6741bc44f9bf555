"""Only healthy pods get traffic. On the e2e topology with kernel twins (prefix l4h), so
l4lbd's health probes are ordinary kernel sockets routed through the data path:

- HTTP checks of /healthz on every pod; stopping a pod's server makes it unhealthy within
  the thresholds, new flows avoid it and its `l4lb_backend_up` is 0; restarting it brings
  it back.
- A Service with `allUnhealthy: reject` answers a TCP client with a reset (connection
  refused, not a timeout) once every backend is down.
"""

import json
import re
import signal
import subprocess
import time
import urllib.request

import pytest

from e2e_test import DEMO_CONFIG, L4LBD, LIB, PODS, PY, TOPO, free_tcp_port

PREFIX = "l4h"
CHECK = "{type: http, path: /healthz, intervalMs: 200, timeoutMs: 150, healthyThreshold: 1, unhealthyThreshold: 2}"


def topo(action):
    r = subprocess.run(["bash", "-c", f'source "{TOPO}" && topo_{action} {PREFIX}'],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


def start_pod(name):
    p = subprocess.Popen(["ip", "netns", "exec", f"{PREFIX}-{name}", PY,
                          str(LIB / "pod_server.py"), "--name", name, "--tcp-port", "8080",
                          "--udp-port", "5353"], stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, text=True)
    assert "ready" in p.stdout.readline()
    return p


def stop_pod(p):
    p.terminate()
    p.wait(timeout=5)


def http(count, vip="172.16.12.100"):
    r = subprocess.run(["ip", "netns", "exec", f"{PREFIX}-client", PY, str(LIB / "client.py"),
                        "http", "--vip", vip, "--port", "80", "--count", str(count),
                        "--timeout", "2", "--json"], capture_output=True, text=True, timeout=300)
    return json.loads(r.stdout)


def backend_up(metrics_port):
    text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).read()
    up = {}
    for line in text.decode().splitlines():
        m = re.match(r'l4lb_backend_up\{service="frontend",service_port="http",'
                     r'backend="([0-9.]+)"\} (\S+)', line)
        if m:
            up[m.group(1)] = float(m.group(2))
    return up


def wait_for(predicate, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    assert L4LBD.is_file(), f"{L4LBD} is missing"
    work = tmp_path_factory.mktemp("health")
    metrics_port = free_tcp_port()
    text = DEMO_CONFIG.read_text().replace("l4d-", f"{PREFIX}-").replace("l4d", PREFIX)
    text = text.replace("address: 10.0.0.1/24,", f"address: 10.0.0.1/24, tap: {PREFIX}-wan-k,")
    text = text.replace("address: 10.128.0.1/24,", f"address: 10.128.0.1/24, tap: {PREFIX}-lan-k,")
    text = text.replace("127.0.0.1:9180", "127.0.0.1:0")
    text = text.replace("127.0.0.1:9100", f"127.0.0.1:{metrics_port}")
    text = text.replace("    ports: [{name: http, protocol: TCP, port: 80, targetPort: 8080}]\n",
                        "    ports: [{name: http, protocol: TCP, port: 80, targetPort: 8080}]\n"
                        f"    healthCheck: {CHECK}\n    allUnhealthy: reject\n", 1)
    assert "allUnhealthy: reject" in text and text.count("tap:") == 2, text
    config = work / "l4h.yaml"
    config.write_text(text)
    subprocess.run(["pkill", "-f", "l4lbd --config .*l4h.yaml"], check=False)
    topo("down")
    pods, l4lbd = {}, None
    log_path = work / "l4lbd.log"
    try:
        topo("up")
        pods = {name: start_pod(name) for name in PODS}
        with open(log_path, "w") as log:
            l4lbd = subprocess.Popen([str(L4LBD), "--config", str(config)], stdout=log,
                                     stderr=subprocess.STDOUT)
        assert wait_for(lambda: "ready:" in log_path.read_text(), 30), log_path.read_text()
        yield {"pods": pods, "metrics": metrics_port, "log": log_path, "l4lbd": l4lbd}
    finally:
        if l4lbd is not None and l4lbd.poll() is None:
            l4lbd.send_signal(signal.SIGTERM)
            l4lbd.wait(timeout=15)
        for p in pods.values():
            if p.poll() is None:
                stop_pod(p)
        topo("down")


def test_unhealthy_pod_gets_no_new_flows_and_comes_back(lab):
    assert wait_for(lambda: backend_up(lab["metrics"]) == {ip: 1.0 for ip in PODS.values()})
    assert set(http(60)["per_pod"]) == set(PODS)

    stop_pod(lab["pods"]["pod-b"])
    assert wait_for(lambda: backend_up(lab["metrics"]).get(PODS["pod-b"]) == 0.0), (
        lab["log"].read_text()[-3000:])
    r = http(60)
    assert r["failed"] == 0 and set(r["per_pod"]) == {"pod-a", "pod-c"}, r
    assert "health: http://10.4.1.12:8080/healthz is now unhealthy" in lab["log"].read_text()

    lab["pods"]["pod-b"] = start_pod("pod-b")
    assert wait_for(lambda: backend_up(lab["metrics"]).get(PODS["pod-b"]) == 1.0)
    assert set(http(60)["per_pod"]) == set(PODS)


def test_all_unhealthy_rejects(lab):
    for name in PODS:
        stop_pod(lab["pods"][name])
    assert wait_for(lambda: set(backend_up(lab["metrics"]).values()) == {0.0})
    start = time.monotonic()
    r = http(3)
    assert r["ok"] == 0 and r["errors"] == {"refused": 3}, r
    assert time.monotonic() - start < 3, "a reset is immediate; a drop would time out"
    for name in PODS:
        lab["pods"][name] = start_pod(name)
    assert wait_for(lambda: set(backend_up(lab["metrics"]).values()) == {1.0})
