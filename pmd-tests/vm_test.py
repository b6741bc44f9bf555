"""The load-balancer VM, booted: l4lbd on emulated PCI NICs inside a qemu guest.

  client ns l4v-client [TAP l4v-wan]==virtio-net 00:04.0==[ VM: l4lbd ]
                                           ==virtio-net 00:05.0==[TAP l4v-lan] node ns l4v-node -- pods a/b/c
  management: a third virtio-net (00:06.0, kernel driver in the guest) on qemu user
  networking; hostfwd 127.0.0.1:<free ports> -> guest metrics :9100 and API :9180

deploy/image/build-image.sh builds (or takes from its cache) the Debian 12 image and
appends an overlay with build/src/l4lbd, deploy/l4lb-setup, the init and this test's
config. qemu runs under TCG (no KVM here) with `-cpu max` (DPDK needs SSE4.2). qemu
creates the TAPs in the root namespace; once it has opened them, topo_attach_tap
(pmd-tests/lib/topo.sh, prefix l4v) moves them into the client and node namespaces.
In the guest the init runs l4lb-setup (hugepages, binding) and l4lbd; l4lbd's kernel
twin on the lan port carries its health probes. Two binding modes, one boot each:

- uio_pci_generic: `-machine pc`, transitional virtio NICs, no IOMMU.
- vfio-pci: `-machine q35` with an emulated Intel IOMMU (intremap, device IOTLB), modern
  virtio NICs behind it (iommu_platform, ATS), guest `intel_iommu=on`.

Both boot the same image and config: the wan port is named by its MAC (l4lb-setup finds
its PCI device, l4lbd the DPDK port with that MAC), the lan port by its PCI address.

Each boot: >= 100 HTTP connections through the VIP reach every pod, which sees the
client's address; a killed pod is taken out by the TCP health check (l4lb_backend_up 0,
no new flows); /metrics and /v1/status come through the management path. qemu is
killed and the namespaces removed afterwards, whatever happened. Run as root:

  /usr/bin/python3 -m pytest -v pmd-tests/vm_test.py

Needs qemu-system-x86, debootstrap, cpio (scripts/lib/deps.sh) and network access to
the Debian mirror for the first (uncached) image build.
"""

import json
import os
import re
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from e2e_test import L4LBD, LIB, PODS, PY, REPO, TOPO, free_tcp_port, topo, wait_for_line

PREFIX = "l4v"
CLIENT_IP = "10.0.0.2"
VIP, VIP_PORT = "172.16.12.100", 80
HTTP_COUNT = 120
BUILD_IMAGE = REPO / "deploy" / "image" / "build-image.sh"
QEMU = "qemu-system-x86_64"
MACS = {"wan": "52:54:00:4c:34:01", "lan": "52:54:00:4c:34:02", "mgmt": "52:54:00:4c:34:03"}
PCI = {"wan": "0000:00:04.0", "lan": "0000:00:05.0", "mgmt": "0000:00:06.0"}
IMAGE_TIMEOUT_S = 420   # cold: debootstrap and the kernel download
BOOT_TIMEOUT_S = 240    # kernel, init, l4lb-setup and l4lbd up, under TCG on a busy host
HEALTH_TIMEOUT_S = 20   # intervalMs 500 x unhealthyThreshold 2 + timeoutMs, under TCG

MODES = {
    "uio": {
        "driver": "uio_pci_generic",
        "machine": ["-machine", "pc"],
        "nic": "",
        "cmdline": "",
    },
    "vfio": {
        "driver": "vfio-pci",
        "machine": ["-machine", "q35", "-device", "intel-iommu,intremap=on,device-iotlb=on"],
        "nic": ",disable-legacy=on,iommu_platform=on,ats=on",
        "cmdline": " intel_iommu=on",
    },
}


