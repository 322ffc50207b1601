"""The daemon: wake on events, coalesce them, and run whole reconcile passes.

One thread runs passes; watchers only wake it. Between events it sleeps until the next timer
(resync, or a backed-off retry), never polling. Safety rules it adds on top of a single pass:

- The last good spec stays in force: a spec that does not validate, or a file that vanished,
  is logged and changes nothing.
- A failing interface backs off exponentially (capped) while the others converge; a spec
  change or a relevant event retries it at once.
- When something keeps undoing macvland's corrections on an interface, macvland stops fighting
  over that interface for a while and says so, naming the fields and the values it kept seeing.
"""

from __future__ import annotations

import contextlib
import gc
import math
import os
import queue
import signal
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from types import FrameType
from typing import TYPE_CHECKING

from macvland import audit, reload
from macvland.apply import Outcome
from macvland.errors import MacvlandError, SpecError
from macvland.intake import DEFAULT_MAX_BYTES, DEFAULT_SETTLE
from macvland.ledger import Ledger
from macvland.model import (
    DesiredState,
    Key,
    Kind,
    MacvlanSpec,
    Netns,
    ObservedState,
    State,
    netns_label,
)
from macvland.netns import Namespaces
from macvland.ops import (
    AddAddress,
    AddRoute,
    AddSourceMac,
    Change,
    ChangeRoute,
    ChangeTap,
    Create,
    Move,
    Operation,
    RemoveAddress,
    RemoveRoute,
    RemoveSourceMac,
    show,
)
from macvland.plan import Condition, PlanMemo, Verdict, summary
from macvland.reader import Intake, SpecReader
from macvland.reconcile import PassResult, reconcile
from macvland.systemd import Notifier
from macvland.tapwatch import TapWatcher
from macvland.watch import FileWatcher, Interest, LinkWatcher, Trigger

if TYPE_CHECKING:
    from macvland.metrics import Metrics
    from macvland.observe import LinkCache

Clock = Callable[[], float]


@dataclass
class Burst:
    """When a set of triggers is due: the first of a burst at once, the rest together.

    A trigger that comes after a quiet spell (nothing for `debounce` seconds) is due at once:
    a lone drift event is repaired in the time of a pass, not of a window (leading edge). One
    that comes within `debounce` of the previous trigger is part of a burst: it is due once
    `debounce` has passed both since it came and since the previous set was handed out, in
    one set with everything that came meanwhile (trailing edge). So a burst of any length
    makes one pass per `debounce` of it at most, plus the first.

    A trigger outside `at_once` (an event about something not yet whole) never takes the
    leading edge: a set holding one waits out the window. Pure: times are given, not read.
    """

    debounce: float
    at_once: frozenset[Trigger] = frozenset(Trigger)
    pending: set[Trigger | None] = field(default_factory=set)
    _due: float = math.inf
    _last_trigger: float = -math.inf
    _last_handed: float = -math.inf
    _before: tuple[float, float] = (-math.inf, -math.inf)
    """(_last_trigger, _last_handed) as they were before the pending or last handed set."""

    def arrive(self, trigger: Trigger | None, came: float) -> None:
        if not self.pending:
            self._before = (self._last_trigger, self._last_handed)
            quiet = came - self._last_trigger >= self.debounce
            self._due = came if quiet else max(came, self._last_handed) + self.debounce
        self.pending.add(trigger)
        if trigger is not None and trigger not in self.at_once:
            self._due = max(self._due, max(came, self._last_handed) + self.debounce)
        self._last_trigger = max(self._last_trigger, came)

    def due(self) -> float:
        """When the pending set should be handed out (infinity when nothing is pending)."""
        return self._due if self.pending else math.inf

    def take(self, now: float) -> set[Trigger]:
        """Hand out the pending set (None, a bare wake, is dropped from it)."""
        taken = {t for t in self.pending if t is not None}
        self.pending = set()
        self._due = math.inf
        self._last_handed = now
        return taken

    def forget(self) -> None:
        """The last set turned out to be about nothing (events about links nobody watches):
        it does not make what follows a burst. Deleting a link announces it going down, then
        gone: the second must not wait for the first's window."""
        self._last_trigger, self._last_handed = self._before


