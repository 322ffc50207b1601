"""Unit tests of the daemon's timing and accounting logic, with a fake clock (no waiting)."""

from __future__ import annotations

import gc
import ipaddress
import logging
import math
import threading
import time
import weakref
from pathlib import Path

import pytest

from macvland.apply import Outcome
from macvland.frozen import replace
from macvland.ledger import Ledger
from macvland.loop import (
    Backoff,
    Burst,
    Daemon,
    FightGuard,
    Wakeup,
    _changed_names,
    _freeze_survivors,
    _put_back,
)
from macvland.model import DesiredState, MacvlanSpec, Mode, ObservedState, Route, TapAccess
from macvland.netns import Namespaces
from macvland.ops import (
    AddAddress,
    AddRoute,
    AddSourceMac,
    Adopt,
    Change,
    ChangeRoute,
    ChangeTap,
    Create,
    Delete,
    FieldChange,
    Move,
    Operation,
    RemoveAddress,
    RemoveRoute,
    RemoveSourceMac,
)
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


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


DEBOUNCE = 0.05


def arrivals(burst: Burst, *times: tuple[Trigger | None, float]) -> Burst:
    for trigger, came in times:
        burst.arrive(trigger, came)
    return burst


@pytest.mark.parametrize(("history", "arriving", "due"), [
    pytest.param([], (Trigger.DRIFT, 100.0), 100.0, id="first-ever-is-at-once"),
    pytest.param([(Trigger.DRIFT, 99.0)], (Trigger.DRIFT, 100.0), 100.0,
                 id="after-a-quiet-spell-at-once"),
    pytest.param([(Trigger.DRIFT, 99.99)], (Trigger.DRIFT, 100.0), 100.05,
                 id="within-the-window-of-the-last-waits-the-window"),
    pytest.param([(Trigger.DRIFT, 99.0)], (Trigger.SPEC, 100.0), 100.05,
                 id="a-spec-event-always-waits-the-window"),
    pytest.param([(Trigger.DRIFT, 99.0)], (None, 100.0), 100.0, id="a-bare-wake-at-once"),
])
def test_burst_leading_edge(history: list[tuple[Trigger, float]],
                            arriving: tuple[Trigger, float], due: float) -> None:
    burst = arrivals(Burst(DEBOUNCE, frozenset(Trigger) - {Trigger.SPEC}), *history)
    if history:
        burst.take(history[-1][1])
    burst.arrive(*arriving)
    assert burst.due() == pytest.approx(due)


def test_burst_gathers_what_follows_the_first_into_one_set() -> None:
    burst = arrivals(Burst(DEBOUNCE), (Trigger.DRIFT, 100.0))
    assert burst.take(100.0) == {Trigger.DRIFT}  # the leading edge: a pass starts at once
    arrivals(burst, (Trigger.DRIFT, 100.001), (Trigger.NETNS, 100.02), (Trigger.DRIFT, 100.04))
    assert burst.due() == pytest.approx(100.051)  # the window of the second, not extended
    assert burst.take(100.051) == {Trigger.DRIFT, Trigger.NETNS}
    assert burst.due() == math.inf


def test_burst_after_a_long_pass_is_due_at_once_it_already_waited() -> None:
    burst = arrivals(Burst(DEBOUNCE), (Trigger.DRIFT, 100.0))
    burst.take(100.0)
    burst.arrive(Trigger.DRIFT, 100.01)  # the pass's own events, during a 300 ms pass
    assert burst.due() == pytest.approx(100.06)
    assert burst.due() < 100.3


def test_a_set_about_nothing_does_not_start_a_burst() -> None:
    """Deleting a link announces it going down (not watched), then gone, a millisecond later:
    the second event is not made to wait for the first one's window."""
    burst = arrivals(Burst(DEBOUNCE), (Trigger.DRIFT, 99.0))
    burst.take(99.0)
    burst.arrive(Trigger.DRIFT, 100.0)
    burst.take(100.0)
    burst.forget()
    burst.arrive(Trigger.DRIFT, 100.001)
    assert burst.due() == pytest.approx(100.001)


