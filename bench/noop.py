"""2. The no-op pass: nothing to do, with N interfaces in place.

In-process, `reconcile()` without a link cache (one dump per namespace, as `macvland apply`
does): median time and netlink writes. The daemon's own pass after a SIGHUP (from link tables
kept by events), from its --verbose line. And the one-shot commands as processes: `macvland
validate` of an empty spec (the CLI's start-up), beside the same Python starting and doing
nothing (what no command can go below, and how fast this machine is), and `macvland plan` with
nothing to do, at N and with an empty spec (the difference is the one-shot's cost of N), all
four in turns. The package's bytecode is compiled first, so that no run pays for compiling it
(PYTHONDONTWRITEBYTECODE would make every one of them do so).
"""

from __future__ import annotations

import compileall
import os
import statistics
import sys
import time
from typing import Any

import macvland
from bench.items import BenchError
from bench.sandbox import macvland_binary, timed
from bench.scenario import Scenario
from macvland.intake import load_spec
from macvland.ledger import Ledger
from macvland.reconcile import reconcile


def measure_noop(s: Scenario) -> dict[str, Any]:
    desired = load_spec(str(s.daemon.spec))
    namespaces = s.lab.namespaces
    ledger = Ledger(str(s.workdir / "bench-state"))
    reconcile(desired, namespaces, ledger)  # opens the sockets
    times, writes, operations = [], 0, 0
    for _ in range(s.config.noop_reps):
        before = namespaces.writes
        start = time.perf_counter()
        result = reconcile(desired, namespaces, ledger)
        times.append(1000 * (time.perf_counter() - start))
        writes += namespaces.writes - before
        operations += len(result.plan.operations)
    daemon = [s.daemon.hangup_pass() for _ in range(s.config.noop_reps)]
    return {"pass_ms": times, "pass_ms_median": statistics.median(times), "writes": writes,
            "operations": operations,
            "daemon_pass_ms": [p.ms for p in daemon],
            "daemon_pass_ms_median": statistics.median(p.ms for p in daemon),
            "daemon_writes": sum(p.writes for p in daemon),
            "daemon_operations": sum(p.operations for p in daemon),
            "one_shot": measure_one_shot(s),
            "method": "in-process reconcile() without a link cache (one dump per namespace); "
                      "daemon: SIGHUP, its --verbose pass line (link tables from events); "
                      "one-shot: processes, medians"}


def measure_one_shot(s: Scenario) -> dict[str, Any]:
    compileall.compile_dir(os.path.dirname(macvland.__file__), quiet=1)
    empty = s.workdir / "empty.yaml"
    empty.write_text("version: 1\ninterfaces: []\n")
    binary = macvland_binary()
    reps = s.config.one_shot_reps

    def wall(argv: list[str]) -> float:
        # A state directory keeps the parse of one spec: each command has its own, as on a
        # host whose one-shot commands read the spec the daemon reads.
        state = s.workdir / f"one-shot-state-{argv[-1].replace('/', '_')}"
        took, result = timed(argv, env={**os.environ, "MACVLAND_STATE_DIR": str(state)})
        if result.returncode != 0:
            raise BenchError(f"{' '.join(argv)} exited {result.returncode}:\n"
                             f"{result.stderr[-1000:]}")
        return 1000 * took

    commands = {
        "interpreter": [sys.executable, "-c", "pass"],
        "validate_empty": [binary, "validate", "-c", str(empty)],
        "plan_empty": ["ip", "netns", "exec", s.lab.bare, binary, "plan", "-c", str(empty)],
        "plan": ["ip", "netns", "exec", s.lab.home, binary, "plan", "-c", str(s.daemon.spec)],
    }
    for argv in commands.values():
        wall(argv)  # the first run of a spec keeps its parse, which the others then load
    # In turns, so that a slower spell of the machine falls on all of them alike; the cost of
    # N is the median of each turn's difference, as the ratios elsewhere are per repetition.
    walls: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(reps):
        for name, argv in commands.items():
            walls[name].append(wall(argv))
    medians = {name: statistics.median(values) for name, values in walls.items()}
    return {"interpreter_ms": medians["interpreter"],
            "validate_empty_ms": medians["validate_empty"],
            "plan_empty_ms": medians["plan_empty"], "plan_ms": medians["plan"],
            "above_startup_ms": statistics.median(
                n - e for n, e in zip(walls["plan"], walls["plan_empty"], strict=True)),
            "walls_ms": walls, "reps": reps}