class Wakeup:
    """The loop's bell: watchers and signal handlers ring it, the loop waits on it, and a
    `Burst` decides when what rang is handed out.

    `SimpleQueue.put` is reentrant, so signal handlers may call `wake` too. Each trigger is
    stamped with `clock` when it rings.
    """

    def __init__(self, clock: Clock = time.monotonic,
                 at_once: frozenset[Trigger] = frozenset(Trigger)) -> None:
        self._queue: queue.SimpleQueue[tuple[Trigger | None, float]] = queue.SimpleQueue()
        self._clock = clock
        self._at_once = at_once
        self._burst: Burst | None = None

    def wake(self, trigger: Trigger | None = None) -> None:
        """Ask for a pass for `trigger`; None only interrupts the wait."""
        self._queue.put((trigger, self._clock()))

    def forget(self) -> None:
        """See Burst.forget."""
        if self._burst is not None:
            self._burst.forget()

    def wait(self, timeout: float | None, debounce: float) -> set[Trigger]:
        """Sleep until woken (or `timeout`), then until the set that rang is due; that set."""
        if self._burst is None or self._burst.debounce != debounce:
            self._burst = Burst(debounce, self._at_once)
        burst = self._burst
        try:
            first, came = self._queue.get(timeout=timeout)
        except queue.Empty:
            return set()
        burst.arrive(first, came)
        while True:
            with contextlib.suppress(queue.Empty):
                while True:  # what is queued already joins the set, without waiting
                    burst.arrive(*self._queue.get_nowait())
            left = burst.due() - self._clock()
            if left <= 0:
                return burst.take(self._clock())
            with contextlib.suppress(queue.Empty):
                burst.arrive(*self._queue.get(timeout=left))


@dataclass
class Backoff:
    """Exponential, capped retry delays per interface; forgotten on success."""

    base: float = 1.0
    cap: float = 300.0
    _failures: dict[Key, tuple[int, float]] = field(default_factory=dict)

    def failed(self, key: Key, now: float) -> None:
        count = self._failures.get(key, (0, 0.0))[0] + 1
        self._failures[key] = (count, now + min(self.cap, self.base * 2 ** (count - 1)))

    def succeeded(self, key: Key) -> None:
        self._failures.pop(key, None)

    def retry_now(self) -> None:
        """Make every retry due, keeping the counts so a persistent failure still backs off."""
        self._failures = {k: (count, 0.0) for k, (count, _) in self._failures.items()}

    def held(self, now: float) -> set[Key]:
        return {k for k, (_, due) in self._failures.items() if due > now}

    def next_due(self, now: float) -> float | None:
        return min((due for _, due in self._failures.values() if due > now), default=None)


@dataclass
class FightGuard:
    """Notices an interface whose corrections keep being undone, and stops fighting for it."""

    limit: int = 3
    """Corrections of one interface within `window` seconds tolerated before holding it."""
    window: float = 60.0
    hold: float = 300.0
    _corrections: dict[Key, deque[float]] = field(default_factory=lambda: defaultdict(deque))
    _seen: dict[Key, list[str]] = field(default_factory=lambda: defaultdict(list))
    _held: dict[Key, float] = field(default_factory=dict)

    def corrected(self, key: Key, fields: str, seen: str, now: float) -> bool:
        """Record one correction; True when this one makes the interface held."""
        times = self._corrections[key]
        times.append(now)
        while times and times[0] < now - self.window:
            times.popleft()
        self._seen[key] = [*self._seen[key][-self.limit:], f"{fields}={seen}"]
        if len(times) > self.limit:
            self._held[key] = now + self.hold
            times.clear()
            return True
        return False

    def seen(self, key: Key) -> str:
        return ", ".join(sorted(set(self._seen[key])))

    def held(self, now: float) -> set[Key]:
        return {k for k, until in self._held.items() if until > now}

    def next_due(self, now: float) -> float | None:
        return min((u for u in self._held.values() if u > now), default=None)

    def reset(self) -> None:
        """A new spec is a new intent: forget old fights."""
        self._corrections.clear()
        self._seen.clear()
        self._held.clear()