def config_text():
    """The wan port named by its MAC, the lan port by its PCI address (both ways l4lb-setup
    and l4lbd find a NIC), in both modes."""
    return f"""\
dataplane:
  eal: [--file-prefix, l4v]
  workers: [1]
  flowTable: {{capacity: 65536}}
  ports:
    - {{name: wan, device: "{MACS['wan']}", address: 10.0.0.1/24}}
    - {{name: lan, device: "{PCI['lan']}", address: 10.128.0.1/24, tap: lan-k}}
  routes:
    - {{prefix: 10.4.1.0/24, via: 10.128.0.21}}
control:
  api: {{listen: 0.0.0.0:9180}}
  metrics: {{listen: 0.0.0.0:9100}}
services:
  - name: frontend
    vip: {VIP}
    ports: [{{name: http, protocol: TCP, port: {VIP_PORT}, targetPort: 8080}}]
    healthCheck: {{type: tcp, intervalMs: 500, timeoutMs: 400, healthyThreshold: 1, unhealthyThreshold: 2}}
    allUnhealthy: drop
    backends: [{{ip: 10.4.1.11}}, {{ip: 10.4.1.12}}, {{ip: 10.4.1.13}}]
"""


def run(cmd, timeout, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)


def qemu_args(mode, out, console, control, metrics_port, api_port):
    m = MODES[mode]
    nic = m["nic"]
    args = [QEMU, *m["machine"], "-accel", "tcg", "-cpu", "max", "-smp", "2", "-m", "2048",
            "-display", "none", "-monitor", "none", "-serial", f"file:{console}",
            "-serial", f"unix:{control},server=on,wait=off",  # the guest's ttyS1
            "-no-reboot", "-nodefaults",
            "-kernel", str(out / "vmlinuz"), "-initrd", str(out / "initrd"),
            "-append", (f"console=ttyS0 panic=-1 loglevel=4 "
                        f"l4lb.mgmt={PCI['mgmt']},10.0.2.15/24,10.0.2.2 "
                        f"l4lb.control=ttyS1 l4lb.driver={m['driver']}{m['cmdline']}")]
    for port in ("wan", "lan"):
        args += ["-netdev", f"tap,id={port},ifname={PREFIX}-{port},script=no,downscript=no",
                 "-device", (f"virtio-net-pci,netdev={port},mac={MACS[port]},"
                             f"addr={PCI[port][-4:-2]}.0,romfile={nic}")]
    args += ["-netdev", (f"user,id=mgmt,hostfwd=tcp:127.0.0.1:{metrics_port}-:9100,"
                         f"hostfwd=tcp:127.0.0.1:{api_port}-:9180"),
             "-device", f"virtio-net-pci,netdev=mgmt,mac={MACS['mgmt']},addr=06.0,romfile="]
    return args


def get(url, timeout=10):
    """A GET through qemu's user networking; retried while the guest side is not up."""
    last = None
    for _ in range(5):
        try:
            return urllib.request.urlopen(url, timeout=timeout).read().decode()
        except OSError as e:
            last = e
            time.sleep(1)
    raise AssertionError(f"GET {url}: {last}")


def samples(text, name):
    """{frozenset(labels): value} of one metric family in a Prometheus exposition."""
    out = {}
    for line in text.splitlines():
        m = re.match(rf"{name}(?:\{{(.*)\}})? (\S+)$", line)
        if m:
            out[frozenset(re.findall(r'(\w+)="([^"]*)"', m.group(1) or ""))] = float(m.group(2))
    return out


def backend_up(metrics_port):
    text = get(f"http://127.0.0.1:{metrics_port}/metrics")
    return {dict(k)["backend"]: v for k, v in samples(text, "l4lb_backend_up").items()}


