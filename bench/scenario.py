"""One scenario: N interfaces in one layout, in one lab, with one daemon; the state and
helpers the measurements share."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from bench.items import (
    LAYOUTS,
    BenchError,
    Check,
    Item,
    Layout,
    as_specified,
    make_items,
    spec_text,
)
from bench.processes import Daemon, PassLine
from bench.sandbox import KernelView, Lab, timed
from macvland.model import Key


@dataclass
class Config:
    sizes: list[int]
    """N for the "one" and "spread" layouts."""
    wide_sizes: list[int]
    """N for the "wide" layout (100 parents in 10 namespaces)."""
    layouts: list[str] = field(default_factory=lambda: list(LAYOUTS))
    quick: bool = False
    converge_reps: int = 5
    noop_reps: int = 9
    one_shot_reps: int = 21
    """Turns of the one-shot commands: a process's wall time varies by tens of ms here."""
    repairs: int = 50
    """Out-of-band deletions at N >= 1,000; at most 20 below (and 2 per interface)."""
    idle_s: float = 10.0
    settle_s: float = 1.2
    """How long the daemon must stay still after a measurement before the next one. The
    kernel's link watcher reports a new link's operational state up to 1 s later, and that
    event wakes the daemon for one more (empty) pass."""
    prune_sample: int | None = None
    """Delete only this many one by one and scale (labelled so). Unset: all of them up to
    1,000, and a sample of 500 above (one by one, 10,000 would take minutes)."""
    prefix: str = field(default_factory=lambda: f"mvb{uuid.uuid4().hex[:8]}")

    def runs(self) -> list[tuple[int, Layout]]:
        """(N, layout) in the order they run: small first."""
        chosen = [LAYOUTS[name] for name in self.layouts]
        pairs = [(n, layout) for layout in chosen
                 for n in (self.wide_sizes if layout.name == "wide" else self.sizes)]
        return sorted(pairs, key=lambda pair: (pair[0], list(LAYOUTS).index(pair[1].name)))

    def one_by_one_sample(self, n: int) -> int:
        if self.prune_sample is not None:
            return min(n, self.prune_sample)
        return n if n <= 1000 else 500


class Scenario:
    """The lab, the kernel view and the daemon for one N and one layout; a context manager
    that removes all of it on the way out."""

    def __init__(self, n: int, layout: Layout, config: Config, workdir: Path) -> None:
        self.n = n
        self.layout = layout
        self.config = config
        self.workdir = workdir
        self.lab = Lab(f"{config.prefix}-{n}{layout.name[0]}", layout, str(workdir))
        self.items = make_items(n, layout, self.lab.targets)
        self.parents: dict[str, int] = {}
        self._view: KernelView | None = None
        self._daemon: Daemon | None = None

    def __enter__(self) -> Scenario:
        try:
            self.lab.setup()
            self.parents = self.lab.parent_ifindexes()
            self._view = KernelView(self.lab.namespaces, self.lab.item_namespaces)
        except BaseException:
            self.lab.close()
            raise
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        if self._daemon is not None:
            self._daemon.stop()
        if self._view is not None:
            self._view.close()
        self.lab.close()

    @property
    def view(self) -> KernelView:
        assert self._view is not None, "used outside `with`"
        return self._view

    @property
    def daemon(self) -> Daemon:
        assert self._daemon is not None, "the daemon is not started"
        return self._daemon

    def start_daemon(self) -> None:
        self._daemon = Daemon(self.lab.home, self.workdir)
        self._daemon.start(spec_text([]))

    # -- helpers

    def expect(self, items: Iterable[Item], make: Callable[[Check], Check] = lambda c: c,
               up: bool = True) -> dict[Key, Check]:
        return {item.key: make(as_specified(item, self.parents[item.parent], up))
                for item in items}

    def write_spec(self, items: Sequence[Item], name: str) -> Path:
        path = self.workdir / name
        path.write_text(spec_text(items))
        return path

    def kernel_wait(self, expect: Mapping[Key, Check], what: str, timeout: float = 60.0) -> float:
        done = self.view.wait(expect, timeout)
        if done is None:
            unmet = sorted(self.view.unmet(expect), key=str)
            seen = "\n".join(f"  {key}: {self.view.links.get(key)}" for key in unmet[:3])
            log = f"\ndaemon log:\n{self._daemon.tail()}" if self._daemon else ""
            raise BenchError(f"N={self.n} {self.layout.name}, {what}: the kernel did not show "
                             f"it within {timeout} s; {len(unmet)} unmet, e.g.\n{seen}{log}")
        return done

    def ip_batch(self, lines: Sequence[str], netns: str | None = None) -> float:
        """Run `ip -batch` (in `netns`, default home) and return its wall time."""
        batch = self.workdir / "ip.batch"
        batch.write_text("\n".join(lines) + "\n")
        took, result = timed([*self.lab.ip_in(netns), "-batch", str(batch)])
        if result.returncode != 0:
            raise BenchError(f"ip -batch: {result.stderr.strip()[:500]}")
        return took

    def settle(self, offset: int) -> list[PassLine]:
        """Wait for the daemon's pass line, then for it to go quiet; its pass lines."""
        if self.daemon.wait_pass(offset) is None:
            raise BenchError(f"no pass line from the daemon:\n{self.daemon.tail()}")
        self.daemon.wait_quiet(self.config.settle_s)
        return self.daemon.passes(offset)

    def describe(self) -> dict[str, Any]:
        return {"n": self.n, "layout": self.layout.name, "layout_about": self.layout.about,
                "parents": len(self.layout.parents),
                "namespaces": len(self.lab.item_namespaces)}