# What an operation is recorded as when the spec entry it serves did not change and the
# interface was in sync: the kernel drifted from the spec, and the operation is a correction
# (a fight, if it keeps happening). Found by a resync, it says so.
_DRIFT = (Trigger.DRIFT, Trigger.RESYNC)
_UNFINISHED = frozenset({Condition.PENDING, Condition.ERROR, Condition.CONFLICT})

# What may start a pass the moment it comes (spec events come from the reader, once the
# writer is done). A namespace's entry in /run/netns appears before `ip netns add` mounts the
# namespace on it (entering it then fails with EINVAL): that pass waits out the debounce.
_AT_ONCE = frozenset(Trigger) - {Trigger.NETNS}


@dataclass
class Daemon:
    config: str
    namespaces: Namespaces
    ledger: Ledger
    resync: float = 300.0
    debounce: float = 0.05
    netns_dir: str = "/run/netns"
    max_bytes: int = DEFAULT_MAX_BYTES
    """A larger spec is refused before it is read."""
    settle: float = DEFAULT_SETTLE
    """How long a spec still open for writing must stay unchanged to be read anyway."""
    clock: Clock = time.monotonic
    notifier: Notifier = field(default_factory=Notifier)
    metrics: Metrics | None = None
    """Told about each spec read and pass; writes its file after each pass (--metrics-file)."""
    reloads: str | None = None
    """The state directory where each SIGHUP's pass is recorded (`macvland reload` waits)."""

    desired: DesiredState | None = None
    wakeup: Wakeup = field(init=False)
    backoff: Backoff = field(default_factory=Backoff)
    fights: FightGuard = field(default_factory=FightGuard)
    stopping: bool = False
    last: PassResult | None = None
    cache: LinkCache | None = None
    """Link tables kept current by netlink events (the link watcher), instead of dumps."""
    _plans: PlanMemo = field(default_factory=PlanMemo)
    reader: SpecReader = field(init=False)
    """Reads and parses the spec on its own thread, once its writer is done."""
    _changed: frozenset[str] | None = frozenset()
    """The names whose spec entries the spec taking force in this pass changed (None: the
    first spec, everything is new); operations on other names correct drift."""
    _unfinished: frozenset[str] = frozenset()
    """The names pending, failing or in conflict after the last pass: one of those made now
    completes the spec (a retry) and corrects no drift."""
    _seen_sha256: str | None = None
    _reported: dict[Key, str] = field(default_factory=dict)
    _links: LinkWatcher | None = None
    _files: FileWatcher | None = None
    _taps: TapWatcher | None = None
    """inotify on /dev, armed while the spec manages some macvtap's /dev/tapN."""
    _reload_read: int | None = None
    """When a read that a SIGHUP asked for happened (CLOCK_MONOTONIC ns), until recorded."""
    _rejected: SpecError | None = None
    _status: str = ""

    def __post_init__(self) -> None:
        # A spec trigger comes only once its writer is done and it is parsed (the reader's
        # settle rule), so every trigger may start a pass at once.
        self.wakeup = Wakeup(self.clock, _AT_ONCE)
        self.reader = SpecReader(self.config, self.max_bytes,
                                 lambda: self.wakeup.wake(Trigger.SPEC), self.settle, self.clock)

    def stop(self, *_: object) -> None:
        self.stopping = True
        self.wakeup.wake()

    def reload(self, *_: object) -> None:
        """Read the spec now (SIGHUP), once no writer is at work (see reader.py)."""
        self.reader.request(forced=True)

    def run(self) -> int:
        files = FileWatcher(self.config, self.netns_dir, self.wakeup.wake, self.reader.changed)
        links = LinkWatcher(self.namespaces, self.wakeup.wake)
        taps = TapWatcher(self.wakeup.wake)
        previous = {sig: signal.signal(sig, handler) for sig, handler in (
            (signal.SIGTERM, self._on_signal), (signal.SIGINT, self._on_signal),
            (signal.SIGHUP, self._on_hup),
            # The writer check takes a read lease for an instant; a writer opening the file
            # then makes the kernel send SIGIO, whose default action would kill us.
            (signal.SIGIO, signal.SIG_IGN))}
        self.reader.on_read = files.follow  # a symlink may now point elsewhere
        self.cache = links
        self._links = links
        self._files = files
        self._taps = taps
        files.start()
        links.start()  # the /dev watcher starts when first armed
        self.reader.start()
        try:
            self.wakeup.wake(Trigger.STARTUP)
            resync_at = self.clock() + self.resync
            ping = self.notifier.watchdog_interval
            ping_at = self.clock() if ping else None
            while not self.stopping:
                now = self.clock()
                if ping and ping_at is not None and now >= ping_at:
                    self.notifier.watchdog()
                    ping_at = now + ping
                retry_at = min((d for d in (self.backoff.next_due(now),
                                            self.fights.next_due(now)) if d is not None),
                               default=None)
                due = [d for d in (resync_at, ping_at, retry_at) if d is not None]
                triggers = self.wakeup.wait(max(0.0, min(due) - now), self.debounce)
                if self.stopping:
                    break
                if not triggers:
                    if self.clock() >= resync_at:
                        triggers = {Trigger.RESYNC}
                    elif retry_at is not None and self.clock() >= retry_at:
                        triggers = {Trigger.RETRY}
                    else:
                        continue  # only the watchdog's turn
                # Both read: each watcher waits for its events to be read before it rings again.
                if triggers == {Trigger.DRIFT} and not (links.refresh() | taps.refresh()):
                    # Events about links or device nodes nobody cares about, or our own,
                    # already seen.
                    self.wakeup.forget()
                    continue
                if Trigger.RESYNC in triggers:
                    links.invalidate()  # a resync reads everything from the kernel again
                in_force = self.desired
                ran = self.pass_once(triggers)
                if ran:
                    _freeze_survivors(thaw=self.desired is not in_force
                                      or Trigger.RESYNC in triggers)
                if self.metrics is not None:
                    self.metrics.write()  # only if its text changed (a rejected spec, a pass)
                if ran or Trigger.RESYNC in triggers:
                    resync_at = self.clock() + self.resync
                if ran:
                    taps.want(self._tap_interest())
                if ran and links.watch(self._interest()):
                    # A namespace this pass did not read (it appeared since): a change there
                    # before the subscription made an event nobody heard, so one more pass
                    # reads it. (What a pass reads, it subscribed to first.)
                    self.wakeup.wake(Trigger.RETRY)
        finally:
            self.notifier.stopping()
            self.reader.stop()
            files.stop()
            links.stop()
            taps.stop()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        audit.info("stopping; interfaces are left in place")
        return 0

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self.stop()

    def _on_hup(self, signum: int, _frame: FrameType | None) -> None:
        self.reload()

    def pass_once(self, triggers: set[Trigger]) -> bool:
        """Reload the spec if asked, then reconcile; False when nothing called for a pass."""
        ran = self._pass_once(triggers)
        if self._reload_read is not None:
            self._record_reload(self._reload_read)
        return ran

    def _record_reload(self, read_ns: int) -> None:
        self._reload_read = None
        if self.reloads is None:
            return
        rejected, self._rejected = self._rejected, None
        try:
            reload.record(self.reloads, reload.Reloaded(
                pid=os.getpid(), read_ns=read_ns,
                in_force=self.desired.sha256 if self.desired else None,
                rejected=rejected.sha256 if rejected else None,
                problems=len(rejected.problems) + rejected.omitted if rejected else 0,
                status=self._status))
        except MacvlandError as error:
            audit.warning(str(error))

    def _notify_passed(self, status: str) -> None:
        self._status = status
        self.notifier.passed(status)

    def _pass_once(self, triggers: set[Trigger]) -> bool:
        trigger = min(triggers, key=list(Trigger).index)
        self._changed = frozenset()
        # Start-up reads here: there is nothing to do before. Otherwise the reader has read
        # and parsed, and a spec trigger hands over what it found.
        if Trigger.STARTUP in triggers:
            intake = self.reader.read_now(forced=True)
        else:
            intake = self.reader.take() if Trigger.SPEC in triggers else None
        if Trigger.RESYNC in triggers:
            # A file event can be lost (a bind mount, a file system without inotify): a
            # resync asks the reader to look; unchanged bytes cost a read and a hash.
            self.reader.request()
        took = intake is not None and self._take(intake, trigger)
        if triggers <= {Trigger.SPEC} and not took:
            return False  # a spec that did not take force, and nothing else to do
        if self.desired is None:
            # Nothing to enforce, and nothing torn down: up, and saying why it waits.
            self._notify_passed("no valid spec: waiting for a fix (see the log)")
            return False
        if triggers & {Trigger.SPEC, Trigger.NETNS, Trigger.DRIFT, Trigger.STARTUP}:
            self.backoff.retry_now()
        now = self.clock()
        desired = self.desired
        if self._files is not None:
            # Before the pass looks, not after it: a namespace that appears while the pass
            # runs or just after it must wake the loop, or its interfaces wait for the resync.
            self._files.watch_namespaces(frozenset(
                ns for ns in desired.namespaces() | self.ledger.namespaces()
                if ns is not None and "/" not in ns))
        if self._taps is not None:
            # Likewise before the pass reads /dev: a chmod just after the read is an event.
            self._taps.arm(bool(_managed_taps(desired)))
        writes = self.namespaces.writes
        result = reconcile(
            desired, self.namespaces, self.ledger,
            report=lambda outcome: audit.operation(
                outcome, self._why(outcome.operation, triggers), desired.sha256),
            hold=self.backoff.held(now) | self.fights.held(now),
            stop=lambda: self.stopping, cache=self.cache, memo=self._plans,
            devices=self._taps)
        seconds = self.clock() - now
        audit.pass_done(sorted(map(str, triggers)), len(result.outcomes),
                        self.namespaces.writes - writes, seconds)
        if self.metrics is not None:
            self.metrics.passed(result, lambda o: self._why(o.operation, triggers),
                                set(map(str, triggers)),
                                self.fights.held(self.clock()), seconds,
                                self._links.overflows if self._links else 0)
        self._account(result, triggers, now)
        self._unfinished = frozenset(v.spec.name for v in result.remaining.verdicts
                                     if v.condition in _UNFINISHED)
        self.last = result
        self._notify_passed(summary(result.remaining.verdicts))
        return True

    def _take(self, intake: Intake, trigger: Trigger) -> bool:
        """Put what the reader found in force; True when a pass should follow (a new valid
        spec, or a reload, which ends in a pass with the spec in force whatever it found)."""
        if intake.forced:
            self._reload_read = intake.read_ns
            if trigger is not Trigger.STARTUP:
                self.notifier.reloading()
        if intake.desired is None:
            error = intake.error
            if error is None:
                return intake.forced  # a reload that found the file still being written
            if intake.forced:
                self._rejected = error
            seen = error.sha256 or f"!{error}"
            if seen != self._seen_sha256 or intake.forced:
                self._seen_sha256 = seen
                audit.spec_rejected(error, self.config,
                                    self.desired.sha256 if self.desired else None)
                if self.metrics is not None:
                    self.metrics.rejected()
            # A reload still ends in a pass with the spec in force: it is what tells systemd
            # the reload is over (READY=1), or `systemctl reload` would wait.
            return intake.forced
        desired = intake.desired
        if desired.sha256 == self._seen_sha256 and not intake.forced:
            return False
        self._seen_sha256 = desired.sha256
        new = self.desired is None or desired.sha256 != self.desired.sha256
        if new:
            self._changed = _changed_names(self.desired, desired)
            audit.spec_accepted(desired, str(Trigger.STARTUP if trigger is Trigger.STARTUP
                                             else Trigger.SPEC))
            self.fights.reset()
        if self.metrics is not None:
            self.metrics.accepted(desired, new)
        self.desired = desired
        return True

    def _why(self, op: Operation, triggers: set[Trigger]) -> str:
        """What an operation of this pass is recorded as, from what differed: the spec (its
        entry for this name changed, or it is the first spec), a namespace that appeared, an
        interface that had not got there yet (a retry), or else the kernel drifting from an
        unchanged spec it was in sync with; never from which events came."""
        if self._changed is None:
            return str(Trigger.STARTUP if Trigger.STARTUP in triggers else Trigger.SPEC)
        if op.name in self._changed:
            return str(Trigger.SPEC)
        if Trigger.NETNS in triggers:
            return str(Trigger.NETNS)
        if op.name in self._unfinished:
            return str(Trigger.RETRY)  # it never got there (pending, failed): nothing drifted
        return str(Trigger.RESYNC if triggers == {Trigger.RESYNC} else Trigger.DRIFT)

    def _account(self, result: PassResult, triggers: set[Trigger], now: float) -> None:
        failed = {(o.operation.netns, o.operation.name) for o in result.outcomes if o.error}
        applied = [o for o in result.outcomes if o.ok]
        for key in failed:
            self.backoff.failed(key, now)
        for o in applied:
            key = (o.operation.netns, o.operation.name)
            if key not in failed:
                self.backoff.succeeded(key)
        for v in result.remaining.verdicts:
            if v.condition is Condition.ERROR:
                self.backoff.failed(v.spec.key, now)  # e.g. a namespace not yet mounted
        held = self.backoff.held(now) | self.fights.held(now)
        attempted = {(op.netns, op.name) for op in result.plan.operations}
        for op in result.remaining.operations:
            key = (op.netns, op.name)
            if key in failed or key in held:
                continue
            if key in attempted:
                # Applied without error, yet still different: the kernel ignored the change,
                # or something undid it at once. Look again, but not in a tight loop.
                self.backoff.failed(key, now)
            else:
                self.wakeup.wake(Trigger.RETRY)  # it changed while we worked: go again
        # Only corrections of drift can be a fight: not what a spec change or a namespace
        # appearing asked for, whatever else woke the same pass.
        drift = {str(t) for t in _DRIFT}
        self._count_fights([o for o in applied if self._why(o.operation, triggers) in drift],
                           now)
        self._report_verdicts(result.remaining.verdicts)

    def _count_fights(self, applied: Iterable[Outcome], now: float) -> None:
        per_key: dict[Key, list[str]] = defaultdict(list)
        seen: dict[Key, list[str]] = defaultdict(list)
        for o in applied:
            for key, name, found in _put_back(o.operation):
                per_key[key].append(name)
                seen[key].append(found)
        for key, fields in per_key.items():
            names, values = ",".join(fields), ",".join(seen[key])
            if self.fights.corrected(key, names, values, now):
                audit.fight(key[1], key[0], names, self.fights.seen(key), self.fights.hold)

    def _report_verdicts(self, verdicts: Iterable[Verdict]) -> None:
        """Log conflicts, errors and pending states once, when they appear or change."""
        current = {}
        for v in verdicts:
            if v.condition in (Condition.CONFLICT, Condition.ERROR, Condition.PENDING):
                current[v.spec.key] = v.detail
                if self._reported.get(v.spec.key) != v.detail:
                    audit.verdict(v, self.desired.sha256 if self.desired else "")
        self._reported = current

    def _tap_interest(self) -> frozenset[int]:
        """The N of every /dev/tapN whose events matter: the managed macvtaps' ifindexes, as
        the last pass left them (a node that is missing is among them: its return matters)."""
        if self.desired is None or self.last is None:
            return frozenset()
        observed = self.last.observed
        links = (observed.get(spec.netns, spec.name) for spec in _managed_taps(self.desired))
        return frozenset(link.ifindex for link in links
                         if link is not None and link.kind == Kind.MACVTAP)

    def _interest(self) -> dict[Netns, Interest]:
        """Which links' events matter, per namespace: what the spec names, what we own, and
        the parents; and whose address and route events matter."""
        if self.desired is None or self.last is None:
            return {}
        observed: ObservedState = self.last.observed
        names: dict[Netns, set[str]] = defaultdict(set)
        layered: dict[Netns, set[str]] = defaultdict(set)
        for spec in self.desired.interfaces:
            names[spec.netns].add(spec.name)
            if spec.state is not State.ABSENT:
                names[None].add(spec.parent)
                if spec.addresses is not None or spec.routes is not None:
                    layered[spec.netns].add(spec.name)
        for link in observed.owned():
            names[link.netns].add(link.name)
        interest = {}
        for netns in set(names) | set(observed.links) | {None}:
            present = observed.links.get(netns, {})
            wanted = frozenset(names.get(netns, ()))
            interest[netns] = Interest(wanted, frozenset(
                present[n].ifindex for n in wanted if n in present), frozenset(
                present[n].ifindex for n in layered.get(netns, ()) if n in present))
        return interest


