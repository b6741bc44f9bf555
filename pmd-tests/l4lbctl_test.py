"""l4lbctl against a live l4lbd on the end-to-end topology (prefix l4t, token auth on):
every command in table and JSON form, clear errors and non-zero exits, `apply -f` with our
YAML and with Kubernetes manifests, and drain semantics of a terminating endpoint shown on
the data path (its UDP flow keeps being answered by it; new flows avoid it). Run as root:

  /usr/bin/python3 -m pytest -v pmd-tests/l4lbctl_test.py

L4LBD=... and L4LBCTL=... override the binaries (default: build/src/).
"""

import json
import os
import subprocess
import textwrap

import pytest

from api_test import start_lab
from e2e_test import HTTP_PORT, HTTP_VIP, L4LBD, PODS, PREFIX, PY, REPO, UDP_PORT, UDP_VIP, \
    stop_stale_l4lbd, topo

L4LBCTL = os.environ.get("L4LBCTL", str(REPO / "build" / "src" / "l4lbctl"))
K8S = REPO / "conf" / "examples" / "kubernetes"


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    for b in (L4LBD, L4LBCTL):
        if not os.path.isfile(b):
            pytest.fail(f"{b} is missing: build it first (meson compile -C build)")
    stop_stale_l4lbd()
    topo("down")
    workdir = tmp_path_factory.mktemp("l4lbctl")
    lab, client, token_file = start_lab(workdir)
    try:
        topo("up")
        lab.start_pods()
        lab.start_l4lbd()
        yield lab, client, token_file, workdir
    finally:
        exit_code, _ = lab.stop_l4lbd()
        lab.stop_pods()
        topo("down")
    assert exit_code == 0, f"l4lbd exit code {exit_code}:\n{lab.log_tail()}"


def ctl(env, *args, token=True, server=None, stdin=None):
    _, client, token_file, _ = env
    cmd = [L4LBCTL, "--server", server or client.base]
    if token:
        cmd += ["--token-file", str(token_file)]
    r = subprocess.run(cmd + list(args), capture_output=True, text=True, timeout=30, input=stdin)
    return r.returncode, r.stdout, r.stderr


def ok(env, *args, **kw):
    rc, out, err = ctl(env, *args, **kw)
    assert rc == 0, f"l4lbctl {' '.join(args)}: rc {rc}\n{out}{err}"
    return out, err


def test_connection_refused_is_a_clear_error(env):
    rc, out, err = ctl(env, "get", "services", server="http://127.0.0.1:1")
    assert rc != 0
    assert "cannot reach l4lbd at http://127.0.0.1:1" in err, err


def test_missing_token_is_a_clear_error(env):
    rc, out, err = ctl(env, "get", "services", token=False)
    assert rc != 0
    assert "GET /v1/services: 401: missing or wrong bearer token" in err, err


def test_usage_error(env):
    rc, _, err = ctl(env, "get", "pods")
    assert rc != 0 and "pods" in err


def test_get_services_table_and_json(env):
    out, _ = ok(env, "get", "services")
    lines = out.splitlines()
    assert lines[0].split() == ["NAME", "VIP", "PORTS", "BACKENDS", "SOURCE"]
    rows = {l.split()[0]: l.split() for l in lines[1:]}
    assert rows["frontend"] == ["frontend", HTTP_VIP, "80/TCP->8080", "3/3", "ready", "file"]
    assert rows["dns"][2] == "53/UDP->5353"
    out, _ = ok(env, "-o", "json", "get", "services")
    assert {s["name"] for s in json.loads(out)["services"]} == {"frontend", "dns"}
    out, _ = ok(env, "get", "services", "-o", "json")  # options after the subcommand too
    assert json.loads(out)["services"]


