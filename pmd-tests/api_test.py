"""REST API on the live end-to-end topology (pmd-tests/lib/topo.sh, prefix l4t): every
error case leaves the running config unchanged, bearer-token auth, concurrent clients, and
changes that reach the data path (PUT a Service -> real TCP reaches it; DELETE -> dropped).
Run as root:

  /usr/bin/python3 -m pytest -v pmd-tests/api_test.py

L4LBD=/path/to/l4lbd overrides the binary (default: build/src/l4lbd).
"""

import json
import re
import threading
import urllib.error
import urllib.request

import pytest

from e2e_test import HTTP_PORT, HTTP_VIP, L4LBD, PODS, UDP_VIP, Lab, stop_stale_l4lbd, topo

TOKEN = "l4lb-test-token-7f3a"
NEW_VIP = "172.16.12.110"


class Client:
    def __init__(self, base, token):
        self.base = base
        self.token = token

    def call(self, method, path, body=None, token="default", raw=None):
        """(status, parsed JSON body). body: a dict (sent as JSON) or raw bytes/str."""
        data = None
        if raw is not None:
            data = raw.encode() if isinstance(raw, str) else raw
        elif body is not None:
            data = json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method)
        tok = self.token if token == "default" else token
        if tok is not None:
            req.add_header("Authorization", f"Bearer {tok}")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, json.loads(r.read() or b"null")
        except urllib.error.HTTPError as e:
            text = e.read()
            try:
                return e.code, json.loads(text)
            except ValueError:
                return e.code, {"raw": text.decode(errors="replace")}


def api_port(config_text):
    m = re.search(r"api:\s*\{listen:\s*127\.0\.0\.1:(\d+)", config_text)
    assert m, "no control.api.listen in the test config"
    return int(m.group(1))


def start_lab(workdir, token=TOKEN):
    """The e2e lab with a token file in control.api; returns (lab, Client)."""
    lab = Lab(workdir)
    token_file = workdir / "token"
    token_file.write_text(token + "\n")
    text = lab.config.read_text()
    text, n = re.subn(r"(api:\s*\{listen:\s*127\.0\.0\.1:\d+)\}",
                      rf"\g<1>, tokenFile: {token_file}}}", text)
    assert n == 1, "conf/demo.yaml no longer has `api: {listen: ...}`"
    lab.config.write_text(text)
    return lab, Client(f"http://127.0.0.1:{api_port(text)}", token), token_file


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    if not L4LBD.is_file():
        pytest.fail(f"{L4LBD} is missing: build it first (meson compile -C build)")
    stop_stale_l4lbd()
    topo("down")
    lab, client, _ = start_lab(tmp_path_factory.mktemp("api"))
    try:
        topo("up")
        lab.start_pods()
        lab.start_l4lbd()
        yield lab, client
    finally:
        exit_code, _ = lab.stop_l4lbd()
        lab.stop_pods()
        topo("down")
    assert exit_code == 0, f"l4lbd exit code {exit_code}:\n{lab.log_tail()}"


def web(name="web2", vip=NEW_VIP, port=80, backends=("10.4.1.11",), **extra):
    svc = {"name": name, "vip": vip,
           "ports": [{"name": "http", "protocol": "TCP", "port": port, "targetPort": 8080}],
           "backends": [{"ip": ip} for ip in backends]}
    svc.update(extra)
    return svc


def services(client):
    status, body = client.call("GET", "/v1/services")
    assert status == 200, body
    return body


def test_file_services_and_their_source(env):
    _, client = env
    body = services(client)
    names = {s["name"]: s for s in body["services"]}
    assert set(names) == {"frontend", "dns"}
    assert all(s["source"] == "file" for s in names.values())
    fe = names["frontend"]
    assert fe["vip"] == HTTP_VIP
    assert fe["ports"] == [{"name": "http", "protocol": "TCP", "port": 80, "targetPort": 8080}]
    assert [b["ip"] for b in fe["backends"]] == list(PODS.values())
    status, one = client.call("GET", "/v1/services/dns")
    assert status == 200 and one["vip"] == UDP_VIP and one["source"] == "file"


@pytest.mark.parametrize("token", [None, "wrong-token", TOKEN + "x", ""])
def test_token_required(env, token):
    _, client = env
    before = services(client)
    for method, path, body in [("GET", "/v1/services", None), ("GET", "/v1/status", None),
                               ("PUT", "/v1/services/web2", web()),
                               ("DELETE", "/v1/services/frontend", None),
                               ("POST", "/v1/reload", None)]:
        status, answer = client.call(method, path, body, token=token)
        assert status == 401, (method, path, status, answer)
        assert "token" in answer["error"]
    assert services(client) == before


