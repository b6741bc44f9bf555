"""The l4lbd command line on config files: every conf/examples file passes
--check-config; every conf/invalid file makes both --check-config and --config exit 1
and print exactly the `file:line: reason` lines its `# expect:` comments name, before
any DPDK set-up happens."""

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
L4LBD = Path(os.environ.get("L4LBD", REPO / "build" / "src" / "l4lbd"))
EXAMPLES = sorted((REPO / "conf" / "examples").glob("*.yaml")) + [REPO / "conf" / "demo.yaml"]
INVALID = sorted((REPO / "conf" / "invalid").glob("*.yaml"))


def run(*args):
    assert L4LBD.is_file(), f"{L4LBD} is missing: build it first"
    return subprocess.run([str(L4LBD), *args], capture_output=True, text=True, timeout=30)


def expected_errors(path):
    lines = [l[len("# expect: "):] for l in path.read_text().splitlines()
             if l.startswith("# expect: ")]
    assert lines, f"{path} has no '# expect:' line"
    # The comments name the file by its base name; l4lbd names it as given.
    return [str(path) + l[len(path.name):] for l in lines]


def test_there_are_configs_to_check():
    assert len(EXAMPLES) >= 3 and len(INVALID) >= 15


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_passes_check(path):
    r = run("--check-config", str(path))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"{path}: ok"


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.name)
@pytest.mark.parametrize("mode", ["--check-config", "--config"])
def test_invalid_config_fails_with_its_message(path, mode):
    r = run(mode, str(path))
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    assert r.stderr.splitlines() == expected_errors(path)


def test_missing_file():
    r = run("--config", "/nonexistent/l4lb.yaml")
    assert r.returncode == 1
    assert r.stderr.startswith("/nonexistent/l4lb.yaml:0: cannot read file")


def test_no_config_is_a_usage_error():
    r = run()
    assert r.returncode == 2
    assert "--config FILE is required" in r.stderr
