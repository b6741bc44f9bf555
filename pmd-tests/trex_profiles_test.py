"""The TRex profiles under pmd-tests/trex/ byte-compile.

TRex is not installable on the development machine, so its modules (trex_stl_lib,
trex.astf) do not import here: this test only compiles the profiles with
`/usr/bin/python3 -m py_compile` (syntax; bytecode goes to /tmp), and checks that
trex_cfg.yaml parses (where PyYAML is installed). The
profiles were not run against TRex.
"""

import subprocess

import pytest
from pathlib import Path

TREX = Path(__file__).resolve().parent / "trex"


def test_trex_profiles_compile():
    profiles = sorted(TREX.glob("*.py"))
    assert {p.name for p in profiles} >= {"stl_l4lb.py", "stl_large_config.py",
                                          "astf_http_cps.py"}
    for p in profiles:
        r = subprocess.run(["/usr/bin/python3", "-m", "py_compile", str(p)],
                           capture_output=True, text=True,
                           env={"PYTHONPYCACHEPREFIX": "/tmp/l4lb-trex-pycache"})
        assert r.returncode == 0, f"{p.name}: {r.stderr}"


def test_trex_cfg_parses():
    yaml = pytest.importorskip("yaml")
    cfg = yaml.safe_load((TREX / "trex_cfg.yaml").read_text())
    assert cfg[0]["port_limit"] == 2 and len(cfg[0]["interfaces"]) == 2
