"""Smoke test of the benchmark harness (scripts/bench), not of performance.

Runs `scripts/bench --quick --json --no-build --nice 0` (about 55 s: every scenario for
1 s; `scrape` runs established-1k twice, without and with a 10 Hz /metrics scraper) and
checks the output's shape: one JSON object per scenario, every scenario present
and successful, the figures positive, the ratio fields present, the generator's sampled
DNAT checks clean. It asserts no timing bound: benchmarks are not pass/fail.
Two more runs (~15 s each) check `--workers 2`: owner-steered, nothing is handed between
workers; `--spread`, packets are handed over and still no flow is split.

Uses build/src/l4lbd and build/bench/l4lb-gen (L4LBD=..., L4LB_GEN=... override); a
missing binary is a failure, never a skip. Run as root.
"""

import json
import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCENARIOS = ["baseline", "established-1k", "established-1m", "new-flows", "large-config",
             "kernel-nftables", "scrape"]


def test_bench_quick_json_shape():
    r = subprocess.run([str(REPO / "scripts" / "bench"), "--quick", "--json", "--no-build",
                        "--build-dir", str(REPO / "build"),
                        "--nice", "0"], capture_output=True, text=True, timeout=200, cwd=REPO)
    rows = [json.loads(line) for line in r.stdout.splitlines() if line.strip()]
    assert [row["scenario"] for row in rows] == SCENARIOS, r.stderr[-3000:]
    for row in rows:
        assert "error" not in row, f"{row['scenario']}: {row.get('error')}"
        for key in ("mpps", "ns_per_packet", "offered_mpps", "ratio_to_baseline"):
            assert isinstance(row[key], (int, float)) and row[key] > 0, (row["scenario"], key, row)
        assert row["packets"] > 0 and row["drops"] >= 0
        assert row["checked"] > 0 and row["check_failed"] == 0, row
        if row["scenario"] != "kernel-nftables":
            assert row["cycles_per_packet"] > 0 and row["busy_polls"] > 0
            assert 0 < row["avg_burst"] <= 32
    assert rows[0]["ratio_to_baseline"] == 1.0
    assert r.returncode == 0, r.stderr[-3000:]
    new = next(row for row in rows if row["scenario"] == "new-flows")
    assert new["flows_created"] > 0
    scraped = next(row for row in rows if row["scenario"] == "scrape")
    assert scraped["scrapes"] > 0 and scraped["scrape_errors"] == 0, scraped
    assert scraped["mpps_unscraped"] > 0 and scraped["scrape_ratio"] > 0
    big = next(row for row in rows if row["scenario"] == "established-1m")
    assert big["flows_created"] >= 1_000_000


def bench_rows(*args):
    r = subprocess.run([str(REPO / "scripts" / "bench"), "--quick", "--json", "--no-build",
                        "--build-dir", str(REPO / "build"), "--nice", "0", *args],
                       capture_output=True, text=True, timeout=200, cwd=REPO)
    rows = [json.loads(line) for line in r.stdout.splitlines() if line.strip()]
    assert r.returncode == 0, r.stderr[-3000:]
    for row in rows:
        assert "error" not in row, f"{row['scenario']}: {row.get('error')}"
        assert row["workers"] == 2 and row["machine"]["workers"] == 2, row
        assert row["checked"] > 0 and row["check_failed"] == 0, row
        assert abs(row["total_mpps"] - 2 * row["mpps"]) < 1e-9, row
    return rows


def test_bench_two_workers_owner_steered():
    """--workers 2: the generator puts each flow on its owner's queue, with l4lbd's own
    owner hash (lb/steering_plan.h), so no packet is handed between workers; every flow
    is created once."""
    rows = bench_rows("--workers", "2", "--only", "established-1k,new-flows")
    assert [row["scenario"] for row in rows] == ["baseline", "established-1k", "new-flows"]
    est, new = rows[1], rows[2]
    assert est["handoff_sent"] == 0 and new["handoff_sent"] == 0, (est, new)
    assert est["flows_created"] == 1000, est
    assert new["flows_created"] > 0


def test_bench_two_workers_spread():
    """--workers 2 --spread: flow i on queue i mod 2, so about half the packets reach the
    worker that does not own them and are handed over; still no flow is split (each of
    the 1,000 flows is created exactly once, by its owner) and every sampled frame is
    DNATed correctly."""
    rows = bench_rows("--workers", "2", "--spread", "--only", "established-1k")
    est = rows[1]
    assert est["scenario"] == "established-1k" and est["handoff_sent"] > 0, est
    assert est["flows_created"] == 1000, est
