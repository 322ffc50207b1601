"""Unit tests of the daemon's timing and accounting logic, with a fake clock (no waiting)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from macvland.apply import Outcome
from macvland.ledger import Ledger
from macvland.loop import Backoff, Daemon, FightGuard, Wakeup
from macvland.model import MacvlanSpec, ObservedState
from macvland.netns import Namespaces
from macvland.ops import Create
from macvland.plan import Plan
from macvland.reconcile import PassResult
from macvland.watch import Trigger

KEY = (None, "mv0")


@pytest.mark.parametrize(("failures", "delay"), [
    pytest.param(1, 1.0, id="first"), pytest.param(2, 2.0, id="second"),
    pytest.param(5, 16.0, id="fifth"), pytest.param(20, 300.0, id="capped"),
])
def test_backoff_doubles_up_to_the_cap(failures: int, delay: float) -> None:
    backoff = Backoff(base=1.0, cap=300.0)
    for _ in range(failures):
        backoff.failed(KEY, now=100.0)
    assert backoff.next_due(100.0) == 100.0 + delay
    assert backoff.held(100.0) == {KEY}
    assert backoff.held(100.0 + delay) == set()


def test_backoff_is_forgotten_on_success() -> None:
    backoff = Backoff()
    backoff.failed(KEY, 0.0)
    backoff.succeeded(KEY)
    assert backoff.held(0.0) == set() and backoff.next_due(0.0) is None


def test_retry_now_keeps_the_count() -> None:
    backoff = Backoff(base=1.0)
    backoff.failed(KEY, 0.0)
    backoff.failed(KEY, 0.0)
    backoff.retry_now()
    assert backoff.held(0.0) == set()
    backoff.failed(KEY, 10.0)
    assert backoff.next_due(10.0) == 14.0  # third failure: 4 s, not back to 1 s


def test_one_interface_backing_off_does_not_hold_another() -> None:
    backoff = Backoff()
    backoff.failed(KEY, 0.0)
    assert backoff.held(0.0) == {KEY}


def test_fight_guard_holds_after_too_many_corrections_in_the_window() -> None:
    guard = FightGuard(limit=3, window=60.0, hold=300.0)
    started = [guard.corrected(KEY, "mode", "private", now) for now in (0.0, 1.0, 2.0, 3.0)]
    assert started == [False, False, False, True]
    assert guard.held(4.0) == {KEY}
    assert guard.held(304.0) == set()
    assert "mode=private" in guard.seen(KEY)


def test_fight_guard_forgets_corrections_outside_the_window() -> None:
    guard = FightGuard(limit=3, window=60.0)
    assert not any(guard.corrected(KEY, "mtu", "1400", now) for now in (0.0, 61.0, 122.0, 183.0))


def test_fight_guard_reset_releases_held_interfaces() -> None:
    guard = FightGuard(limit=0)
    assert guard.corrected(KEY, "mtu", "1400", 0.0)
    guard.reset()
    assert guard.held(0.0) == set()


def test_wakeup_coalesces_a_burst_into_one_set() -> None:
    wakeup = Wakeup()
    for trigger in (Trigger.DRIFT, Trigger.DRIFT, Trigger.NETNS):
        wakeup.wake(trigger)
    assert wakeup.wait(timeout=1.0, debounce=0.01) == {Trigger.DRIFT, Trigger.NETNS}
    assert wakeup.wait(timeout=0.0, debounce=0.01) == set()


def test_wakeup_from_another_thread_ends_the_wait() -> None:
    wakeup = Wakeup()
    threading.Timer(0.05, wakeup.wake, args=(Trigger.SPEC,)).start()
    assert wakeup.wait(timeout=30.0, debounce=0.0) == {Trigger.SPEC}


def test_bare_wake_interrupts_without_a_trigger() -> None:
    wakeup = Wakeup()
    wakeup.wake()
    start = time.monotonic()
    assert wakeup.wait(timeout=30.0, debounce=0.0) == set()
    assert time.monotonic() - start < 10  # woken, not timed out


@pytest.mark.parametrize(("trigger", "held"), [
    pytest.param(Trigger.DRIFT, True, id="drift-is-a-fight"),
    pytest.param(Trigger.NETNS, False, id="a-namespace-reappearing-is-not"),
])
def test_only_undone_corrections_count_as_a_fight(
        tmp_path: Path, trigger: Trigger, held: bool) -> None:
    daemon = Daemon(str(tmp_path / "macvland.yaml"), Namespaces(), Ledger(str(tmp_path)))
    nothing = Plan((), ())
    created = PassResult(nothing, (Outcome(Create(MacvlanSpec("mv0", "eth1"), 2)),), nothing,
                         ObservedState())
    for now in range(5):  # one more than the guard's limit of 3 a minute
        daemon._account(created, {trigger}, float(now))
    assert daemon.fights.held(5.0) == ({KEY} if held else set())