def test_a_storm_makes_one_set_per_window_plus_the_first() -> None:
    """An event every millisecond for a second: 21 sets, not 1,000 and not one at the end."""
    burst, handed = Burst(DEBOUNCE), []
    for ms in range(1000):
        now = 100.0 + ms / 1000
        if burst.due() <= now:
            handed.append(burst.take(now))
        burst.arrive(Trigger.DRIFT, now)
    handed.append(burst.take(burst.due()))
    assert len(handed) == 1 + 1000 // 50


def test_wakeup_hands_out_a_lone_trigger_at_once_with_a_fake_clock() -> None:
    clock = FakeClock()
    wakeup = Wakeup(clock)
    wakeup.wake(Trigger.DRIFT)
    # With an hour's debounce, only the leading edge can end this wait before the test does.
    assert wakeup.wait(timeout=0.0, debounce=3600.0) == {Trigger.DRIFT}


def test_wakeup_coalesces_a_burst_with_a_fake_clock() -> None:
    clock = FakeClock()
    wakeup = Wakeup(clock)
    wakeup.wake(Trigger.DRIFT)
    assert wakeup.wait(timeout=0.0, debounce=DEBOUNCE) == {Trigger.DRIFT}
    clock.now += 0.001
    for trigger in (Trigger.DRIFT, Trigger.NETNS, Trigger.DRIFT):
        wakeup.wake(trigger)
    clock.now += DEBOUNCE  # the window has passed by the time the loop waits
    assert wakeup.wait(timeout=0.0, debounce=DEBOUNCE) == {Trigger.DRIFT, Trigger.NETNS}
    assert wakeup.wait(timeout=0.0, debounce=DEBOUNCE) == set()


def test_wakeup_holds_a_spec_event_for_the_window() -> None:
    clock = FakeClock()
    wakeup = Wakeup(clock, at_once=frozenset(Trigger) - {Trigger.SPEC})
    wakeup.wake(Trigger.SPEC)

    def an_hour_later() -> None:
        clock.now += 3600.0
        wakeup.wake(Trigger.DRIFT)
    threading.Timer(0.05, an_hour_later).start()
    # The wait ends only when the hour's window is over, which is when the DRIFT comes: both
    # are gathered, where a leading-edge SPEC would have been handed out alone at once.
    assert wakeup.wait(timeout=0.0, debounce=3600.0) == {Trigger.SPEC, Trigger.DRIFT}


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


# --- what counts as a fight ---------------------------------------------------------------

ACCESS = TapAccess(owner="qemu", group="kvm", mode=0o660)
ADDRESS = ipaddress.ip_interface("192.0.2.10/24")
ROUTE = Route(ipaddress.ip_network("198.51.100.0/24"), ipaddress.ip_address("192.0.2.1"))
MOVED_ROUTE = Route(ROUTE.to, ipaddress.ip_address("192.0.2.2"))