class Vm:
    """One boot: namespaces and pods on the host, qemu with the image, and teardown."""

    def __init__(self, mode, work, image):
        self.mode, self.work, self.image = mode, work, image
        self.console = work / "console.log"
        self.control = work / "control.sock"
        self.metrics_port, self.api_port = free_tcp_port(), free_tcp_port()
        self.qemu = None
        self.pods = {}

    def console_tail(self, lines=60):
        try:
            return "\n".join(self.console.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no console output)"

    def start_pod(self, name):
        p = subprocess.Popen(["ip", "netns", "exec", f"{PREFIX}-{name}", PY,
                              str(LIB / "pod_server.py"), "--name", name, "--tcp-port", "8080",
                              "--udp-port", "5353"], stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
        ok, seen = wait_for_line(p, "ready", 10)
        assert ok, f"{name} did not start: {seen}"
        self.pods[name] = p

    def boot(self):
        topo("up_tap", PREFIX)  # namespaces and pods, no links to l4lbd yet
        for name in PODS:
            self.start_pod(name)
        args = qemu_args(self.mode, self.image, self.console, self.control, self.metrics_port,
                         self.api_port)
        (self.work / "qemu.args").write_text(" ".join(args) + "\n")
        self.qemu = subprocess.Popen(args, stdout=open(self.work / "qemu.out", "w"),
                                     stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 20
        while run(["ip", "link", "show", f"{PREFIX}-lan"], 5).returncode != 0:
            assert self.qemu.poll() is None, (self.work / "qemu.out").read_text()
            assert time.monotonic() < deadline, "qemu did not create its TAPs"
            time.sleep(0.2)
        r = run(["bash", "-c", f'source "{TOPO}" && topo_attach_tap {PREFIX}'], 60,
                env={**os.environ, "TOPO_TAP_TX_OFF": "1"})
        assert r.returncode == 0, f"topo_attach_tap: {r.stdout}{r.stderr}"
        deadline = time.monotonic() + BOOT_TIMEOUT_S
        t0 = time.monotonic()
        while time.monotonic() < deadline:
            text = self.console.read_text(errors="replace") if self.console.exists() else ""
            if "ready:" in text:
                self.boot_s = time.monotonic() - t0
                return
            if self.qemu.poll() is not None or "l4lbd exited" in text or "Kernel panic" in text:
                break
            time.sleep(0.5)
        raise AssertionError(f"l4lbd not ready in the VM ({self.mode}) after "
                             f"{time.monotonic() - t0:.0f} s:\n{self.console_tail()}")

    def console_text(self):
        return self.console.read_text(errors="replace")

    def stop_l4lbd(self):
        """"stop" on the guest's ttyS1: the init sends l4lbd SIGTERM, then restores the NICs."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(10)
            s.connect(str(self.control))
            s.sendall(b"stop\n")
            assert wait_until(lambda: "l4lbd exited with status" in self.console_text(), 60), (
                self.console_tail())
            wait_until(lambda: "sysrq: Power Off" in self.console_text(), 30)

    def client(self, count, timeout=5.0):
        r = run(["ip", "netns", "exec", f"{PREFIX}-client", PY, str(LIB / "client.py"), "http",
                 "--vip", VIP, "--port", str(VIP_PORT), "--count", str(count),
                 "--timeout", str(timeout), "--stop-after-failures", "10", "--json"],
                count * (timeout + 1) + 30)
        assert r.stdout.strip(), f"client.py printed nothing: {r.stderr}"
        return json.loads(r.stdout)

    def teardown(self):
        if self.qemu is not None and self.qemu.poll() is None:
            os.killpg(self.qemu.pid, signal.SIGKILL)  # the guest's state is thrown away
            self.qemu.wait(timeout=10)
        for p in self.pods.values():
            if p.poll() is None:
                p.terminate()
        for p in self.pods.values():
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        topo("down", PREFIX)


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    """vmlinuz and initrd: the cached base and an overlay with this build and config."""
    if os.geteuid() != 0:
        pytest.fail("needs root (network namespaces, TAPs, debootstrap)")
    assert L4LBD.is_file(), f"{L4LBD} is missing: build it first (meson compile -C build)"
    out = tmp_path_factory.mktemp("vm-image")
    config = out / "l4lb.yaml"
    config.write_text(config_text())
    r = run([str(L4LBD), "--check-config", str(config)], 30)
    assert r.returncode == 0, f"{config}: {r.stdout}{r.stderr}"
    t0 = time.monotonic()
    r = run(["bash", str(BUILD_IMAGE), "--l4lbd", str(L4LBD), "--config", str(config),
             "--out", str(out)], IMAGE_TIMEOUT_S)
    assert r.returncode == 0, f"build-image.sh failed:\n{r.stdout}{r.stderr}"
    print(f"\nimage: {time.monotonic() - t0:.1f} s; {r.stderr.strip()}")
    return out


@pytest.fixture(scope="module", params=list(MODES))
def vm(request, image, tmp_path_factory):
    mode = request.param
    topo("down", PREFIX)  # whatever an earlier run left
    vm = Vm(mode, tmp_path_factory.mktemp(f"vm-{mode}"), image)
    try:
        vm.boot()
        print(f"\n{mode}: l4lbd ready {vm.boot_s:.1f} s after qemu started")
        yield vm
    finally:
        vm.teardown()
    r = run(["ip", "link", "show"], 10)
    assert f"{PREFIX}-" not in r.stdout, f"links left behind:\n{r.stdout}"


def test_vm_forwards_on_pci_ports_and_health_checks_take_out_a_killed_pod(vm):
    console = vm.console.read_text(errors="replace")
    driver = MODES[vm.mode]["driver"]
    # l4lb-setup moved both data NICs from the kernel's virtio driver to the DPDK one.
    for port in ("wan", "lan"):
        assert f"{PCI[port]}: virtio-pci -> {driver}" in console, vm.console_tail()
    assert f"{PCI['mgmt']}: virtio-pci ->" not in console, "the management NIC stays in the kernel"
    status = json.loads(get(f"http://127.0.0.1:{vm.api_port}/v1/status"))
    devices = json.dumps(status)
    assert MACS["wan"] in devices and PCI["lan"] in devices, status

    # Every pod answers through the VIP and sees the client's own address.
    assert wait_until(lambda: set(backend_up(vm.metrics_port).values()) == {1.0}, 30), (
        backend_up(vm.metrics_port))
    run1 = vm.client(HTTP_COUNT)
    print(f"{vm.mode}: {HTTP_COUNT} connections in {run1['elapsed_s']} s: {run1['per_pod']}")
    assert run1["ok"] == HTTP_COUNT, f"{run1}\n{vm.console_tail()}"
    assert set(run1["per_pod"]) == set(PODS), run1["per_pod"]
    assert run1["seen_client_ips"] == [CLIENT_IP], "the pods must see the client's address"
    assert run1["peers"] == [f"{VIP}:{VIP_PORT}"]

    # Kill pod-b: its TCP health check fails and it leaves the Maglev table.
    vm.pods["pod-b"].kill()
    vm.pods["pod-b"].wait(timeout=5)
    t0 = time.monotonic()
    assert wait_until(lambda: backend_up(vm.metrics_port).get(PODS["pod-b"]) == 0.0,
                      HEALTH_TIMEOUT_S), backend_up(vm.metrics_port)
    print(f"{vm.mode}: pod-b down in metrics {time.monotonic() - t0:.1f} s after the kill")
    run2 = vm.client(30)
    assert run2["ok"] == 30, run2
    assert set(run2["per_pod"]) == {"pod-a", "pod-c"}, run2["per_pod"]

    # Key series of the exposition, scraped through the management NIC.
    text = get(f"http://127.0.0.1:{vm.metrics_port}/metrics")
    rx = samples(text, "l4lb_port_rx_packets_total")
    wan_rx = sum(v for k, v in rx.items() if dict(k).get("port") == "wan")
    assert wan_rx >= 4 * (HTTP_COUNT + 30), rx
    new_flows = samples(text, "l4lb_service_port_new_flows_total")
    assert sum(new_flows.values()) >= HTTP_COUNT + 30, new_flows
    per_backend = {dict(k)["backend"]: v
                   for k, v in samples(text, "l4lb_backend_new_flows_total").items()}
    assert set(per_backend) == set(PODS.values()) and min(per_backend.values()) > 0, per_backend
    transitions = samples(text, "l4lb_health_transitions_total")
    assert sum(transitions.values()) >= 1, transitions
    assert samples(text, "l4lb_build_info"), "no l4lb_build_info"

    # Stop: l4lbd exits 0 on SIGTERM, and l4lb-setup gives both NICs back to the kernel.
    vm.stop_l4lbd()
    console = vm.console_text()
    assert "l4lbd exited with status 0" in console, vm.console_tail()
    for port in ("wan", "lan"):
        assert f"{PCI[port]}: back to virtio-pci" in console, vm.console_tail()


def wait_until(predicate, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return True
        except (AssertionError, OSError, KeyError):
            pass
        time.sleep(0.5)
    return False
