"""The metrics file, checked with the real tools: promtool on the file the daemon wrote and on
the alerting rules, and a real node_exporter serving it over HTTP on 127.0.0.1."""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import socket
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from macvland.apply import Outcome
from macvland.errors import KernelError
from macvland.metrics import CONDITIONS, Metrics
from macvland.model import DesiredState, Key, MacvlanSpec, ObservedState
from macvland.ops import Create
from macvland.plan import Condition, Plan, Verdict
from macvland.reconcile import PassResult
from tests.conftest import Lab
from tests.helpers import MACVLAND, Daemon, Process
from tests.test_daemon import Expect, all_there, spec_text

REPO = Path(__file__).parent.parent
SPEC = spec_text({"name": "mv-a", "parent": "eth1", "mode": "bridge"},
                 {"name": "mv-b", "parent": "eth2", "mode": "vepa"})
NODE_EXPORTER = "prometheus-node-exporter"  # Debian's name for node_exporter


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of a Prometheus text exposition, by name and labels."""
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(found: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str,
          **labels: str) -> float | None:
    return found.get((name, frozenset(labels.items())))


def promtool(*args: str, cwd: Path | None = None,
             stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["promtool", *args], input=stdin, capture_output=True, text=True,
                          cwd=cwd, check=False)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def node_exporter(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """node_exporter with only the textfile collector, on a free port of 127.0.0.1: the
    directory it reads and the URL it serves."""
    if shutil.which(NODE_EXPORTER) is None:
        pytest.fail(f"{NODE_EXPORTER} is missing: `make deps` installs it")
    directory = tmp_path / "textfile"
    directory.mkdir()
    address = f"127.0.0.1:{free_port()}"
    exporter = Process("node_exporter", tmp_path / "node_exporter.log")
    try:
        exporter.spawn([NODE_EXPORTER, "--collector.disable-defaults", "--collector.textfile",
                        f"--collector.textfile.directory={directory}",
                        f"--web.listen-address={address}"])
        yield directory, f"http://{address}/metrics"
    finally:
        exporter.kill()


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return str(response.read().decode())


def test_node_exporter_serves_the_daemons_metrics_after_a_drift_repair(
        lab: Lab, daemon: Daemon, spec_dir: Path, node_exporter: tuple[Path, str]) -> None:
    directory, url = node_exporter
    config = spec_dir / "macvland.yaml"
    config.write_text(SPEC)
    metrics = directory / "macvland.prom"
    daemon.start(config, extra=["--metrics-file", str(metrics)])
    daemon.wait_for(lambda: all_there(lab, Expect("mv-a", "eth1", "bridge"),
                                      Expect("mv-b", "eth2", "vepa")), "both interfaces")
    daemon.wait_for(lambda: metrics.exists(), "the metrics file")

    lab.ip("link", "del", "mv-a")
    daemon.wait_for(lambda: all_there(lab, Expect("mv-a", "eth1", "bridge")), "mv-a repaired")

    def repaired() -> dict[tuple[str, frozenset[tuple[str, str]]], float] | None:
        found = samples(scrape(url))
        return found if value(found, "macvland_drift_corrections_total") == 1 else None

    found = daemon.wait_for(repaired, "node_exporter to serve the repair")
    assert value(found, "node_textfile_scrape_error") == 0
    assert value(found, "macvland_interfaces", condition="in_sync") == 2
    for condition in set(CONDITIONS) - {"in_sync"}:
        assert value(found, "macvland_interfaces", condition=condition) == 0, condition
    assert value(found, "macvland_operations_total", action="create", result="ok") == 3
    assert value(found, "macvland_spec_accepted_total") == 1
    assert value(found, "macvland_spec_rejected_total") == 0
    assert value(found, "macvland_spec_info",
                 sha256=hashlib.sha256(SPEC.encode()).hexdigest()) == 1
    # The start-up pass and the repair; an event reaching the daemon first (the link going
    # down before it is gone, or its first table being seeded) starts a pass of its own
    # at once, so a few more are normal, a pass per event is not.
    passes = value(found, "macvland_passes_total")
    assert passes is not None and 2 <= passes <= 4
    last = value(found, "macvland_last_pass_timestamp_seconds")
    assert last is not None and last > 0
    duration = value(found, "macvland_last_pass_duration_seconds")
    assert duration is not None and duration > 0

    checked = promtool("check", "metrics", stdin=metrics.read_text())
    assert checked.returncode == 0, checked.stdout + checked.stderr

    config.write_text(SPEC.replace("mode: vepa", "mode: vepx"))

    def refused() -> bool:
        found = samples(scrape(url))
        return (value(found, "macvland_spec_rejected_total") == 1
                and value(found, "macvland_spec_latest_rejected") == 1)

    daemon.wait_for(refused, "the rejected spec in the metrics")
    assert [p.name for p in directory.iterdir()] == ["macvland.prom"]  # no temporary left


def test_alert_rules_pass_promtool_and_their_unit_tests() -> None:
    # The README's commands, from the checkout's top.
    checked = promtool("check", "rules", "deploy/prometheus/macvland.rules.yaml", cwd=REPO)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = promtool("test", "rules", "deploy/prometheus/macvland.rules.test.yaml", cwd=REPO)
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_an_unchanged_file_is_not_rewritten(tmp_path: Path) -> None:
    path = tmp_path / "macvland.prom"
    metrics = Metrics(str(path))
    metrics.write()
    before = os.stat(path)
    metrics.write()
    assert os.stat(path).st_ino == before.st_ino  # a rewrite is a rename: a new inode
    metrics.rejected()
    metrics.write()
    assert os.stat(path).st_ino != before.st_ino
    assert "macvland_spec_rejected_total 1.0" in path.read_text()


def test_an_unwritable_directory_is_a_warning_not_a_crash(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "gone" / "macvland.prom"
    metrics = Metrics(str(path))
    metrics.write()
    metrics.write()
    warnings = [r.getMessage() for r in caplog.records]
    assert warnings == [f"cannot write the metrics file {path}: No such file or directory"]


@pytest.mark.parametrize(("path", "error"), [
    pytest.param("/tmp/macvland.txt", "must end in .prom", id="not-prom"),
    pytest.param("/nonexistent-dir/macvland.prom", "no such directory", id="no-directory"),
])
def test_a_bad_metrics_path_is_refused_at_start(path: str, error: str) -> None:
    run = subprocess.run([MACVLAND, "run", "--metrics-file", path],
                         capture_output=True, text=True, check=False)
    assert run.returncode == 2
    assert error in run.stderr


def _spec(name: str) -> MacvlanSpec:
    return MacvlanSpec(name=name, parent="eth1")


def _result(verdicts: list[tuple[str, Condition]], outcomes: list[Outcome]) -> PassResult:
    plan = Plan((), tuple(Verdict(_spec(name), condition) for name, condition in verdicts))
    return PassResult(plan, tuple(outcomes), plan, ObservedState())


def _create(name: str, **kwargs: Any) -> Outcome:
    return Outcome(Create(_spec(name), parent_ifindex=2), **kwargs)


def _family(metrics: Metrics) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return samples(generate_latest(metrics.registry).decode())


@pytest.mark.parametrize(("verdicts", "held", "expected"), [
    pytest.param([("a", Condition.IN_SYNC), ("b", Condition.PENDING)], set(),
                 {"in_sync": 1, "pending": 1}, id="in-sync-and-pending"),
    pytest.param([("a", Condition.DRIFTED), ("b", Condition.CONFLICT), ("c", Condition.ERROR)],
                 set(), {"drifted": 1, "conflict": 1, "error": 1}, id="one-of-each-problem"),
    pytest.param([("a", Condition.DRIFTED), ("b", Condition.IN_SYNC)], {(None, "a")},
                 {"held": 1, "in_sync": 1}, id="held-counts-as-held-not-drifted"),
    pytest.param([], set(), {}, id="no-interfaces-every-condition-zero"),
])
def test_interfaces_by_condition(verdicts: list[tuple[str, Condition]], held: set[Key],
                                 expected: dict[str, int], tmp_path: Path) -> None:
    metrics = Metrics(str(tmp_path / "m.prom"))
    metrics.passed(_result(verdicts, []), lambda o: "startup", {"startup"}, held, 0.01, 0)
    found = _family(metrics)
    for condition in CONDITIONS:
        assert value(found, "macvland_interfaces", condition=condition) == \
            expected.get(condition, 0), condition


@pytest.mark.parametrize(("trigger", "outcomes", "operations", "corrections"), [
    pytest.param("startup", [_create("a"), _create("b")], {("create", "ok"): 2}, 0,
                 id="startup-creates-are-not-corrections"),
    pytest.param("drift", [_create("a")], {("create", "ok"): 1}, 1,
                 id="a-create-after-drift-is-a-correction"),
    pytest.param("resync", [_create("a", error=KernelError(errno.EEXIST)),
                            _create("b", skipped=True)],
                 {("create", "failed"): 1, ("create", "skipped"): 1}, 0,
                 id="failures-are-counted-but-correct-nothing"),
])
def test_operations_and_drift_corrections(
        trigger: str, outcomes: list[Outcome], operations: dict[tuple[str, str], int],
        corrections: int, tmp_path: Path) -> None:
    metrics = Metrics(str(tmp_path / "m.prom"))
    metrics.passed(_result([], outcomes), lambda o: trigger, {trigger}, set(), 0.01, 0)
    found = _family(metrics)
    for (kind, result), count in operations.items():
        assert value(found, "macvland_operations_total", action=kind, result=result) == count
    assert value(found, "macvland_drift_corrections_total") == corrections
    assert value(found, "macvland_resyncs_total") == (1 if trigger == "resync" else 0)


def test_overflows_count_what_the_watcher_saw_since_the_last_pass(tmp_path: Path) -> None:
    metrics = Metrics(str(tmp_path / "m.prom"))
    for seen in (0, 2, 2, 5):
        metrics.passed(_result([], []), lambda o: "drift", {"drift"}, set(), 0.01, seen)
    assert value(_family(metrics), "macvland_netlink_overflows_total") == 5


def test_a_return_to_the_spec_in_force_is_not_a_new_acceptance(tmp_path: Path) -> None:
    metrics = Metrics(str(tmp_path / "m.prom"))
    desired = DesiredState((_spec("a"),), "x.yaml", "ab" * 32)
    metrics.accepted(desired, True)
    metrics.rejected()
    metrics.accepted(desired, False)  # the bad edit was reverted
    found = _family(metrics)
    assert value(found, "macvland_spec_accepted_total") == 1
    assert value(found, "macvland_spec_rejected_total") == 1
    assert value(found, "macvland_spec_latest_rejected") == 0
    assert value(found, "macvland_spec_info", sha256="ab" * 32) == 1
