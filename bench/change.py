"""3. One change: an mtu change and then a mode change of one interface, each renamed into
place: time until the kernel shows it, and the writes counted by the daemon's pass lines."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from bench.items import BenchError, Item, spec_text
from bench.scenario import Scenario


def measure_changes(s: Scenario) -> list[dict[str, Any]]:
    mode_index = 4 * (s.n // 8)  # a bridge-mode interface
    mtu_index = s.n - 1
    return [measure_change(s, mtu_index, "mtu", replace(s.items[mtu_index], mtu=1400)),
            measure_change(s, mode_index, "mode", replace(s.items[mode_index], mode="vepa"))]


def measure_change(s: Scenario, index: int, field_name: str, changed: Item) -> dict[str, Any]:
    items = [*s.items[:index], changed, *s.items[index + 1:]]
    s.view.dump()
    if not s.view.unmet(s.expect([changed])):
        raise BenchError(f"{field_name} change: the kernel shows it before it is asked for")
    offset = s.daemon.offset()
    start = s.daemon.replace_spec(spec_text(items))
    done = s.kernel_wait(s.expect([changed]), f"{field_name} change", 10 + s.n / 1000)
    passes = s.settle(offset)
    s.items = items
    return {"field": field_name, "interface": changed.name, "ms": 1000 * (done - start),
            "writes": sum(p.writes for p in passes), "passes": len(passes),
            "pass_ms": [p.ms for p in passes]}
