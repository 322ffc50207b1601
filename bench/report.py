"""The report: each target beside its measured value, the tables of every figure, and
results.json."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.processes import DEBOUNCE_MS

Result = dict[str, Any]
Measure = Callable[[Result, list[Result]], tuple[str, bool] | None]


@dataclass(frozen=True, slots=True)
class Target:
    name: str
    goal: str
    sizes: tuple[int, ...]
    """The N it is set for; a run without any of them is judged at its largest N."""
    measure: Measure
    layouts: tuple[str, ...] = ("one", "spread", "wide")


def _converge(r: Result, _: list[Result]) -> tuple[str, bool]:
    c = r["converge"]
    networkd = f"; networkd {c['networkd_ratio']:.2f}x" if c["networkd_ratio"] else ""
    return (f"{c['ratio']:.2f}x (medians {c['daemon_median_s']:.3f} s, "
            f"{c['ip_batch_median_s']:.3f} s){networkd}", c["ratio"] <= 1.2)


def _noop(r: Result, _: list[Result]) -> tuple[str, bool]:
    n = r["noop"]
    return (f"{n['pass_ms_median']:.1f} ms, {n['writes']} writes",
            n["pass_ms_median"] <= 50 and n["writes"] == 0)


def _daemon_noop(limit: float) -> Measure:
    def measure(r: Result, _: list[Result]) -> tuple[str, bool]:
        n = r["noop"]
        return (f"{n['daemon_pass_ms_median']:.1f} ms, {n['daemon_writes']} writes",
                n["daemon_pass_ms_median"] <= limit and n["daemon_writes"] == 0)
    return measure


def _startup(r: Result, _: list[Result]) -> tuple[str, bool]:
    o = r["noop"]["one_shot"]
    ms = o["validate_empty_ms"]
    return f"{ms:.0f} ms (the interpreter alone: {o['interpreter_ms']:.0f} ms)", ms <= 60


def _one_shot(r: Result, _: list[Result]) -> tuple[str, bool]:
    o = r["noop"]["one_shot"]
    return (f"{o['above_startup_ms']:.0f} ms ({o['plan_ms']:.0f} ms at N, "
            f"{o['plan_empty_ms']:.0f} ms empty)", o["above_startup_ms"] <= 30)


def _change(r: Result, _: list[Result]) -> tuple[str, bool]:
    changes = r["change"]
    text = "; ".join(f"{c['field']}: {c['ms']:.0f} ms, {c['writes']} write(s)" for c in changes)
    return text, all(c["writes"] == 1 and c["ms"] <= 100 for c in changes)


def _repair(r: Result, _: list[Result]) -> tuple[str, bool]:
    rp = r["repair"]
    return (f"p50 {rp['p50_ms']:.1f} ms, p99 {rp['p99_ms']:.1f} ms ({rp['reps']} reps)",
            rp["p50_ms"] <= 5 and rp["p99_ms"] <= 20)


def prune_speedup(r: Result) -> float:
    p = r["prune"]
    return float(p["one_by_one"]["seconds"] / p["daemon_median_s"])


def _prune(r: Result, _: list[Result]) -> tuple[str, bool]:
    p = r["prune"]
    label = " (scaled from a sample)" if p["one_by_one"]["extrapolated"] else ""
    return (f"{prune_speedup(r):.0f}x ({p['daemon_median_s']:.3f} s vs "
            f"{p['one_by_one']['seconds']:.2f} s{label})", prune_speedup(r) >= 50)


IDLE_WAKEUPS_PER_S = 0.2
"""'No wake-ups other than timers': resync is every 300 s and there is no watchdog here."""


def _idle(r: Result, _: list[Result]) -> tuple[str, bool]:
    i = r["idle"]
    return (f"loop {i['loop_wakeups_per_s']:.2f}/s (all threads {i['wakeups_per_s']:.2f}/s), "
            f"{1000 * i['cpu_s']:.0f} ms CPU in {i['window_s']:.0f} s",
            i["loop_wakeups_per_s"] <= IDLE_WAKEUPS_PER_S)


def _rss(limit: float) -> Measure:
    def measure(r: Result, _: list[Result]) -> tuple[str, bool]:
        rss = r["idle"]["peak_rss_mb"]
        return f"{rss:.1f} MB", rss <= limit
    return measure


SCALING_SLACK = 1.1
"""'No worse' allows 10% for a machine whose speed drifts between the two runs."""


def _scaling(r: Result, everything: list[Result]) -> tuple[str, bool] | None:
    small = next((s for s in everything if s["layout"] == r["layout"] and s["n"] == 1000), None)
    if small is None:
        return None
    pairs = [("converge", r["converge"]["ratio"], small["converge"]["ratio"], False),
             ("+mark", r["converge"]["ratio_marked"], small["converge"]["ratio_marked"], False),
             ("prune speedup", prune_speedup(r), prune_speedup(small), True)]
    ok = all(big >= base / SCALING_SLACK if higher_is_better else big <= base * SCALING_SLACK
             for _, big, base, higher_is_better in pairs)
    text = "; ".join(f"{name} {big:.2f} vs {base:.2f}" for name, big, base, _ in pairs)
    return text, ok


TARGETS = (
    Target("converge from empty, daemon", "<= 1.2x ip -batch", (1000,), _converge),
    Target("CLI start-up (validate, empty spec)", "<= 60 ms", (1000,), _startup),
    Target("one-shot no-op (plan), above start-up", "<= 30 ms", (1000,), _one_shot),
    Target("no-op pass, in-process", "<= 50 ms, 0 writes", (1000,), _noop),
    Target("no-op pass, daemon (SIGHUP)", "<= 50 ms, 0 writes", (1000,), _daemon_noop(50)),
    Target("no-op pass, daemon (SIGHUP)", "<= 100 ms, 0 writes", (10000,), _daemon_noop(100)),
    Target("one change", "1 write each, <= 100 ms", (1000,), _change),
    Target("repair, from the delete's ack", "p50 <= 5 ms, p99 <= 20 ms", (10, 1000), _repair),
    Target("prune", ">= 50x one-by-one", (1000,), _prune),
    Target("idle wake-ups", f"loop <= {IDLE_WAKEUPS_PER_S}/s (timers only)", (1000,), _idle),
    Target("peak RSS", "<= 60 MB", (1000,), _rss(60)),
    Target("peak RSS", "<= 150 MB", (10000,), _rss(150)),
    Target("ratios at 10,000 vs 1,000", f"no worse (within {SCALING_SLACK:.0%} of 1,000's)",
           (10000,), _scaling, layouts=("wide",)),
)


def evaluate(scenarios: list[Result]) -> list[Result]:
    """Each target against each scenario at its N; at the run's largest N when the run has
    none of them (a quick run), except for the comparison across sizes."""
    largest = max(s["n"] for s in scenarios)
    rows = []
    for target in TARGETS:
        judged = [s for s in scenarios if s["n"] in target.sizes and s["layout"] in target.layouts]
        if not judged and target.measure is not _scaling:
            judged = [s for s in scenarios if s["n"] == largest and s["layout"] in target.layouts]
        for s in judged:
            outcome = target.measure(s, scenarios)
            if outcome is None:
                continue
            measured, ok = outcome
            goal = target.goal if s["n"] in target.sizes \
                else f"{target.goal} (set for N={'/'.join(map(str, target.sizes))})"
            rows.append({"target": target.name, "goal": goal, "n": s["n"],
                         "layout": s["layout"], "measured": measured, "pass": ok})
    return rows


# --- output ---------------------------------------------------------------------------------

def table(title: str, headers: Sequence[str], rows: Sequence[Sequence[object]],
          left: int = 2) -> str:
    """A plain-text table; the first `left` columns are text, the others figures."""
    cells = [[str(h) for h in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = [title]
    for k, row in enumerate(cells):
        lines.append("  ".join(c.rjust(w) if k and i >= left else c.ljust(w)
                               for i, (c, w) in enumerate(zip(row, widths, strict=True))).rstrip())
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _passes(pass_ms: Sequence[float]) -> str:
    """The first pass's time, and how many more passes followed (events, resyncs)."""
    more = f" (+{len(pass_ms) - 1})" if len(pass_ms) > 1 else ""
    return f"{pass_ms[0]:.0f}{more}" if pass_ms else "-"


