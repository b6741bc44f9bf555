"""Sanitizer reports fail the tests that caused them.

scripts/test runs some pmd-tests against an l4lbd (and l4lbctl) built with ASan and UBSan
(build-asan-dpdk; fuzz/README.md) with L4LB_SANITIZER_DIR set and ASAN_OPTIONS /
UBSAN_OPTIONS log_path=$L4LB_SANITIZER_DIR/report, so every report lands in a file
report.<pid> there whichever log the test sends the process's stderr to. After each test,
and after each module (when its l4lbd has stopped and LeakSanitizer has run), a new report
fails the run and is printed. Without L4LB_SANITIZER_DIR these fixtures do nothing.
"""

import os
from pathlib import Path

import pytest

SANITIZER_DIR = os.environ.get("L4LB_SANITIZER_DIR")


def new_reports():
    """Reports not yet seen, each renamed to *.seen so that it fails only once."""
    if not SANITIZER_DIR:
        return []
    reports = []
    for path in sorted(Path(SANITIZER_DIR).glob("report*")):
        if path.suffix == ".seen":
            continue
        reports.append(f"== {path.name}\n{path.read_text(errors='replace')}")
        path.rename(path.with_name(path.name + ".seen"))
    return reports


def fail_on_reports(when):
    reports = new_reports()
    if reports:
        pytest.fail(f"sanitizer report(s) {when}:\n" + "\n".join(reports), pytrace=False)


@pytest.fixture(autouse=True, scope="module")
def no_sanitizer_reports_in_module():
    # Autouse and module scope: set up before the module's own fixtures, so torn down after
    # them (after its l4lbd exits).
    fail_on_reports("before this module")
    yield
    fail_on_reports("while this module's l4lbd stopped")


@pytest.fixture(autouse=True)
def no_sanitizer_reports():
    yield
    fail_on_reports("during this test")