BAD_PUTS = [
    # (what, path, raw body or dict, status, field, error fragment)
    ("malformed JSON", "/v1/services/web2", '{"name": "web2", "vip": ', 400, "",
     "YAML syntax error"),
    ("not a mapping", "/v1/services/web2", "[1, 2]", 400, "", "expected a mapping"),
    ("empty body", "/v1/services/web2", "", 400, "", "expected a Service"),
    ("port as string", "/v1/services/web2", web(ports=[{"port": "80"}]), 400, "ports[0].port",
     'ports[0].port: "80" is a string, not an integer (remove the quotes)'),
    ("vip as number", "/v1/services/web2", web(vip=12), 400, "vip",
     'vip: "12" is not an IPv4 address'),
    ("unknown field", "/v1/services/web2", web(colour="blue"), 400, "colour",
     "colour: unknown key"),
    ("invalid CIDR", "/v1/services/web2", web(loadBalancerSourceRanges=["10.0.0.0/33"]), 400,
     "loadBalancerSourceRanges[0]", 'loadBalancerSourceRanges[0]: "10.0.0.0/33" is not an IPv4 CIDR'),
    ("host bits", "/v1/services/web2", web(loadBalancerSourceRanges=["10.0.0.1/24"]), 400,
     "loadBalancerSourceRanges[0]", "has host bits set; did you mean 10.0.0.0/24?"),
    ("bad protocol", "/v1/services/web2", web(ports=[{"port": 80, "protocol": "SCTP"}]), 400,
     "ports[0].protocol", '"SCTP" is not supported'),
    ("backend without route", "/v1/services/web2", web(backends=["192.168.77.7"]), 400,
     "backends[0].ip", "no route to 192.168.77.7"),
    ("weight out of range", "/v1/services/web2",
     web(backends=[], **{}) | {"backends": [{"ip": "10.4.1.11", "weight": 5000}]}, 400,
     "backends[0].weight", "5000 is out of range 0-1000"),
    ("name differs from URL", "/v1/services/web3", web(), 400, "name",
     'does not match the Service in the URL'),
    ("invalid name", "/v1/services/Web_2", web(name="Web_2"), 400, "name",
     "is not a valid Service name"),
    ("VIP/port of another Service", "/v1/services/web2", web(vip=HTTP_VIP), 409, "ports[0]",
     f'ports[0]: TCP {HTTP_VIP}:80 is already exposed by Service "frontend" port "http"'),
    ("VIP is a port address", "/v1/services/web2", web(vip="10.0.0.1"), 400, "vip",
     'vip: 10.0.0.1 is the address of port "wan"'),
]


@pytest.mark.parametrize("case", BAD_PUTS, ids=[c[0] for c in BAD_PUTS])
def test_bad_put_is_rejected_and_changes_nothing(env, case):
    _, client = env
    what, path, body, want_status, field, fragment = case
    before = services(client)
    if isinstance(body, dict):
        status, answer = client.call("PUT", path, body)
    else:
        status, answer = client.call("PUT", path, raw=body)
    assert status == want_status, (what, status, answer)
    assert fragment in answer["error"], (what, answer)
    assert answer["field"] == field, (what, answer)
    assert services(client) == before, f"{what} changed the running config"


@pytest.mark.parametrize("method,path,want,fragment", [
    ("GET", "/v1/services/nosuch", 404, 'no Service named "nosuch"'),
    ("DELETE", "/v1/services/nosuch", 404, 'no Service named "nosuch"'),
    ("GET", "/v1/nothing-here", 404, "no such endpoint"),
    ("GET", "/v1/flows?limit=0", 400, "limit must be an integer"),
    ("GET", "/v1/flows?limit=abc", 400, "limit must be an integer"),
    ("GET", "/v1/flows?limit=100000", 400, "limit must be an integer"),
])
def test_other_errors(env, method, path, want, fragment):
    _, client = env
    before = services(client)
    status, answer = client.call(method, path)
    assert status == want, answer
    assert fragment in answer["error"]
    assert services(client) == before


def test_body_too_large(env):
    _, client = env
    before = services(client)
    big = json.dumps(web(backends=[])) + " " * (2 << 20)
    try:
        status, answer = client.call("PUT", "/v1/services/web2", raw=big)
    except (ConnectionError, urllib.error.URLError):
        status, answer = 413, {"error": "connection closed while sending (server refused)"}
    assert status == 413, answer
    assert services(client) == before


def test_put_reaches_traffic_then_delete_drops_it(env):
    lab, client = env
    status, answer = client.call("PUT", "/v1/services/web2", web(backends=["10.4.1.12"]))
    assert status == 201, answer
    assert answer["service"]["source"] == "api"
    gen = answer["generation"]
    r = lab.client("http", NEW_VIP, 80, 20, stop_after_failures=3)
    assert r["ok"] == 20, r
    assert r["per_pod"] == {"pod-b": 20}, r
    # Replacing it (same name) is 200 and moves new flows.
    status, answer = client.call("PUT", "/v1/services/web2", web(backends=["10.4.1.13"]))
    assert status == 200 and answer["generation"] == gen + 1, answer
    r = lab.client("http", NEW_VIP, 80, 20, stop_after_failures=3)
    assert r["per_pod"] == {"pod-c": 20}, r
    status, answer = client.call("DELETE", "/v1/services/web2")
    assert status == 200 and answer["deleted"] == "web2", answer
    r = lab.client("http", NEW_VIP, 80, 2, timeout=1.0)
    assert r["ok"] == 0 and r["errors"] == {"timeout": 2}, r
    assert {s["name"] for s in services(client)["services"]} == {"frontend", "dns"}
    # The file's Services kept working throughout.
    assert lab.client("http", HTTP_VIP, HTTP_PORT, 10)["ok"] == 10