def test_get_backends_flows_status(env):
    lab = env[0]
    lab.client("http", HTTP_VIP, HTTP_PORT, 5)
    out, _ = ok(env, "get", "backends")
    assert out.splitlines()[0].split() == ["SERVICE", "BACKEND", "WEIGHT", "STATE", "HEALTH"]
    assert "frontend   10.4.1.11   1        ready   unchecked" in out.replace("  ", "  "), out
    out, _ = ok(env, "get", "flows", "--limit", "10")
    assert out.splitlines()[0].split()[:4] == ["WORKER", "LCORE", "ENTRIES", "CAPACITY"]
    assert "PROTO  CLIENT" in out.replace("   ", "  ") or "PROTO" in out, out
    assert "10.0.0.2:" in out and ":8080" in out, out
    flows = json.loads(ok(env, "-o", "json", "get", "flows")[0])
    assert flows["workers"][0]["created"] >= 5
    out, _ = ok(env, "status")
    assert "generation:" in out and "port wan:" in out
    st = json.loads(ok(env, "status", "-o", "json")[0])
    assert st["services"] == 2


def test_apply_our_yaml_then_delete(env):
    lab, _, _, workdir = env
    f = workdir / "web.yaml"
    f.write_text(textwrap.dedent("""\
        services:
          - name: web6
            vip: 172.16.12.116
            ports: [{name: http, port: 80, targetPort: 8080}]
            backends: [{ip: 10.4.1.13}]
        """))
    out, _ = ok(env, "apply", "-f", str(f))
    assert "service/web6 applied" in out
    rows = [l.split() for l in ok(env, "get", "services")[0].splitlines()]
    assert ["web6", "172.16.12.116", "80/TCP->8080", "1/1", "ready", "api"] in rows
    r = lab.client("http", "172.16.12.116", 80, 10)
    assert r["per_pod"] == {"pod-c": 10}, r
    out, _ = ok(env, "delete", "service", "web6")
    assert "service/web6 deleted" in out
    rc, _, err = ctl(env, "delete", "service", "web6")
    assert rc != 0 and 'DELETE /v1/services/web6: 404: no Service named "web6"' in err, err


def test_apply_reports_the_servers_error(env):
    _, client, _, workdir = env
    before = client.call("GET", "/v1/services")[1]
    f = workdir / "bad.yaml"
    f.write_text('services:\n  - {name: web7, vip: 172.16.12.117, ports: [{port: "80"}]}\n')
    rc, _, err = ctl(env, "apply", "-f", str(f))
    assert rc != 0
    assert ('PUT /v1/services/web7: 400: ports[0].port: "80" is a string, not an integer '
            "(remove the quotes)") in err, err
    f.write_text(f"services:\n  - {{name: web7, vip: {HTTP_VIP}, ports: [{{port: 80}}]}}\n")
    rc, _, err = ctl(env, "apply", "-f", str(f))
    assert rc != 0 and "409: ports[0]: TCP 172.16.12.100:80 is already exposed" in err, err
    rc, _, err = ctl(env, "apply", "-f", str(workdir / "missing.yaml"))
    assert rc != 0 and "cannot read" in err
    assert client.call("GET", "/v1/services")[1] == before


UDP_PROBE = textwrap.dedent("""\
    import json, socket, sys
    def ask(s):
        s.sendto(b"probe", (sys.argv[1], int(sys.argv[2])))
        return s.recvfrom(2048)[0].decode().split()[0]
    old = []
    for _ in range(24):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(2)
        old.append((s, ask(s)))
    print(json.dumps([p for _, p in old]), flush=True)
    sys.stdin.readline()
    again = []
    for s, _ in old:
        try:
            again.append(ask(s))
        except OSError:
            again.append("timeout")
    fresh = []
    for _ in range(24):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(2)
        try:
            fresh.append(ask(s))
        except OSError:
            fresh.append("timeout")
    print(json.dumps({"again": again, "fresh": fresh}), flush=True)
    """)