def _ms(value: float | None) -> str:
    return "?" if value is None else f"{value:.0f}"


def profile_line(s: Result) -> str:
    c = s["converge"]
    lost = sum("were lost (ENOBUFS)" in line for line in s.get("daemon_problems", []))
    return (f"  N={s['n']} {s['layout']}: {1000 * c['daemon_s'][0]:.0f} ms after the rename: "
            f"the spec parsed in {_ms(c['parse_ms'][0])} ms (a spec renamed into place is "
            f"read at once), then a first pass of "
            f"{c['pass_ms'][0][0]:.0f} ms (whose owner-mark wave and verifying read end after "
            f"the kernel shows all); ip -batch {1000 * c['ip_batch_s'][0]:.0f} ms; then "
            f"{c['passes'][0] - 1} more pass(es); {lost} event overflow(s) in the run")


def _converge_rows(scenarios: list[Result]) -> list[list[object]]:
    return [[s["n"], s["layout"], f"{c['ip_batch_median_s']:.3f}", f"{c['daemon_median_s']:.3f}",
             f"{c['ratio']:.2f}", f"{c['daemon_marked_median_s']:.3f}", f"{c['ratio_marked']:.2f}",
             *((f"{c['networkd_median_s']:.3f}", f"{c['networkd_ratio']:.2f}")
               if c["networkd_median_s"] is not None else ("-", "-")),
             _passes(c["pass_ms"][0]), c["writes"][0], f"{c['daemon_cpu_s'][0]:.2f}",
             _ms(c["parse_median_ms"]), f"{s['apply']['wall_s']:.3f}"]
            for s in scenarios for c in [s["converge"]]]


