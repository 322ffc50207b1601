"""The /dev watcher against real inotify, on a directory standing in for /dev: what wakes the
daemon, and what does not."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from macvland.tapwatch import TapWatcher
from macvland.watch import Trigger


class Rings:
    def __init__(self) -> None:
        self.triggers: list[Trigger] = []
        self.rang = threading.Event()

    def __call__(self, trigger: Trigger) -> None:
        self.triggers.append(trigger)
        self.rang.set()


@pytest.fixture
def dev(tmp_path: Path) -> Path:
    path = tmp_path / "dev"
    path.mkdir()
    for name in ("tap5", "tap6", "tap50", "null"):
        (path / name).write_bytes(b"")
    return path


@pytest.fixture
def watcher(dev: Path) -> Iterator[tuple[TapWatcher, Rings]]:
    rings = Rings()
    taps = TapWatcher(rings, str(dev))
    taps.want(frozenset({5}))
    taps.arm(True)  # starts its thread
    yield taps, rings
    taps.stop()


CHANGES: dict[str, Callable[[Path], object]] = {
    "chmod": lambda p: os.chmod(p, 0o666),
    "chown": lambda p: os.chown(p, 65534, 65534),
    "delete": lambda p: p.unlink(),
    "rename-away": lambda p: p.rename(p.with_name("elsewhere")),
}


@pytest.mark.parametrize("change", sorted(CHANGES))
def test_a_change_to_a_wanted_node_rings_and_reads_as_relevant(
        dev: Path, watcher: tuple[TapWatcher, Rings], change: str) -> None:
    taps, rings = watcher
    CHANGES[change](dev / "tap5")
    # The thread rings once something is queued (waited for, not timed: 60 s is a deadline).
    assert rings.rang.wait(60)
    assert rings.triggers == [Trigger.DRIFT]
    assert taps.refresh()
    assert not taps.refresh()  # read once


def test_a_wanted_node_appearing_is_relevant(dev: Path, watcher: tuple[TapWatcher, Rings]) -> None:
    taps, _ = watcher
    (dev / "tap5").unlink()
    taps.refresh()
    (dev / "tap5").write_bytes(b"")
    assert taps.refresh()


@pytest.mark.parametrize("name", ["tap6", "tap50", "null"])
def test_changes_to_other_nodes_are_not_relevant(
        dev: Path, watcher: tuple[TapWatcher, Rings], name: str) -> None:
    taps, _ = watcher
    os.chmod(dev / name, 0o666)
    (dev / f"{name}.new").write_bytes(b"")
    assert not taps.refresh()


def test_opening_reading_and_writing_a_wanted_node_is_not_relevant(
        dev: Path, watcher: tuple[TapWatcher, Rings]) -> None:
    # A VM reads and writes its /dev/tapN all the time (and everyone /dev/null): the mask
    # keeps opens, reads and writes out of the queue altogether.
    taps, _ = watcher
    with open(dev / "tap5", "r+b") as node:
        node.write(b"x")
        node.seek(0)
        node.read()
    assert not taps.refresh()


def test_an_unarmed_watcher_sees_nothing(dev: Path, watcher: tuple[TapWatcher, Rings]) -> None:
    taps, _ = watcher
    taps.arm(False)
    taps.refresh()  # the watch's removal (IN_IGNORED) names no node
    os.chmod(dev / "tap5", 0o666)
    assert not taps.refresh()
    taps.arm(True)
    os.chmod(dev / "tap5", 0o644)
    assert taps.refresh()


def test_a_dev_that_cannot_be_watched_is_a_warning_not_a_crash(tmp_path: Path) -> None:
    taps = TapWatcher(Rings(), str(tmp_path / "no-such-dev"))
    warnings: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: warnings.append(record.getMessage())  # type: ignore[method-assign]
    audit_log = logging.getLogger("macvland")
    audit_log.addHandler(handler)
    try:
        taps.arm(True)
        taps.arm(True)  # said once, not every pass
        assert not taps.refresh()
    finally:
        audit_log.removeHandler(handler)
        taps.stop()
    assert [w.split("; ")[1] for w in warnings] == [
        "a change to a macvtap's /dev/tapN is put back at the next resync only"]