def test_apply_kubernetes_drain_on_the_data_path(env):
    """pod-b turns terminating-but-serving in an EndpointSlice: flows it holds stay with
    it, new flows go to the ready pods only; pod-c turns not-serving: it is removed."""
    _, client, _, workdir = env
    manifest = workdir / "dns.yaml"
    manifest.write_text(textwrap.dedent(f"""\
        apiVersion: v1
        kind: Service
        metadata: {{name: dns}}
        spec:
          type: LoadBalancer
          clusterIP: 10.96.0.53
          ports: [{{name: dns, protocol: UDP, port: {UDP_PORT}, targetPort: dns}}]
        status: {{loadBalancer: {{ingress: [{{ip: {UDP_VIP}}}]}}}}
        ---
        apiVersion: discovery.k8s.io/v1
        kind: EndpointSlice
        metadata:
          name: dns-x1
          labels: {{kubernetes.io/service-name: dns}}
        addressType: IPv4
        ports: [{{name: dns, protocol: UDP, port: 5353}}]
        endpoints:
          - {{addresses: [10.4.1.11], conditions: {{ready: true}}}}
          - {{addresses: [10.4.1.12], conditions: {{ready: false, serving: true, terminating: true}}}}
          - {{addresses: [10.4.1.13], conditions: {{ready: false, serving: false}}}}
        """))
    probe = subprocess.Popen(
        ["ip", "netns", "exec", f"{PREFIX}-client", PY, "-c", UDP_PROBE, UDP_VIP, str(UDP_PORT)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = json.loads(probe.stdout.readline() or "null")
        assert first and "pod-b" in first, f"no flow landed on pod-b: {first} {probe.stderr.read()}"
        out, err = ok(env, "apply", "-f", str(manifest))
        assert "service/dns applied" in out
        probe.stdin.write("go\n")
        probe.stdin.flush()
        second = json.loads(probe.stdout.readline())
    finally:
        probe.kill()
        probe.wait()
    svc = client.call("GET", "/v1/services/dns")[1]
    assert [(b["ip"], b["weight"]) for b in svc["backends"]] == [("10.4.1.11", 1),
                                                                 ("10.4.1.12", 0)]
    assert svc["source"] == "api"
    for before, after in zip(first, second["again"]):
        if before == "pod-b":
            assert after == "pod-b", f"a flow on draining pod-b moved: {first} -> {second}"
        elif before == "pod-a":
            assert after == "pod-a", f"{first} -> {second}"
    assert set(second["fresh"]) == {"pod-a"}, second


def test_apply_kubernetes_samples(env):
    lab, client, _, _ = env
    out, err = ok(env, "apply", "-f", str(K8S / "frontend.yaml"))
    assert "service/frontend applied" in out
    assert "warning:" in err and "externalTrafficPolicy: Local is not honoured" in err
    fe = client.call("GET", "/v1/services/frontend")[1]
    assert fe["loadBalancerSourceRanges"] == ["10.0.0.0/24", "203.0.113.0/24"]
    assert [(b["ip"], b["weight"]) for b in fe["backends"]] == [("10.4.1.11", 1),
                                                               ("10.4.1.12", 0)]
    rows = [l.split() for l in ok(env, "get", "backends")[0].splitlines()]
    assert ["frontend", "10.4.1.12", "0", "draining", "unchecked"] in rows
    r = lab.client("http", HTTP_VIP, HTTP_PORT, 15)
    assert r["per_pod"] == {"pod-a": 15}, r
    # kubectl-list.yaml's Services use VIPs of their own; stdin works as a file.
    out, err = ok(env, "apply", "-f", "-", stdin=(K8S / "kubectl-list.yaml").read_text())
    assert "service/shop-dns applied" in out and "service/kubernetes-api applied" in out
    assert "headless" in err


def test_reload_drops_api_edits(env):
    out, _ = ok(env, "reload")
    assert out.startswith("reloaded: generation ")
    rows = [l.split() for l in ok(env, "get", "services")[0].splitlines()[1:]]
    assert sorted((r[0], r[-1]) for r in rows) == [("dns", "file"), ("frontend", "file")]