@pytest.mark.parametrize(("op", "put_back"), [
    pytest.param(Change(None, "mv0", 5, (FieldChange("mode", Mode.BRIDGE, Mode.PRIVATE),
                                         FieldChange("mtu", 1400, 1500))),
                 [(KEY, "mode", "bridge"), (KEY, "mtu", "1400")], id="link-fields"),
    pytest.param(Create(MacvlanSpec("mv0", "eth1"), 2), [(KEY, "existence", "deleted")],
                 id="a-deleted-link"),
    pytest.param(Create(MacvlanSpec("mv0", "eth1"), 2, recreate="parent eth1 -> eth2"), [],
                 id="a-recreate-is-not"),
    pytest.param(Move("red", "mv0", 5, None), [(KEY, "netns", "red")], id="a-moved-link"),
    pytest.param(Move(None, "mv0", 5, "red"), [(("red", "mv0"), "netns", "host")],
                 id="a-link-moved-out-of-the-host"),
    pytest.param(ChangeTap(None, "mv0", 5, ACCESS, (FieldChange("tap.owner", "root", "qemu"),
                                                    FieldChange("tap.mode", "0666", "0660"))),
                 [(KEY, "tap.owner", "root"), (KEY, "tap.mode", "0666")], id="tap-access"),
    pytest.param(ChangeTap(None, "mv0", 5, ACCESS, (FieldChange("tap.mode", None, "0660"),)),
                 [], id="tap-access-of-a-device-just-made-is-not"),
    pytest.param(AddAddress(None, "mv0", 5, ADDRESS),
                 [(KEY, "addresses", "192.0.2.10/24 missing")], id="a-deleted-address"),
    pytest.param(RemoveAddress(None, "mv0", 5, ADDRESS),
                 [(KEY, "addresses", "192.0.2.10/24 not in the spec")], id="an-added-address"),
    pytest.param(AddRoute(None, "mv0", 5, ROUTE),
                 [(KEY, "routes", "198.51.100.0/24 via 192.0.2.1 missing")],
                 id="a-deleted-route"),
    pytest.param(RemoveRoute(None, "mv0", 5, ROUTE),
                 [(KEY, "routes", "198.51.100.0/24 via 192.0.2.1 not in the spec")],
                 id="an-added-route"),
    pytest.param(ChangeRoute(None, "mv0", 5, MOVED_ROUTE, ROUTE),
                 [(KEY, "routes", "198.51.100.0/24 via 192.0.2.2")], id="a-changed-route"),
    pytest.param(AddSourceMac(None, "mv0", 5, "02:00:00:00:00:01"),
                 [(KEY, "source_macs", "02:00:00:00:00:01 missing")], id="a-removed-source-mac"),
    pytest.param(RemoveSourceMac(None, "mv0", 5, "02:00:00:00:00:01"),
                 [(KEY, "source_macs", "02:00:00:00:00:01 not in the spec")],
                 id="an-added-source-mac"),
    pytest.param(Delete(None, "mv0", 5, "eth1", "no longer in the spec"), [], id="a-delete"),
    pytest.param(Adopt(None, "mv0", 5, "eth1"), [], id="an-adoption"),
])
def test_what_a_drift_correction_put_back(
        op: Operation, put_back: list[tuple[tuple[str | None, str], str, str]]) -> None:
    assert _put_back(op) == put_back


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.fields: list[dict[str, object]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.fields.append(getattr(record, "fields", {}))


@pytest.mark.parametrize(("op", "fields", "seen"), [
    pytest.param(ChangeTap(None, "mv0", 5, ACCESS, (FieldChange("tap.mode", "0666", "0660"),)),
                 "tap.mode", "tap.mode=0666", id="chmod-of-dev-tap"),
    pytest.param(ChangeTap(None, "mv0", 5, ACCESS, (FieldChange("tap.owner", "root", "qemu"),
                                                    FieldChange("tap.group", "root", "kvm"))),
                 "tap.owner,tap.group", "tap.owner,tap.group=root,root", id="chown-of-dev-tap"),
    pytest.param(AddAddress(None, "mv0", 5, ADDRESS), "addresses",
                 "addresses=192.0.2.10/24 missing", id="an-address-deleted"),
    pytest.param(RemoveRoute(None, "mv0", 5, ROUTE), "routes",
                 "routes=198.51.100.0/24 via 192.0.2.1 not in the spec", id="a-route-added"),
])
def test_a_layer_or_device_kept_undone_is_held_with_a_record_naming_the_field(
        tmp_path: Path, op: Operation, fields: str, seen: str) -> None:
    daemon = Daemon(str(tmp_path / "macvland.yaml"), Namespaces(), Ledger(str(tmp_path)))
    nothing = Plan((), ())
    corrected = PassResult(nothing, (Outcome(op),), nothing, ObservedState())
    records = Records()
    audit_log = logging.getLogger("macvland")
    audit_log.addHandler(records)
    try:
        for now in range(5):  # one more than the guard's limit of 3 a minute
            daemon._account(corrected, {Trigger.DRIFT}, float(now))
    finally:
        audit_log.removeHandler(records)
    assert daemon.fights.held(5.0) == {KEY}
    fights = [f for f in records.fields if f.get("MACVLAND_ACTION") == "fight"]
    assert [(f["MACVLAND_INTERFACE"], f["MACVLAND_FIELD"], f["MACVLAND_OLD"]) for f in fights] \
        == [("mv0", fields, seen)]


# --- what a record says it was for --------------------------------------------------------

A, B = MacvlanSpec("mv-a", "eth1"), MacvlanSpec("mv-b", "eth1")


def state(*specs: MacvlanSpec) -> DesiredState:
    return DesiredState(specs, sha256=str(hash(specs)))


@pytest.mark.parametrize(("before", "after", "changed"), [
    pytest.param(None, state(A), None, id="first-spec-everything-is-new"),
    pytest.param(state(A, B), state(A, B), frozenset(), id="same-entries"),
    pytest.param(state(A, B), state(replace(A, origin="x.yaml:9"), B), frozenset(),
                 id="an-entry-that-only-moved-lines"),
    pytest.param(state(A, B), state(replace(A, mtu=1400), B), frozenset({"mv-a"}),
                 id="one-entry-edited"),
    pytest.param(state(A), state(A, B), frozenset({"mv-b"}), id="an-entry-added"),
    pytest.param(state(A, B), state(B), frozenset({"mv-a"}), id="an-entry-removed"),
    pytest.param(state(A), state(replace(A, netns="red")), frozenset({"mv-a"}),
                 id="an-entry-moved-to-a-namespace"),
])
def test_changed_names_are_the_entries_that_differ(
        before: DesiredState | None, after: DesiredState,
        changed: frozenset[str] | None) -> None:
    assert _changed_names(before, after) == changed


@pytest.mark.parametrize(("changed", "triggers", "name", "why"), [
    pytest.param(frozenset(), {Trigger.RETRY}, "mv-new", "retry",
                 id="one-that-never-got-there-is-a-retry-not-drift"),
    pytest.param(frozenset(), {Trigger.DRIFT}, "mv-new", "retry",
                 id="one-pending-made-by-any-pass-is-not-drift"),
    pytest.param(None, {Trigger.STARTUP}, "mv-a", "startup", id="start-up"),
    pytest.param(None, {Trigger.SPEC}, "mv-a", "spec change", id="first-spec-later"),
    pytest.param(frozenset({"mv-a"}), {Trigger.SPEC}, "mv-a", "spec change",
                 id="its-entry-changed"),
    pytest.param(frozenset({"mv-a"}), {Trigger.SPEC, Trigger.DRIFT}, "mv-b", "drift",
                 id="another-entry-changed-this-one-drifted"),
    pytest.param(frozenset(), {Trigger.SPEC, Trigger.DRIFT}, "mv-a", "drift",
                 id="a-spec-event-that-changed-nothing"),
    pytest.param(frozenset(), {Trigger.NETNS, Trigger.DRIFT}, "mv-a", "namespace appeared",
                 id="a-namespace-appeared"),
    pytest.param(frozenset(), {Trigger.RESYNC}, "mv-a", "resync", id="found-by-a-resync"),
    pytest.param(frozenset(), {Trigger.RETRY}, "mv-a", "drift",
                 id="drifted-and-put-back-in-a-retry-pass"),
    pytest.param(frozenset(), {Trigger.RESYNC, Trigger.DRIFT}, "mv-a", "drift",
                 id="drift-and-a-resync-together"),
])
def test_a_record_says_what_differed_not_which_events_came(
        tmp_path: Path, changed: frozenset[str] | None, triggers: set[Trigger], name: str,
        why: str) -> None:
    daemon = Daemon(str(tmp_path / "macvland.yaml"), Namespaces(), Ledger(str(tmp_path)))
    daemon._changed = changed
    daemon._unfinished = frozenset({"mv-new"})  # pending or failing after the last pass
    assert daemon._why(Create(MacvlanSpec(name, "eth1"), 2), triggers) == why


class _Cyclic:
    def __init__(self) -> None:
        self.me = self


def test_a_frozen_cycle_stays_until_a_thaw_collects_it() -> None:
    try:
        survivor = _Cyclic()
        alive = weakref.ref(survivor)
        _freeze_survivors(thaw=False)
        assert gc.get_freeze_count() > 0
        del survivor  # garbage now, but only a cycle: refcounting cannot free it
        gc.collect()
        assert alive() is not None  # frozen: no collection walks it
        _freeze_survivors(thaw=True)  # a new spec, or a resync
        assert alive() is None
    finally:
        gc.unfreeze()
