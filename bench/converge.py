"""1. Converge from empty: the daemon, against `ip -batch` and (one namespace) networkd.

With the daemon running on `interfaces: []`, the full spec is written beside the spec and
renamed over it. The time runs from the rename until the kernel shows all N with the right
parent, mode, state and source MACs ("daemon"), and until they also carry macvland's owner
mark ("+mark"). One `ip -batch` creating the same interfaces just before, in each repetition,
gives the ratio; the median of the repetitions' own ratios is reported (the machine's speed
drifts over a run). In the "one" layout, systemd-networkd is timed the same way, started fresh
on .netdev files for the same interfaces (it leaves them down, so only their presence and
settings count). `macvland apply` from empty is timed as a process too.
"""

from __future__ import annotations

import os
import statistics
from typing import Any

from bench.items import BenchError, marked, spec_text
from bench.processes import DEBOUNCE_MS, Networkd
from bench.sandbox import macvland_binary, seconds, timed
from bench.scenario import Scenario


def measure_apply(s: Scenario) -> dict[str, Any]:
    """`macvland apply` from empty, as a process, before the daemon starts."""
    spec = s.write_spec(s.items, "full.yaml")
    env = {**os.environ, "MACVLAND_STATE_DIR": str(s.workdir / "apply-state")}
    wall, result = timed(["ip", "netns", "exec", s.lab.home, macvland_binary(), "apply",
                          "-c", str(spec)], env=env)
    if result.returncode != 0:
        raise BenchError(f"macvland apply failed:\n{result.stderr[-2000:]}")
    s.kernel_wait(s.expect(s.items, marked), "macvland apply", 10)
    s.lab.flush()
    s.view.reset()
    return {"wall_s": wall}


def measure_ip_batch(s: Scenario) -> tuple[float, float]:
    """`ip -batch` creating the spec's interfaces; then, as the floor of a prune, the
    in-process deletion of them all by link group (set the group, one RTM_DELLINK)."""
    s.daemon.wait_quiet()
    created = s.ip_batch([item.ip_add() for item in s.items])
    s.view.reset()
    if s.view.wait(s.expect(s.items), 5 + s.n / 1000) is None:
        raise BenchError("ip -batch did not create what the spec asks for")
    deleted = seconds(s.lab.flush)
    s.view.reset()
    s.daemon.wait_quiet(s.config.settle_s)
    return created, deleted


def measure_networkd(s: Scenario, networkd: Networkd) -> float:
    """systemd-networkd started fresh, until the kernel shows all N (in either admin state:
    it leaves them down); then it is stopped and its interfaces deleted."""
    s.daemon.wait_quiet()
    networkd.write(s.items)
    start = networkd.start()
    try:
        done = s.view.wait(s.expect(s.items, up=False), 30)
        if done is None:
            raise BenchError(f"systemd-networkd did not create the interfaces:\n"
                             f"{networkd.tail()}")
    finally:
        networkd.stop()
        s.lab.flush()
        s.view.reset()
        s.daemon.wait_quiet(s.config.settle_s)
    return done - start


def measure_converge(s: Scenario) -> dict[str, Any]:
    offset = s.daemon.offset()
    before = s.daemon.usage()
    start = s.daemon.replace_spec(spec_text(s.items))
    timeout = 60 + s.n / 100
    done = s.kernel_wait(s.expect(s.items), "converge", timeout)
    done_marked = s.kernel_wait(s.expect(s.items, marked), "converge (marks)", timeout)
    passes = s.settle(offset)
    after = s.daemon.usage()
    return {"daemon_s": done - start, "daemon_marked_s": done_marked - start,
            "pass_ms": [p.ms for p in passes], "writes": sum(p.writes for p in passes),
            "parse_ms": s.daemon.parse_ms(offset, len(s.items)),
            "passes": len(passes), "daemon_cpu_s": after.cpu_s - before.cpu_s,
            "daemon_cpu_by_thread": after.cpu_by_thread(before)}


def summarize(raw: dict[str, list[Any]]) -> dict[str, Any]:
    """Medians; each ratio is the median of the repetitions' own ratios, since each pairs
    measurements taken seconds apart, while the machine's speed drifts over a run."""
    def ratio(key: str) -> float | None:
        pairs = list(zip(raw[key], raw["ip_batch_s"], strict=False))
        return statistics.median(t / ip for t, ip in pairs) if pairs else None

    def median(key: str) -> float | None:
        values = [v for v in raw[key] if v is not None]
        return statistics.median(values) if values else None
    return {**raw, "ip_batch_median_s": median("ip_batch_s"), "daemon_median_s": median("daemon_s"),
            "daemon_marked_median_s": median("daemon_marked_s"),
            "networkd_median_s": median("networkd_s"), "ratio": ratio("daemon_s"),
            "ratio_marked": ratio("daemon_marked_s"), "networkd_ratio": ratio("networkd_s"),
            "parse_median_ms": median("parse_ms"), "debounce_ms": DEBOUNCE_MS}
