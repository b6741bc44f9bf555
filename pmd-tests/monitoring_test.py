"""conf/monitoring/ against the real l4lbd: every PromQL expression of the Grafana dashboard
(and of any recording rules there) parses, every l4lb_ metric it queries exists in a real
scrape, a real Prometheus evaluates every panel query against l4lbd, the scrape config
passes `promtool check config`; and the DPDK telemetry commands (/l4lb/services,
/l4lb/backends, /l4lb/flows, /l4lb/status) answer on the EAL's telemetry socket with what
the config says and the traffic did, before and after a reload.

  /usr/bin/python3 -m pytest -v pmd-tests/monitoring_test.py   (as root)
"""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import yaml
from scapy.all import IP, TCP, UDP, Ether, wrpcap

from metrics_test import CLIENT_MAC, PORT_MAC, pcap_dataplane

REPO = Path(__file__).resolve().parent.parent
MONITORING = REPO / "conf" / "monitoring"
L4LBD = Path(os.environ.get("L4LBD", REPO / "build" / "src" / "l4lbd"))
WEB_VIP, DNS_VIP = "172.16.12.100", "172.16.12.101"
WEB_BACKENDS = {"10.4.1.11": 1, "10.4.1.12": 2, "10.4.1.13": 1}  # ip: weight
DNS_BACKENDS = {"10.4.1.21": 1, "10.4.1.22": 1}
FLOWS, DENIED, WRONG_PORT, DNS_FLOWS = 40, 3, 2, 10
# Grafana's macros and this dashboard's variables, as a query would see them.
GRAFANA_VARS = {"__rate_interval": "1m", "__interval": "15s", "__range": "1h",
                "instance": ".*", "service": ".*"}
TEST_VARS = dict(GRAFANA_VARS, __rate_interval="10s", __range="1m")
# A metric name: not preceded by a label-matcher quote or another name character.
METRIC = re.compile(r"(?<![\w\"'])(l4lb_[A-Za-z0-9_:]+)")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---- the dashboard's queries ------------------------------------------------------------

def dashboard():
    return json.loads((MONITORING / "grafana-dashboard.json").read_text())


def walk(node):
    if isinstance(node, dict):
        yield node
        for v in node.values():
            yield from walk(v)
    elif isinstance(node, list):
        for v in node:
            yield from walk(v)


def dashboard_queries():
    """(where, PromQL) for every panel target and annotation; label_values() selectors of
    the template variables count as queries of their metric selector."""
    out = []
    for node in walk(dashboard()):
        if isinstance(node.get("expr"), str) and node["expr"].strip():
            out.append((node.get("refId") or node.get("name", "?"), node["expr"]))
    for var in dashboard()["templating"]["list"]:
        q = var.get("query")
        q = q.get("query") if isinstance(q, dict) else q
        m = re.match(r"^\s*label_values\((.*),\s*\w+\s*\)\s*$", q or "")
        if m:
            out.append((f"variable {var['name']}", m.group(1)))
    return out


def rule_queries():
    out = []
    for f in sorted(MONITORING.glob("*rules*.y*ml")):
        for group in yaml.safe_load(f.read_text()).get("groups", []):
            for rule in group.get("rules", []):
                out.append((rule.get("record") or rule.get("alert"), rule["expr"]))
    return out


def substitute(expr, values):
    def repl(m):
        name = m.group(1) or m.group(2)
        assert name in values, f"unknown Grafana variable ${name} in {expr}"
        return values[name]
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", repl, expr)


def queried_metrics():
    names = set()
    for _, expr in dashboard_queries() + rule_queries():
        names.update(METRIC.findall(substitute(expr, GRAFANA_VARS)))
    return names


def test_dashboard_shape():
    d = dashboard()
    ds = [v for v in d["templating"]["list"] if v["name"] == "DS_PROMETHEUS"]
    assert ds and ds[0]["type"] == "datasource" and ds[0]["query"] == "prometheus"
    titles = " | ".join(p["title"].lower() for p in d["panels"])
    for want in ("port packets", "port throughput", "service port packets", "new flows",
                 "drops", "backend active flows", "backend new flows", "backend up",
                 "flow table use", "busy ratio", "hand-offs", "config generation", "reloads"):
        assert want in titles, f"no panel about {want!r}"
    for p in d["panels"]:
        if p["type"] != "row":
            assert p["datasource"]["uid"] == "${DS_PROMETHEUS}", p["title"]
            assert p["targets"], p["title"]
    ids = [p["id"] for p in d["panels"]]
    assert len(ids) == len(set(ids))


