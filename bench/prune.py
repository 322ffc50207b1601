"""5. Prune: the empty spec renamed into place: time until all N are gone, against `ip
-batch` with one `link del` per interface (one request per interface: one-by-one deletion),
and beside the kernel's floor: the same links deleted in-process by link group.

One by one, each delete costs the kernel a grace period: above 1,000 only a sample is deleted
that way (500 unless --prune-sample says otherwise) and its time scaled to N; the report says
so wherever that figure appears.
"""

from __future__ import annotations

from typing import Any

from bench.items import gone, spec_text
from bench.scenario import Scenario


def measure_prune(s: Scenario) -> dict[str, Any]:
    offset = s.daemon.offset()
    start = s.daemon.replace_spec(spec_text([]))
    done = s.kernel_wait(dict.fromkeys((item.key for item in s.items), gone), "prune",
                         60 + s.n / 100)
    passes = s.settle(offset)
    return {"daemon_s": done - start, "pass_ms": [p.ms for p in passes],
            "writes": sum(p.writes for p in passes), "passes": len(passes)}


def measure_one_by_one(s: Scenario) -> dict[str, Any]:
    """`ip -batch` with one `link del` per interface (each its own RTM_DELLINK)."""
    s.daemon.wait_quiet()
    s.ip_batch([item.ip_add() for item in s.items])
    chosen = s.items[:s.config.one_by_one_sample(s.n)]
    by_netns: dict[str | None, list[str]] = {}
    for item in chosen:
        by_netns.setdefault(item.netns, []).append(f"link del {item.name}")
    took = sum(s.ip_batch(lines, netns) for netns, lines in by_netns.items())
    s.lab.flush()
    s.view.reset()
    return {"seconds": took * s.n / len(chosen), "measured_links": len(chosen),
            "measured_s": took, "extrapolated": len(chosen) < s.n,
            "method": "ip -batch, one `link del` line per interface, per namespace"
                      + (f"; {len(chosen)} of {s.n} deleted so, the time scaled to {s.n}"
                         if len(chosen) < s.n else "")}
