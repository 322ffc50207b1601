"""Benchmark: macvland beside the kernel's own speed, from 10 to 10,000 interfaces.

Run it with `make bench` (or `.venv/bin/python -m bench.bench --help`), as root. It prints a
table with each target beside its measured value and writes the same figures as JSON
(bench/results.json unless `--json PATH`).

Layouts (bench/items.py): "one", all N on one parent in the home namespace; "spread", over 4
parents and 10 namespaces; "wide", over 100 parents and 10 namespaces, for the large sizes
(the kernel's cost per create grows with the macvlans on one parent, so one parent is not
what 10,000 interfaces look like). Each interface takes the modes bridge, vepa, private and
source (with two source MACs) in turn. For each N and layout, one lab and one daemon
(bench/scenario.py, bench/sandbox.py, bench/processes.py) and, in this order:

1. converge from empty, against `ip -batch` and networkd (bench/converge.py)
2. the no-op pass, in-process, in the daemon and as one-shot commands (bench/noop.py)
3. one change (bench/change.py)
4. repair after an out-of-band delete (bench/repair.py)
5. prune, against one-by-one deletion (bench/prune.py)
6. the idle daemon: wake-ups, CPU and peak RSS (bench/idle.py)

The report (bench/report.py) holds the targets. How the kernel is watched: the benchmark
subscribes to link events in every namespace involved and keeps each link's state from them,
so the end of a measurement is the arrival of the event that completes it, without polling;
one link dump per namespace then confirms it. Before each measurement the daemon is let go
quiet (its CPU time and context switches stop moving), so that the tail of one measurement
never lands in the next.

The machines are noisy: compare the ratios, measured in the same run, more than the times.
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench import change, converge, idle, noop, prune, repair
from bench.items import LAYOUTS, BenchError, Layout
from bench.processes import DEBOUNCE_MS, Networkd, networkd_binary
from bench.report import evaluate, report, write_json
from bench.scenario import Config, Scenario

DEFAULT_JSON = Path(__file__).with_name("results.json")
LARGE_REPS = 3
"""Converge repetitions above N = 1,000 (each takes seconds there)."""


def run_scenario(s: Scenario) -> dict[str, Any]:
    """Every measurement of one scenario, in order."""
    result: dict[str, Any] = s.describe()
    result["apply"] = converge.measure_apply(s)
    s.start_daemon()
    networkd, networkd_skipped = None, ""
    binary = networkd_binary()
    if s.layout.spread:
        networkd_skipped = "a .netdev cannot name another namespace"
    elif binary is None:
        networkd_skipped = "systemd-networkd is not installed"
    else:
        networkd = Networkd(binary, s.lab.home, s.workdir)
    raw: dict[str, list[Any]] = {k: [] for k in (
        "ip_batch_s", "daemon_s", "daemon_marked_s", "pass_ms", "parse_ms", "writes", "passes",
        "daemon_cpu_s", "daemon_cpu_by_thread", "networkd_s")}
    pruned: dict[str, list[Any]] = {k: [] for k in (
        "daemon_s", "group_delete_s", "pass_ms", "writes", "passes")}
    largest = max(s.config.sizes + s.config.wide_sizes)
    reps = s.config.converge_reps if s.n <= 1000 else min(s.config.converge_reps, LARGE_REPS)
    for rep in range(reps):
        created, deleted = converge.measure_ip_batch(s)
        raw["ip_batch_s"].append(created)
        pruned["group_delete_s"].append(deleted)
        if networkd is not None:
            try:
                raw["networkd_s"].append(converge.measure_networkd(s, networkd))
            except BenchError as error:  # a comparison, not the subject: note it, go on
                networkd, networkd_skipped = None, f"failed: {error}"
        for k, v in converge.measure_converge(s).items():
            raw[k].append(v)
        if rep == 0:
            result["noop"] = noop.measure_noop(s)
            result["change"] = change.measure_changes(s)
            result["repair"] = repair.measure_repairs(s)
            window = s.config.idle_s if s.n == largest else min(s.config.idle_s, 3.0)
            result["idle"] = idle.measure_idle(s, window)
        for k, v in prune.measure_prune(s).items():
            pruned[k].append(v)
    result["converge"] = converge.summarize(raw)
    if networkd is None:
        result["converge"]["networkd_skipped"] = networkd_skipped
    result["prune"] = {**pruned, "daemon_median_s": statistics.median(pruned["daemon_s"]),
                       "group_delete_median_s": statistics.median(pruned["group_delete_s"]),
                       "one_by_one": prune.measure_one_by_one(s)}
    result["daemon_problems"] = s.daemon.problems(0)
    return result


def _sizes(text: str) -> list[int]:
    return [int(size) for size in text.split(",") if size]


def parse_args(argv: Sequence[str] | None) -> tuple[Config, Path]:
    parser = argparse.ArgumentParser(prog="bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10,100,1000",
                        help="numbers of interfaces in the one and spread layouts "
                        "(default 10,100,1000)")
    parser.add_argument("--wide-sizes", default="1000,3000,10000",
                        help="numbers of interfaces in the wide layout, 100 parents in 10 "
                        "namespaces (default 1000,3000,10000)")
    parser.add_argument("--layouts", default=",".join(LAYOUTS),
                        help=f"which of {', '.join(LAYOUTS)} (default all)")
    parser.add_argument("--quick", action="store_true",
                        help="fewer repetitions, short idle window, one-by-one deletion sampled")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, metavar="PATH",
                        help=f"where to write the figures (default {DEFAULT_JSON})")
    parser.add_argument("--repairs", type=int,
                        help="out-of-band deletions at N >= 1000 (50; at most 20 below)")
    parser.add_argument("--idle", type=float, help="idle window in seconds (10)")
    parser.add_argument("--prune-sample", type=int,
                        help="delete only this many one by one, and scale to N (default: all "
                        "up to 1,000, 500 above)")
    parser.add_argument("--prefix", help="namespace name prefix (default mvb<random>)")
    args = parser.parse_args(argv)
    config = Config(sizes=_sizes(args.sizes), wide_sizes=_sizes(args.wide_sizes),
                    layouts=[name for name in args.layouts.split(",") if name])
    if args.quick:
        config.converge_reps, config.noop_reps, config.repairs = 1, 3, 10
        config.one_shot_reps = 5
        config.idle_s, config.prune_sample, config.settle_s = 2.0, 50, 0.3
        config.quick = True
    config.repairs = args.repairs or config.repairs
    config.idle_s = args.idle or config.idle_s
    config.prune_sample = args.prune_sample or config.prune_sample
    if args.prefix:
        config.prefix = args.prefix
    if not set(config.layouts) <= set(LAYOUTS):
        parser.error(f"layouts are {', '.join(LAYOUTS)}")
    if not config.runs() or any(n < 8 for n, _ in config.runs()):
        parser.error("sizes must be at least 8, and some layout must have one")
    return config, args.json


def run(config: Config) -> dict[str, Any]:
    scenarios = []
    runs: list[tuple[int, Layout]] = config.runs()
    with tempfile.TemporaryDirectory(prefix=f"{config.prefix}-") as tmp:
        for n, layout in runs:
            print(f"N={n} {layout.name} ...", file=sys.stderr, flush=True)
            workdir = Path(tmp) / f"{n}-{layout.name}"
            workdir.mkdir()
            with Scenario(n, layout, config, workdir) as s:
                scenarios.append(run_scenario(s))
    meta = {"kernel": platform.release(), "cpus": os.cpu_count(), "python": sys.version.split()[0],
            "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "debounce_ms": DEBOUNCE_MS,
            "converge_reps": config.converge_reps, "large_reps": LARGE_REPS,
            "quick": config.quick, "sizes": config.sizes, "wide_sizes": config.wide_sizes,
            "layouts": [(layout.name, layout.about) for layout in LAYOUTS.values()
                        if layout.name in config.layouts],
            "load_average": os.getloadavg()}
    return {"meta": meta, "scenarios": scenarios, "targets": evaluate(scenarios)}


def main(argv: Sequence[str] | None = None) -> int:
    if os.geteuid() != 0:
        print("bench: needs root (network namespaces)", file=sys.stderr)
        return 2
    config, json_path = parse_args(argv)
    os.umask(0o022)  # the daemon refuses a spec that others could write
    # SIGTERM unwinds like Ctrl-C, so every `finally` removes what it made.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        results = run(config)
    except BenchError as error:
        print(f"bench: {error}", file=sys.stderr)
        return 1
    write_json(results, json_path)
    print(report(results))
    print(f"\nfigures written to {json_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