def test_every_query_parses(tmp_path):
    """promtool's PromQL parser, through a rule file with one recording rule per query."""
    promtool = shutil.which("promtool")
    assert promtool, "promtool missing (Debian package prometheus)"
    queries = dashboard_queries() + rule_queries()
    assert len(queries) > 20
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"l4lb_dashboard:query{i}", "expr": substitute(e, GRAFANA_VARS)}
        for i, (_, e) in enumerate(queries)]}]}
    f = tmp_path / "rules.yml"
    f.write_text(yaml.safe_dump(rules))
    r = subprocess.run([promtool, "check", "rules", str(f)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    for f in MONITORING.glob("*rules*.y*ml"):
        r = subprocess.run([promtool, "check", "rules", str(f)], capture_output=True, text=True)
        assert r.returncode == 0, r.stdout + r.stderr


def test_scrape_config_passes_promtool():
    promtool = shutil.which("promtool")
    assert promtool, "promtool missing (Debian package prometheus)"
    r = subprocess.run([promtool, "check", "config", str(MONITORING / "prometheus.yml")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    cfg = yaml.safe_load((MONITORING / "prometheus.yml").read_text())
    job = [j for j in cfg["scrape_configs"] if j["job_name"] == "l4lb"]
    assert job and job[0]["scrape_interval"] == "5s"
    assert job[0].get("metrics_path", "/metrics") == "/metrics"


# ---- a real l4lbd -----------------------------------------------------------------------

def config(pcap_in, pcap_out, metrics_port, prefix, with_dns=True):
    def backends(b):
        return ", ".join("{ip: %s, weight: %d}" % kv for kv in b.items())
    dns = f"""
  - name: dns
    vip: {DNS_VIP}
    ports: [{{name: dns, protocol: UDP, port: 53, targetPort: 5353}}]
    backends: [{backends(DNS_BACKENDS)}]
""" if with_dns else ""
    # The telemetry socket is /var/run/dpdk/<prefix>/dpdk_telemetry.v2, --no-shconf or not;
    # the unique prefix keeps concurrent runs apart.
    return f"""
{pcap_dataplane(prefix, pcap_in, pcap_out)}control:
  metrics: {{listen: 127.0.0.1:{metrics_port}}}
services:
  - name: web
    vip: {WEB_VIP}
    ports:
      - {{name: http, protocol: TCP, port: 80, targetPort: 8080}}
      - {{name: https, protocol: TCP, port: 443, targetPort: 8443}}
    loadBalancerSourceRanges: [10.0.0.0/24]
    backends: [{backends(WEB_BACKENDS)}]
{dns}"""


def frames():
    base = Ether(dst=PORT_MAC, src=CLIENT_MAC)
    out = []
    for i in range(FLOWS):
        out.append(base / IP(src="10.0.0.2", dst=WEB_VIP) / TCP(sport=20000 + i, dport=80, flags="S"))
    for i in range(DENIED):  # outside loadBalancerSourceRanges
        out.append(base / IP(src="10.0.9.9", dst=WEB_VIP) / TCP(sport=30000 + i, dport=80))
    for i in range(WRONG_PORT):  # no Service port 81
        out.append(base / IP(src="10.0.0.2", dst=WEB_VIP) / TCP(sport=31000 + i, dport=81))
    for i in range(DNS_FLOWS):
        out.append(base / IP(src="10.0.0.2", dst=DNS_VIP) / UDP(sport=40000 + i, dport=53) / b"q")
    return out


def scrape(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        return r.read().decode()


def scraped_names(text):
    return {re.split(r"[{ ]", line, 1)[0] for line in text.splitlines()
            if line and not line.startswith("#")}


def value(text, name, **labels):
    for line in text.splitlines():
        m = re.match(rf"^{name}(?:\{{(.*)\}})? (\S+)$", line)
        if m and all(f'{k}="{v}"' in (m.group(1) or "") for k, v in labels.items()):
            return float(m.group(2))
    raise AssertionError(f"no {name}{labels} in the scrape")


class Telemetry:
    """A client of DPDK's telemetry v2 socket (what usertools/dpdk-telemetry.py speaks)."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.sock.settimeout(5)
        self.sock.connect(str(path))
        self.hello = json.loads(self.sock.recv(1024).decode())
        self.max_len = self.hello["max_output_len"]

    def __call__(self, cmd, params=None):
        self.sock.send((cmd if params is None else f"{cmd},{params}").encode())
        reply = json.loads(self.sock.recv(self.max_len).decode())
        return reply[cmd]

    def close(self):
        self.sock.close()


def rows(table):
    """A telemetry table (one array per column) as a list of dicts."""
    assert table["rows"] == table["total_rows"], "table was cut to fit the reply"
    cols = {k: v for k, v in table.items() if isinstance(v, list)}
    for k, v in cols.items():
        assert len(v) == table["rows"], f"column {k} has {len(v)} of {table['rows']} rows"
    return [{k: v[i] for k, v in cols.items()} for i in range(table["rows"])]


class Running:
    def __init__(self, tmp, text, prefix):
        self.cfg = tmp / "l4lb.yaml"
        self.cfg.write_text(text)
        self.log = tmp / "l4lbd.log"
        self.socket = Path("/var/run/dpdk") / prefix / "dpdk_telemetry.v2"
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen([str(L4LBD), "--config", str(self.cfg)], stdout=log,
                                         stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while "ready:" not in self.log.read_text():
            assert self.proc.poll() is None and time.monotonic() < deadline, self.log.read_text()
            time.sleep(0.1)
        time.sleep(2)  # net_pcap reads the whole pcap at once

    def reload(self, text):
        self.cfg.write_text(text)
        self.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while "reloaded" not in self.log.read_text():
            assert time.monotonic() < deadline, self.log.read_text()
            time.sleep(0.1)

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        assert self.proc.wait(timeout=15) == 0, self.log.read_text()


def prometheus_eval(tmp, target, queries):
    """Runs a real Prometheus scraping `target` every second, waits for a few samples and
    evaluates each query; returns {query: result list or error string}."""
    binary = shutil.which("prometheus")
    if binary is None:
        return None
    port = free_port()
    cfg = tmp / "prom.yml"
    cfg.write_text(yaml.safe_dump({"global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                                   "scrape_configs": [{"job_name": "l4lb", "static_configs": [
                                       {"targets": [target]}]}]}))
    log = open(tmp / "prometheus.log", "w")
    proc = subprocess.Popen([binary, f"--config.file={cfg}", f"--storage.tsdb.path={tmp / 'tsdb'}",
                             f"--web.listen-address=127.0.0.1:{port}"], stdout=log,
                            stderr=subprocess.STDOUT)
    api = f"http://127.0.0.1:{port}/api/v1/query?"

    def query(q):
        try:
            with urllib.request.urlopen(api + urllib.parse.urlencode({"query": q}), timeout=5) as r:
                body = json.loads(r.read())
        except urllib.error.HTTPError as e:
            return json.loads(e.read()).get("error", str(e))
        return body["data"]["result"] if body["status"] == "success" else body.get("error")

    try:
        deadline = time.monotonic() + 60
        while True:  # four samples of every series, so rate() over 10s has two or more
            try:
                r = query("count_over_time(l4lb_build_info[1m])")
                if isinstance(r, list) and r and float(r[0]["value"][1]) >= 4:
                    break
            except OSError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, (
                (tmp / "prometheus.log").read_text()[-3000:])
            time.sleep(0.5)
        return {q: query(q) for q in queries}
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=15)
        log.close()


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    assert L4LBD.is_file(), f"{L4LBD} is missing"
    tmp = tmp_path_factory.mktemp("monitoring")
    wrpcap(str(tmp / "in.pcap"), frames())
    port = free_port()
    prefix = f"l4mon{os.getpid()}"
    text = lambda dns: config(tmp / "in.pcap", tmp / "out.pcap", port, prefix, dns)  # noqa: E731
    lb = Running(tmp, text(True), prefix)
    result = {"tmp": tmp}
    try:
        result["scrape"] = scrape(port)
        tel = Telemetry(lb.socket)
        try:
            result["hello"] = tel.hello
            result["list"] = tel("/")
            result["help"] = tel("/help", "/l4lb/backends")
            for cmd in ("services", "backends", "flows", "status"):
                result[cmd] = tel(f"/l4lb/{cmd}")
            result["backends_web"] = tel("/l4lb/backends", "web")
            result["services_none"] = tel("/l4lb/services", "nosuch")
            queries = [substitute(e, TEST_VARS) for _, e in dashboard_queries() + rule_queries()]
            result["prometheus"] = prometheus_eval(tmp, f"127.0.0.1:{port}", queries)
            lb.reload(text(False))
            result["services_after"] = tel("/l4lb/services")
            result["backends_after"] = tel("/l4lb/backends")
            result["status_after"] = tel("/l4lb/status")
        finally:
            tel.close()
    finally:
        lb.stop()
        shutil.rmtree(Path("/var/run/dpdk") / prefix, ignore_errors=True)
    yield result


def test_every_queried_metric_exists_in_a_scrape(run):
    queried = queried_metrics()
    # The dashboard covers what the issue asks for.
    for want in ("l4lb_port_rx_packets_total", "l4lb_port_tx_bytes_total", "l4lb_drops_total",
                 "l4lb_service_port_packets_total", "l4lb_service_port_new_flows_total",
                 "l4lb_backend_active_flows", "l4lb_backend_up", "l4lb_flow_table_entries",
                 "l4lb_flow_table_capacity", "l4lb_busy_cycles_total", "l4lb_idle_cycles_total",
                 "l4lb_handoff_sent_total", "l4lb_config_generation",
                 "l4lb_config_reloads_total"):
        assert want in queried, f"the dashboard does not query {want}"
    missing = sorted(queried - scraped_names(run["scrape"]))
    assert not missing, f"queried by the dashboard, absent from a real scrape: {missing}"
    # The traffic made the labels the panels group by appear.
    assert value(run["scrape"], "l4lb_drops_total", reason="acl_denied") == DENIED
    assert value(run["scrape"], "l4lb_drops_total", reason="no_service_port") == WRONG_PORT


def test_prometheus_evaluates_every_panel(run):
    results = run["prometheus"]
    if results is None:
        pytest.skip("prometheus binary missing (Debian package prometheus)")
    for q, r in results.items():
        assert isinstance(r, list), f"{q}: {r}"
        # A comparison (`> 0`) may filter every series of an idle appliance; nothing else may
        # come back empty.
        if not re.search(r"[<>]=?\s*\d+\s*$", q):
            assert r, f"no series for {q}"


def test_telemetry_lists_the_commands(run):
    assert run["hello"]["version"].startswith("DPDK")
    for cmd in ("/l4lb/services", "/l4lb/backends", "/l4lb/flows", "/l4lb/status"):
        assert cmd in run["list"]
    assert "Service name" in run["help"]["/l4lb/backends"]


def test_telemetry_services(run):
    got = {(r["service"], r["port_name"]): r for r in rows(run["services"])}
    assert got == {
        ("web", "http"): dict(service="web", vip=WEB_VIP, port_name="http", protocol="TCP",
                              port=80, target_port=8080, backends=3, client_ip_affinity=0),
        ("web", "https"): dict(service="web", vip=WEB_VIP, port_name="https", protocol="TCP",
                               port=443, target_port=8443, backends=3, client_ip_affinity=0),
        ("dns", "dns"): dict(service="dns", vip=DNS_VIP, port_name="dns", protocol="UDP",
                             port=53, target_port=5353, backends=2, client_ip_affinity=0),
    }
    assert run["services_none"]["rows"] == 0
    after = rows(run["services_after"])
    assert {r["service"] for r in after} == {"web"} and len(after) == 2


def test_telemetry_backends(run):
    got = rows(run["backends"])
    assert len(got) == 3 * 2 + 2
    by = {(r["service"], r["service_port"], r["backend"]): r for r in got}
    for ip, weight in WEB_BACKENDS.items():
        for sp in ("http", "https"):
            assert by[("web", sp, ip)]["weight"] == weight
    for ip, weight in DNS_BACKENDS.items():
        assert by[("dns", "dns", ip)]["weight"] == weight
    # Every SYN to web:80 opened one flow on one backend; none went to https.
    assert sum(by[("web", "http", ip)]["new_flows"] for ip in WEB_BACKENDS) == FLOWS
    assert sum(by[("web", "https", ip)]["new_flows"] for ip in WEB_BACKENDS) == 0
    assert sum(by[("dns", "dns", ip)]["new_flows"] for ip in DNS_BACKENDS) == DNS_FLOWS
    for (svc, sp, ip), r in by.items():
        # No flow has ended yet, and telemetry agrees with the Prometheus exporter.
        assert r["active_flows"] == r["new_flows"] == r["to_backend_packets"]
        labels = dict(service=svc, service_port=sp, backend=ip)
        assert value(run["scrape"], "l4lb_backend_new_flows_total", **labels) == r["new_flows"]
        assert value(run["scrape"], "l4lb_backend_active_flows", **labels) == r["active_flows"]
    web = rows(run["backends_web"])
    assert {r["service"] for r in web} == {"web"} and len(web) == 6
    assert {r["service"] for r in rows(run["backends_after"])} == {"web"}


def test_telemetry_flows(run):
    (w,) = rows(run["flows"])
    assert w["lcore"] == 1 and w["queue"] == 0
    assert w["entries"] == FLOWS + DNS_FLOWS
    assert w["flows_created"] == FLOWS + DNS_FLOWS
    assert w["flows_expired"] == 0 and w["insert_failed"] == 0
    assert w["capacity"] == value(run["scrape"], "l4lb_flow_table_capacity", lcore="1")
    assert w["capacity"] >= 4096


def test_telemetry_status(run):
    s = run["status"]
    assert s["version"] == "0.1.0"
    assert s["generation"] == 1 and s["reloads_ok"] == 0 and s["reloads_failed"] == 0
    assert s["workers"] == [1] and s["ports"] == ["wan"]
    assert run["status_after"]["generation"] == 2 and run["status_after"]["reloads_ok"] == 1
