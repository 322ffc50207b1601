"""A smoke run of the benchmark (N = 10, and 20 in the wide layout), to keep it working. No
timing is asserted here."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def leftover_processes(marker: str) -> list[str]:
    """Processes whose command line names `marker` (the benchmark's daemon would)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if marker.encode() in cmdline:
            found.append(f"{pid}: {cmdline.decode(errors='replace')}")
    return found


def test_bench_smoke_run_reports_every_measurement_and_leaves_nothing_behind(
        tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to create network namespaces")
    prefix = f"mvbt{uuid.uuid4().hex[:6]}"
    out = tmp_path / "results.json"
    result = subprocess.run(
        [sys.executable, "-m", "bench.bench", "--sizes", "10", "--wide-sizes", "20", "--quick",
         "--repairs", "4",
         "--idle", "0.5", "--prefix", prefix, "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "targets" in result.stdout

    results = json.loads(out.read_text())
    scenarios = {s["layout"]: s for s in results["scenarios"]}
    assert set(scenarios) == {"one", "spread", "wide"}
    assert scenarios["wide"]["parents"] == 100 and scenarios["wide"]["n"] == 20
    for s in scenarios.values():
        assert s["converge"]["daemon_s"] and s["converge"]["ip_batch_s"]
        assert s["converge"]["parse_median_ms"] is not None  # the daemon logs its own parse
        assert s["noop"]["writes"] == 0
        assert s["noop"]["daemon_writes"] == 0
        one_shot = s["noop"]["one_shot"]
        assert one_shot["interpreter_ms"] > 0 and one_shot["validate_empty_ms"] > 0
        assert {len(walls) for walls in one_shot["walls_ms"].values()} == {one_shot["reps"]}
        assert [c["field"] for c in s["change"]] == ["mtu", "mode"]
        assert all(c["writes"] >= 1 for c in s["change"])
        assert s["repair"]["reps"] == 4
        assert s["prune"]["one_by_one"]["seconds"] > 0
        assert s["idle"]["peak_rss_mb"] > 0 and s["idle"]["loop_wakeups"] >= 0
    one, spread = scenarios["one"]["converge"], scenarios["spread"]["converge"]
    assert one["networkd_median_s"] is not None or one["networkd_skipped"]
    assert spread["networkd_median_s"] is None and spread["networkd_skipped"]
    targets = {t["target"] for t in results["targets"]}
    assert {"no-op pass, in-process", "repair, from the delete's ack", "prune",
            "CLI start-up (validate, empty spec)", "one-shot no-op (plan), above start-up",
            } <= targets

    netns = os.listdir("/run/netns") if os.path.isdir("/run/netns") else []
    assert [n for n in netns if n.startswith(prefix)] == []
    assert leftover_processes(prefix) == []