def report(results: Result) -> str:
    scenarios = results["scenarios"]
    meta = results["meta"]
    parts = [f"macvland benchmark: kernel {meta['kernel']}, {meta['cpus']} CPUs, debounce "
             f"{DEBOUNCE_MS} ms; times are medians of {meta['converge_reps']} unless said "
             f"otherwise; a converge ratio is the median of each repetition's own ratio",
             "layouts: " + "; ".join(f"{name}: {about}" for name, about in meta["layouts"])]
    parts.append(table("\n1. converge from empty (s; CPU s: the daemon's, from the rename until it "
                       "went quiet, follow-up passes included; apply: `macvland apply` from empty)",
                       ["N", "layout", "ip -batch", "daemon", "ratio", "+mark", "ratio",
                        "networkd", "ratio", "pass ms (+more)", "writes", "CPU s", "parse ms",
                        "apply s"], _converge_rows(scenarios)))
    parts.append(table("\n2. no-op (in-process with dumps; daemon after SIGHUP; one-shot "
                       "commands as processes, run in turns, medians; above: the median of "
                       "each turn's plan at N less plan empty; python: the interpreter doing "
                       "nothing; ms)", [
        "N", "layout", "in-process", "writes", "daemon", "writes", "python", "validate empty",
        "plan empty", "plan at N", "above"],
        [[s["n"], s["layout"], f"{n['pass_ms_median']:.1f}", n["writes"],
          f"{n['daemon_pass_ms_median']:.1f}", n["daemon_writes"],
          f"{o['interpreter_ms']:.0f}", f"{o['validate_empty_ms']:.0f}",
          f"{o['plan_empty_ms']:.0f}", f"{o['plan_ms']:.0f}",
          f"{o['above_startup_ms']:.0f}"]
         for s in scenarios for n in [s["noop"]] for o in [n["one_shot"]]]))
    parts.append(table("\n3. one change (daemon, from the rename)", [
        "N", "layout", *[h for c in scenarios[0]["change"]
                         for h in (f"{c['field']} ms", "writes", "passes")]],
        [[s["n"], s["layout"], *[v for c in s["change"]
                                 for v in (f"{c['ms']:.0f}", c["writes"], c["passes"])]]
         for s in scenarios]))
    parts.append(table("\n4-5. repair (out-of-band delete; from its ack, and from sending it) "
                       "and prune", [
        "N", "layout", "repairs", "p50 ms", "p99 ms", "sent: p50", "p99", "prune daemon s",
        "pass ms (+more)", "writes", "group del s", "one-by-one s", "speedup"], [[
            s["n"], s["layout"], r["reps"], f"{r['p50_ms']:.1f}", f"{r['p99_ms']:.1f}",
            f"{r['from_send_p50_ms']:.1f}", f"{r['from_send_p99_ms']:.1f}",
            f"{p['daemon_median_s']:.3f}", _passes(p["pass_ms"][0]), p["writes"][0],
            f"{p['group_delete_median_s']:.3f}",
            f"{p['one_by_one']['seconds']:.2f}" + ("*" if p["one_by_one"]["extrapolated"] else ""),
            f"{prune_speedup(s):.0f}x"]
            for s in scenarios for r, p in [(s["repair"], s["prune"])]]))
    sampled = [s for s in scenarios if s["prune"]["one_by_one"]["extrapolated"]]
    if sampled:
        samples = ", ".join(
            f"N={s['n']} {s['layout']}: {s['prune']['one_by_one']['measured_links']} in "
            f"{s['prune']['one_by_one']['measured_s']:.2f} s" for s in sampled)
        parts.append(f"* one by one, only a sample was deleted and its time scaled to N: {samples}")
    parts.append(table("\n6. idle daemon (the loop's thread apart: the watchers also see every "
                       "namespace created on the machine)", [
        "N", "layout", "window s", "CPU ms", "loop wake-ups", "all threads", "per s", "threads",
        "peak RSS MB"], [[
            s["n"], s["layout"], f"{i['window_s']:.0f}", f"{1000 * i['cpu_s']:.0f}",
            i["loop_wakeups"], i["wakeups"], f"{i['wakeups_per_s']:.2f}", i["threads"],
            f"{i['peak_rss_mb']:.1f}"]
            for s in scenarios for i in [s["idle"]]]))
    parts.append(table("\ntargets", ["target", "N/layout", "goal", "measured", "result"], [
        [t["target"], f"{t['n']} {t['layout']}", t["goal"], t["measured"],
         "PASS" if t["pass"] else "FAIL"] for t in results["targets"]], left=5))
    parts.append("\nwhere the daemon's converge time goes (first repetition, from its own "
                 "log):")
    parts.extend(profile_line(s) for s in scenarios)
    failed = [f"  N={s['n']} {s['layout']}: {s['converge']['networkd_skipped']}"
              for s in scenarios
              if s["converge"].get("networkd_skipped", "").startswith("failed")]
    if failed:
        parts.append("\nsystemd-networkd could not be compared:\n" + "\n".join(failed))
    problems = [f"{s['n']} {s['layout']}: {line}" for s in scenarios
                for line in s.get("daemon_problems", [])]
    if problems:
        parts.append("\ndaemon warnings and errors:\n" + "\n".join(problems[:20]))
    return "\n".join(parts)


def write_json(results: Result, path: Path) -> None:
    path.write_text(json.dumps(results, indent=2) + "\n")