def test_delete_file_service_then_reload_restores_it(env):
    lab, client = env
    status, answer = client.call("DELETE", "/v1/services/frontend")
    assert status == 200, answer
    r = lab.client("http", HTTP_VIP, HTTP_PORT, 1, timeout=1.0)
    assert r["ok"] == 0, r
    status, answer = client.call("PUT", "/v1/services/web4", web(name="web4", vip="172.16.12.114"))
    assert status == 201
    status, answer = client.call("POST", "/v1/reload")
    assert status == 200, answer
    body = services(client)
    # The file replaces every API edit.
    assert [(s["name"], s["source"]) for s in body["services"]] == [("frontend", "file"),
                                                                   ("dns", "file")]
    assert lab.client("http", HTTP_VIP, HTTP_PORT, 10)["ok"] == 10


def test_reload_of_a_bad_file_is_an_error_and_keeps_everything(env):
    lab, client = env
    status, _ = client.call("PUT", "/v1/services/web5", web(name="web5", vip="172.16.12.115"))
    assert status == 201
    before = services(client)
    good = lab.config.read_text()
    lab.config.write_text(good.replace("vip: 172.16.12.100", "vip: 172.16.12.300"))
    try:
        status, answer = client.call("POST", "/v1/reload")
    finally:
        lab.config.write_text(good)
    assert status == 422, answer
    assert '"172.16.12.300" is not an IPv4 address' in answer["error"]
    assert services(client) == before
    _, st = client.call("GET", "/v1/status")
    assert st["reloads"]["lastErrors"], st
    assert client.call("DELETE", "/v1/services/web5")[0] == 200


def test_concurrent_clients(env):
    lab, client = env
    errors = []
    n_threads, per_thread = 8, 6

    def worker(t):
        try:
            for i in range(per_thread):
                name = f"c{t}-{i}"
                vip = f"172.16.13.{t * per_thread + i + 1}"
                s, a = client.call("PUT", f"/v1/services/{name}", web(name=name, vip=vip))
                if s != 201:
                    errors.append((name, s, a))
                s, a = client.call("GET", "/v1/services")
                if s != 200:
                    errors.append(("GET", s, a))
            for i in range(per_thread):
                s, a = client.call("DELETE", f"/v1/services/c{t}-{i}")
                if s != 200:
                    errors.append(("DELETE", s, a))
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(("exception", repr(e)))

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(n_threads)]
    gen0 = services(client)["generation"]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors[:5]
    body = services(client)
    assert {s["name"] for s in body["services"]} == {"frontend", "dns"}
    # Every change was its own generation: none lost, none merged.
    assert body["generation"] == gen0 + 2 * n_threads * per_thread
    assert lab.client("http", HTTP_VIP, HTTP_PORT, 10)["ok"] == 10


def test_backends_flows_status(env):
    lab, client = env
    lab.client("http", HTTP_VIP, HTTP_PORT, 5)
    status, b = client.call("GET", "/v1/backends")
    assert status == 200
    fe = [x for x in b["backends"] if x["service"] == "frontend"]
    assert [x["ip"] for x in fe] == list(PODS.values())
    assert all(x["state"] == "ready" and x["weight"] == 1 for x in fe)
    status, f = client.call("GET", "/v1/flows?limit=5")
    assert status == 200 and f["limit"] == 5
    assert len(f["workers"]) == 1 and f["workers"][0]["created"] >= 5
    assert f["capacity"] > 0 and 1 <= len(f["flows"]) <= 5
    for flow in f["flows"]:
        assert flow["proto"] == "tcp" and flow["client"].startswith("10.0.0.2:")
        # Earlier tests opened flows to other VIPs too; every one names a pod.
        assert flow["vip"].startswith("172.16.12.") and flow["vip"].endswith(":80")
        assert flow["backend"].split(":")[0] in PODS.values()
        assert flow["state"] in ("syn_sent", "syn_ack_seen", "established", "closing")
        assert flow["ageSeconds"] >= 0 and flow["idleSeconds"] >= 0
    status, s = client.call("GET", "/v1/status")
    assert status == 200
    assert s["version"] and s["uptimeSeconds"] > 0 and s["generation"] >= 1
    assert [p["name"] for p in s["ports"]] == ["wan", "lan"]
    assert len(s["workers"]) == 1