def _freeze_survivors(thaw: bool) -> None:
    """Take what a pass left alive out of the collector's way until the next spec or resync.

    It is mostly state that lives that long (the spec, the link tables, the plan memo). Left in
    the oldest generation, every full collection walked all of it: at 10,000 interfaces 100 ms
    or more, collecting nothing, inside a pass every second or third pass. Frozen, a
    collection walks only what came since. Refcounting still frees frozen objects; a cycle
    among them waits for the thaw (a new spec, a resync), when one full collection walks all.
    """
    if thaw:
        gc.unfreeze()
    gc.collect()
    gc.freeze()


def _managed_taps(desired: DesiredState) -> tuple[MacvlanSpec, ...]:
    """The macvtaps whose /dev/tapN owner, group or mode the spec sets."""
    return tuple(spec for spec in desired.interfaces if spec.kind is Kind.MACVTAP
                 and spec.tap is not None and spec.state is not State.ABSENT)


def _put_back(op: Operation) -> list[tuple[Key, str, str]]:
    """What an operation that corrected drift put back: (interface, field, what it found
    instead), for the fight guard. Link settings, the link's existence and namespace, its
    source MACs, addresses and routes, and its /dev/tapN's access; a recreate is not one
    (the spec asked for it, or another's device took the number)."""
    key = (op.netns, op.name)
    if isinstance(op, Change):
        return [(key, c.field, show(c.old)) for c in op.changes]
    if isinstance(op, ChangeTap):
        # From nothing: the device of a macvtap this pass made, whose Create says it all.
        return [(key, c.field, show(c.old)) for c in op.changes if c.old is not None]
    if isinstance(op, Create):
        return [] if op.recreate else [(key, "existence", "deleted")]
    if isinstance(op, Move):
        return [((op.target, op.name), "netns", netns_label(op.netns))]
    if isinstance(op, AddSourceMac | RemoveSourceMac):
        return [(key, "source_macs", _found(op.mac, isinstance(op, AddSourceMac)))]
    if isinstance(op, AddAddress | RemoveAddress):
        return [(key, "addresses", _found(op.address, isinstance(op, AddAddress)))]
    if isinstance(op, AddRoute | RemoveRoute):
        return [(key, "routes", _found(op.route, isinstance(op, AddRoute)))]
    if isinstance(op, ChangeRoute):
        return [(key, "routes", str(op.old))]
    return []  # deletes and adoptions put no setting back


def _found(item: object, added: bool) -> str:
    """What the kernel had instead of an item of a set that macvland added or removed."""
    return f"{item} missing" if added else f"{item} not in the spec"


def _changed_names(before: DesiredState | None, after: DesiredState) -> frozenset[str] | None:
    """The names whose spec entries differ (added, removed or changed); None: all are new."""
    if before is None:
        return None
    old = {spec.key: spec for spec in before.interfaces}
    new = {spec.key: spec for spec in after.interfaces}
    return frozenset(key[1] for key in old.keys() | new.keys() if old.get(key) != new.get(key))
