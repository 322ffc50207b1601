"""Changes that land in the instant after a pass has read the kernel, made to land there.

The loop reads the kernel during a pass and learns from it which links and namespaces to
watch. A change made just after the pass's last read must still wake it: a level-triggered
daemon that misses it leaves the kernel wrong until the resync, five minutes later. Outside,
that instant is a matter of luck (a loaded machine hits it now and then); here the daemon runs
in-process and its metrics writer, which the loop calls right after each pass and before it
updates its subscriptions, makes the change, so every run hits it.
"""

from __future__ import annotations

import gc
import logging
import os
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from macvland.loop import Daemon
from macvland.metrics import Metrics
from tests.conftest import NETNS_DIR, Lab, macvlan_info

DEADLINE = 15.0


class AfterEachPass(Metrics):
    """Metrics whose writer, after the pass numbered n (from 1), calls `act(n)`; it stops
    the daemon when that returns True."""

    def __init__(self, path: str, act: Callable[[int], bool]) -> None:
        super().__init__(path)
        self.act = act
        self.written = 0
        self.stop: Callable[[], None] = lambda: None

    def write(self) -> None:
        super().write()
        self.written += 1
        if self.act(self.written):
            self.stop()


def run_until(lab: Lab, tmp_path: Path, spec: str, act: Callable[[int], bool]) -> bool:
    """Run the daemon in this thread until `act` is done (True) or the deadline (False)."""
    config = tmp_path / "macvland.yaml"
    config.write_text(spec)
    metrics = AfterEachPass(str(tmp_path / "macvland.prom"), act)
    daemon = Daemon(str(config), lab.namespaces, lab.ledger, metrics=metrics)
    done = threading.Event()

    def finish() -> None:
        done.set()
        daemon.stop()

    metrics.stop = finish
    deadline = threading.Timer(DEADLINE, daemon.stop)
    deadline.start()
    try:
        assert daemon.run() == 0
    finally:
        deadline.cancel()
    return done.is_set()


def mode(lab: Lab, name: str, netns: str | None = None) -> str | None:
    found = lab.links(netns).get(name)
    return macvlan_info(found).get("mode") if found else None


def records(caplog: pytest.LogCaptureFixture, **wanted: str) -> list[dict[str, Any]]:
    """The audit records (their journal fields) that have all of `wanted`."""
    found = [getattr(r, "fields", {}) for r in caplog.records]
    return [f for f in found if wanted.items() <= f.items()]


def test_a_change_right_after_the_first_pass_is_corrected_as_drift(
        lab: Lab, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="macvland")

    def act(passes: int) -> bool:
        if passes == 1:
            assert mode(lab, "mv0") == "bridge"
            lab.ip("link", "set", "mv0", "type", "macvlan", "mode", "private")
            return False
        return mode(lab, "mv0") == "bridge"

    assert run_until(lab, tmp_path, "version: 1\ninterfaces:\n"
                     "  - {name: mv0, parent: eth1, mode: bridge}\n", act), \
        f"mv0 still in mode {mode(lab, 'mv0')} after {DEADLINE} s"
    # Woken by the change's own event, not by a pass made on the off chance (a retry).
    corrected = records(caplog, MACVLAND_INTERFACE="mv0", MACVLAND_ACTION="change")
    assert [c["MACVLAND_TRIGGER"] for c in corrected] == ["drift"], corrected


def test_a_namespace_appearing_right_after_a_pass_gets_its_interface(
        lab: Lab, tmp_path: Path) -> None:
    # `ip netns add` in its two steps: the entry in /run/netns appears (the only event), and
    # only then is the namespace mounted on it. Here the entry appears in the instant after
    # the pass that found it missing, and the mount waits for the pass its event makes: so
    # nothing but that event can bring the interface (entering an entry not yet mounted
    # fails; the mount makes no event).
    red = lab.name("red")
    entry = os.path.join(NETNS_DIR, red)
    lab.created.append(red)  # `ip netns del` unmounts and removes it
    source = lab.add_netns("source")

    def act(passes: int) -> bool:
        if passes == 1:
            with open(entry, "x"):
                pass
            return False
        if passes == 2:
            subprocess.run(["mount", "--bind", os.path.join(NETNS_DIR, source), entry],
                           check=True)
            return False
        return mode(lab, "mv-r", red) == "vepa"

    assert run_until(lab, tmp_path, "version: 1\ninterfaces:\n"
                     f"  - {{name: mv-r, parent: eth1, mode: vepa, netns: {red}}}\n", act), \
        f"no mv-r in {red} after {DEADLINE} s"


def test_what_a_pass_leaves_alive_is_frozen_before_the_loop_goes_on(
        lab: Lab, tmp_path: Path) -> None:
    # Full collections would otherwise walk the whole state, inside later passes (see
    # loop._freeze_survivors; the thaw is tested in test_loop.py).
    frozen: list[int] = []

    def act(passes: int) -> bool:
        frozen.append(gc.get_freeze_count())
        return True

    gc.unfreeze()
    try:
        assert run_until(lab, tmp_path, "version: 1\ninterfaces:\n"
                         "  - {name: mv0, parent: eth1}\n", act)
    finally:
        gc.unfreeze()
    assert frozen and frozen[0] > 0
