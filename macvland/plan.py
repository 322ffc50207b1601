"""The planner: a pure function from (desired, observed) to the smallest ordered plan.

No I/O happens here. The rules it encodes, and why:

- Identity is (netns, name). A link is macvland's when it carries the owner alias; a macvlan of
  the wanted name on the wanted parent is adopted; anything else of that name is a conflict and
  is never touched.
- Whatever the kernel changes in place is changed in place; what it cannot is deleted and
  recreated. Which is which is each setting's `update` in macvland.settings (a new parent,
  which the kernel silently ignores on an existing macvlan, and entering or leaving passthru,
  which it refuses, recreate); the planner compares every setting the table lists.
- Order: deletes, moves, in-place changes, creates. Deletes free names and MACs that later
  steps reuse; creates come last so a passthru interface finds its parent free.
- Source MACs change by additions first and removals second, so the list is never briefly
  empty (a replace would flush it, and the kernel applies it without rollback).
- An owned link whose key left the spec is deleted; but one that could be moved to a namespace
  that does not exist yet (or cannot be read right now) is left where it is until it can.
- Above the link, its addresses and then its routes, each only where the spec lists them
  (absent: left alone) and only on an interface macvland owns or is making. Addresses are the
  exact set of static ones: the kernel's own (link-local, SLAAC, temporary) are never removed.
  Routes are macvland's own, told apart by its protocol number; others are never touched. A
  new, recreated or moved interface has none yet (a move loses them), so all are added.
  Removals come before additions in each layer.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Sequence
from enum import StrEnum

from macvland.frozen import frozen, replace
from macvland.model import (
    Addresses,
    DesiredState,
    IPInterface,
    Key,
    Kind,
    Link,
    MacvlanSpec,
    Mode,
    Netns,
    ObservedState,
    Route,
    State,
    TapAccess,
    TapNode,
    netns_label,
)
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
from macvland.settings import SETTINGS, Setting, Update, show


class Condition(StrEnum):
    IN_SYNC = "in sync"
    DRIFTED = "drifted"
    PENDING = "pending"
    CONFLICT = "conflict"
    ERROR = "error"


@frozen(eq=False)
class Verdict:
    """Where one spec interface stands, and why."""

    spec: MacvlanSpec
    condition: Condition
    reason: str = ""
    """Why it is pending, in conflict or in error."""
    operations: tuple[Operation, ...] = ()
    """What a drifted interface needs. Its description is spelled only when read: a plan of
    1,000 creates spent half its time describing them, on the daemon's way to the kernel."""

    @property
    def detail(self) -> str:
        return self.reason or "; ".join(op.describe() for op in self.operations)

    def _compared(self) -> tuple[MacvlanSpec, Condition, str]:
        return self.spec, self.condition, self.detail

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Verdict) and self._compared() == other._compared()

    def __hash__(self) -> int:
        return hash(self._compared())


@frozen
class Plan:
    operations: tuple[Operation, ...]
    verdicts: tuple[Verdict, ...]

    def __bool__(self) -> bool:
        return bool(self.operations)


def summary(verdicts: tuple[Verdict, ...]) -> str:
    """One line for systemd's STATUS=: counts, then the first problem by name.

    For example `4 in sync, 1 pending: mv-db waits for netns db`. An interface still drifted
    after a pass is counted as failing.
    """
    groups = {"in sync": Condition.IN_SYNC, "pending": Condition.PENDING,
              "conflict": Condition.CONFLICT}
    counts = {label: sum(v.condition is c for v in verdicts) for label, c in groups.items()}
    problems = sorted((v for v in verdicts if v.condition is not Condition.IN_SYNC),
                      key=lambda v: (v.spec.name, v.spec.netns or ""))
    counts["failing"] = sum(v.condition in (Condition.DRIFTED, Condition.ERROR)
                            for v in verdicts)
    text = ", ".join(f"{n} {label}" for label, n in counts.items() if n) or "no interfaces"
    if not problems:
        return text
    first = problems[0]
    joiner = " " if first.condition is Condition.PENDING else ": "
    return f"{text}: {first.spec.name}{joiner}{first.detail}"


Decision = tuple[MacvlanSpec, Link, int, Verdict, tuple[Operation, ...]]
"""What a plan decided for one spec entry whose name was taken in its namespace: (spec, link,
parent ifindex, verdict, operations)."""


class PlanMemo:
    """What a plan decided, kept by a caller (the daemon) for the next plan.

    Each decision depends on its spec entry, its link and its parent's ifindex alone, and the
    daemon reuses the same spec and Link objects while nothing changes, so an unchanged
    interface costs a lookup instead of a comparison of every setting. And a whole plan
    depends on the desired and observed states alone: given the same spec object and a
    kernel whose every Link is the one it was (and equal addresses, routes and devices), it
    is the last plan again, for the cost of those comparisons (at 10,000 interfaces, about
    1 ms against 45). A plan's result never depends on what the memo holds.
    """

    __slots__ = ("decided", "last")

    def __init__(self) -> None:
        self.decided: dict[int, Decision] = {}
        """By id of the spec entry."""
        self.last: tuple[DesiredState, ObservedState, Plan] | None = None


def plan(desired: DesiredState, observed: ObservedState, memo: PlanMemo | None = None) -> Plan:
    """The plan; `memo` (if given) is read, then left holding this plan's decisions."""
    if memo is not None and memo.last is not None:
        last_desired, last_observed, last_plan = memo.last
        if last_desired is desired and _same_kernel(last_observed, observed):
            return last_plan
    planner = _Planner(desired, observed, memo.decided if memo is not None else {})
    verdicts = tuple(planner.visit(spec) for spec in sorted(desired.interfaces, key=_sort_key))
    planner.delete_orphans()
    ops = sorted(planner.ops, key=_order)  # stable: keeps per-link order
    result = Plan(tuple(ops), verdicts)
    if memo is not None:
        memo.decided = planner.decided
        memo.last = (desired, observed, result)
    return result


def _order(op: Operation) -> tuple[int, bool]:
    """By phase; among the creates, those of a chosen ifindex (macvtaps) first. The kernel
    numbers the others itself, with the next free number, which may be one chosen here: sent
    first, the chosen number is taken, and the kernel's own choice passes over it."""
    return op.phase, not (isinstance(op, Create) and op.ifindex is not None)


def _same_kernel(a: ObservedState, b: ObservedState) -> bool:
    """Whether two observations are the same input to a plan: the same Link objects (the
    cheap test: observe reuses a Link while its link does not change), equal all else."""
    if (a.links.keys() != b.links.keys() or a.missing != b.missing
            or a.unreadable != b.unreadable or a.addresses != b.addresses
            or a.routes != b.routes or a.taps != b.taps):
        return False
    for netns, links in a.links.items():
        others = b.links[netns]
        if len(links) != len(others):
            return False
        for name, link in links.items():
            if others.get(name) is not link:
                return False
    return True


def _sort_key(spec: MacvlanSpec) -> tuple[str, str]:
    return (spec.netns or "", spec.name)


class _Planner:
    def __init__(self, desired: DesiredState, observed: ObservedState,
                 memo: dict[int, Decision]) -> None:
        self.observed = observed
        self.memo = memo
        self.decided: dict[int, Decision] = {}
        self.ops: list[Operation] = []
        # Every key the spec names, absent ones included: none of those may be moved away.
        self.named = {s.key for s in desired.interfaces}
        # Links accounted for by a spec entry: everything owned and not claimed is an orphan.
        self.claimed: set[Key] = set()
        self.home_names = observed.home_names()
        self.tap_numbers: set[int] = set()
        """The /dev/tapN numbers this plan gives the macvtaps it creates."""
        self.owned: dict[str, list[Link]] = {}
        for link in observed.owned():
            self.owned.setdefault(link.name, []).append(link)

    def visit(self, spec: MacvlanSpec) -> Verdict:
        before = len(self.ops)
        verdict = self._visit(spec)
        if verdict is None or verdict.condition in (Condition.IN_SYNC, Condition.DRIFTED):
            layers = [*self._layers(spec, self.ops[before:]),
                      *self._tap(spec, self.ops[before:])]
            if layers:
                self.ops += layers
                verdict = None
            if not self.ops[before:] and (waiting := self._tap_missing(spec)):
                return Verdict(spec, Condition.PENDING, waiting)
        return verdict if verdict is not None else _verdict(spec, self.ops[before:])

    def _layers(self, spec: MacvlanSpec, link_ops: Sequence[Operation]) -> list[Operation]:
        """The address and route operations of an interface whose link is, or will be, in
        place; `link_ops` are those this plan makes for the link itself."""
        if spec.state is State.ABSENT or (spec.addresses is None and spec.routes is None):
            return []
        if any(isinstance(op, Create | Move) for op in link_ops):
            return _layer_ops(spec, None, Addresses(), frozenset())
        link = self.observed.get(spec.netns, spec.name)
        addresses = self.observed.addresses.get(spec.netns)
        routes = self.observed.routes.get(spec.netns)
        if link is None or addresses is None or routes is None:
            return []  # not read: nothing is known, so nothing is decided
        return _layer_ops(spec, link.ifindex, addresses.get(link.ifindex, Addresses()),
                          routes.get(link.ifindex, frozenset()))

    def _tap(self, spec: MacvlanSpec, link_ops: Sequence[Operation]) -> list[Operation]:
        """What gives a macvtap's /dev/tapN the owner, group and mode of `spec`."""
        if (spec.kind is not Kind.MACVTAP or spec.tap is None or spec.state is State.ABSENT
                or self.observed.taps is None):
            return []
        create = next((op for op in link_ops if isinstance(op, Create)), None)
        if create is not None:
            if create.ifindex is None:
                return []
            return [ChangeTap(spec.netns, spec.name, create.ifindex, spec.tap,
                              _tap_changes(spec.tap, None))]
        if any(isinstance(op, Move) for op in link_ops):
            return []  # it may come out renumbered: the next pass sees its device
        link = self.observed.get(spec.netns, spec.name)
        if link is None or link.kind != Kind.MACVTAP:
            return []
        node = self.observed.taps.get(link.ifindex)
        if node is None or node.link_name != link.name:
            return []  # not there yet; or another's, which _visit recreates
        changes = _tap_changes(spec.tap, node)
        return [ChangeTap(spec.netns, spec.name, link.ifindex, spec.tap, changes)] if changes \
            else []

    def _tap_missing(self, spec: MacvlanSpec) -> str | None:
        """Why a macvtap whose /dev/tapN macvland manages is not in sync although nothing is
        left to do: it has no node, so no VM can open it, and "in sync" would hide that.
        Nothing is done about it: recreating the macvtap would make a node, but would also cut
        off a VM that opened the old one before it was removed."""
        if (spec.kind is not Kind.MACVTAP or spec.tap is None or spec.state is State.ABSENT
                or self.observed.taps is None):
            return None
        link = self.observed.get(spec.netns, spec.name)
        if link is None or link.kind != Kind.MACVTAP or link.ifindex in self.observed.taps:
            return None
        # The kernel makes the node with the link, in its devtmpfs; it gives none to a second
        # macvtap of the same number in another namespace.
        return (f"waits for /dev/tap{link.ifindex}: there is none (removed; or made while "
                "another namespace's macvtap of that number had it; or this /dev is not the "
                "kernel's devtmpfs)")

    def _create(self, spec: MacvlanSpec, recreate: str | None = None) -> Create:
        ifindex = None
        if spec.kind is Kind.MACVTAP and self.observed.taps is not None:
            ifindex = self._free_tap_number(spec.netns)
        return Create(spec, self._parent_ifindex(spec), recreate, ifindex)

    def _free_tap_number(self, netns: Netns) -> int:
        """An ifindex free in `netns` whose /dev/tapN nothing has: every namespace numbers
        its own links, but the device nodes of all share one /dev."""
        assert self.observed.taps is not None
        used = {link.ifindex for link in self.observed.links.get(netns, {}).values()}
        used |= self.observed.taps.keys() | self.tap_numbers
        number = next(n for n in itertools.count(2) if n not in used)
        self.tap_numbers.add(number)
        return number

    def _tap_taken(self, spec: MacvlanSpec, link: Link) -> str | None:
        """Whose /dev/tapN this macvtap's number already names, if another's."""
        if spec.kind is not Kind.MACVTAP or link.kind != Kind.MACVTAP or not self.observed.taps:
            return None
        node = self.observed.taps.get(link.ifindex)
        if node is None or node.link_name == link.name:
            return None
        return node.link_name or "another driver's device"

    def _visit(self, spec: MacvlanSpec) -> Verdict | None:
        self.claimed.add(spec.key)
        if spec.netns in self.observed.missing:
            if spec.state is not State.ABSENT:
                self._hold_move_source(spec)
                return Verdict(spec, Condition.PENDING,
                               f"waits for netns {spec.netns}")
            return None
        if spec.netns not in self.observed.links:
            self._hold_move_source(spec)
            reason = self.observed.unreadable.get(spec.netns, "it was not observed")
            return Verdict(spec, Condition.ERROR,
                           f"netns {netns_label(spec.netns)} cannot be read: {reason}")
        link = self.observed.get(spec.netns, spec.name)
        if spec.state is State.ABSENT:
            return self._absent(spec, link)
        if spec.parent not in self.home_names:
            return Verdict(spec, Condition.PENDING, f"waits for parent {spec.parent}")
        if link is None:
            self._create_or_move(spec)
            return None
        parent_ifindex = self._parent_ifindex(spec)
        taken = self._tap_taken(spec, link)
        if taken is not None and (link.owned or link.parent == spec.parent):
            # Its device node is another's, so no VM can open it; a new number gives it one.
            why = (f"its /dev/tap{link.ifindex} is the device of {taken}, a macvtap of the "
                   "same ifindex in another namespace")
            self.ops += [Delete(link.netns, link.name, link.ifindex, link.parent, why, True),
                         self._create(spec, why)]
            return None
        known = self.memo.get(id(spec))
        if (known is None or known[0] is not spec or known[1] is not link
                or known[2] != parent_ifindex):
            known = (spec, link, parent_ifindex, *_existing(spec, link, parent_ifindex))
        self.decided[id(spec)] = known
        # A recreated macvtap's number is chosen afresh: it depends on more than the memo's key.
        self.ops += [self._create(op.spec, op.recreate)
                     if isinstance(op, Create) and op.spec.kind is Kind.MACVTAP else op
                     for op in known[4]]
        return known[3]

    def _absent(self, spec: MacvlanSpec, link: Link | None) -> Verdict | None:
        if link is None:
            return None
        if not link.is_macvlan:
            return Verdict(spec, Condition.CONFLICT,
                           f"{link.name} is a {link.kind or 'device'}; state: absent only "
                           "deletes macvlans")
        self.ops.append(Delete(link.netns, link.name, link.ifindex, link.parent,
                               "the spec says state: absent"))
        return None

    def _move_source(self, spec: MacvlanSpec) -> Link | None:
        """An owned link of this name, elsewhere, that no spec entry keeps where it is."""
        for link in self.owned.get(spec.name, ()):
            if (link.netns != spec.netns
                    and link.key not in self.named and link.key not in self.claimed
                    and not _recreate_reason(link, spec)):  # the same parent, among others
                return link
        return None

    def _hold_move_source(self, spec: MacvlanSpec) -> None:
        # Keep the link where it is until its new namespace exists, then move it.
        source = self._move_source(spec)
        if source is not None:
            self.claimed.add(source.key)

    def _create_or_move(self, spec: MacvlanSpec) -> None:
        source = self._move_source(spec)
        if source is None:
            self.ops.append(self._create(spec))
            return
        self.claimed.add(source.key)
        self.ops.append(Move(source.netns, source.name, source.ifindex, spec.netns))
        # The kernel takes a link down when it changes namespace, and may renumber it.
        moved = replace(source, netns=spec.netns, up=False)
        self.ops += _converge(moved, spec, None)

    def _parent_ifindex(self, spec: MacvlanSpec) -> int:
        parent = self.observed.get(None, spec.parent)
        assert parent is not None, "visit() checks the parent exists"
        return parent.ifindex

    def delete_orphans(self) -> None:
        orphans = [link for links in self.owned.values() for link in links
                   if link.key not in self.claimed]
        for link in sorted(orphans, key=lambda lk: (lk.netns or "", lk.name)):
            self.ops.append(Delete(link.netns, link.name, link.ifindex, link.parent,
                                   "no longer in the spec"))


def _verdict(spec: MacvlanSpec, ops: Sequence[Operation]) -> Verdict:
    if not ops:
        return Verdict(spec, Condition.IN_SYNC)
    return Verdict(spec, Condition.DRIFTED, operations=tuple(ops))


def _existing(spec: MacvlanSpec, link: Link, parent_ifindex: int,
              ) -> tuple[Verdict, tuple[Operation, ...]]:
    """What to do about a spec entry whose name is taken in its namespace by `link`."""
    if not link.is_macvlan:
        kind = link.kind or "device"
        return Verdict(spec, Condition.CONFLICT,
                       f"{link.name} already exists as a {kind}, not a {spec.kind}"), ()
    if not link.owned and link.parent != spec.parent:
        return Verdict(spec, Condition.CONFLICT,
                       f"{link.name} is a macvlan on {link.lower} that macvland does not "
                       f"own (the spec wants parent {spec.parent})"), ()
    ops: tuple[Operation, ...]
    why = _recreate_reason(link, spec)
    if why:
        ops = (Delete(link.netns, link.name, link.ifindex, link.parent, why, True),
               Create(spec, parent_ifindex, why))
    else:
        adopt = () if link.owned else (Adopt(link.netns, link.name, link.ifindex, spec.parent,
                                                     _kind(link)),)
        ops = (*adopt, *_converge(link, spec, link.ifindex))
    return _verdict(spec, ops), ops


def _address_order(address: IPInterface) -> tuple[int, int, int]:
    return (address.version, int(address.ip), address.network.prefixlen)


def _route_order(route: Route) -> tuple[int, int, int, int, int]:
    return (route.to.version, route.table, int(route.to.network_address), route.to.prefixlen,
            route.metric)


def _layer_ops(spec: MacvlanSpec, ifindex: int | None, have: Addresses,
               routes: frozenset[Route]) -> list[Operation]:
    """What makes an interface's addresses and macvland's routes on it those of `spec`."""
    where = (spec.netns, spec.name, ifindex)
    ops: list[Operation] = []
    if spec.addresses is not None:
        ops += [RemoveAddress(*where, a)
                for a in sorted(have.static - spec.addresses, key=_address_order)]
        ops += [AddAddress(*where, a) for a in sorted(
            (a for a in spec.addresses if a not in have), key=_address_order)]
    if spec.routes is not None:
        had = {r.key: r for r in routes}
        wanted = {r.key: r for r in spec.routes}
        ops += [RemoveRoute(*where, had[k])
                for k in sorted(had.keys() - wanted.keys(), key=lambda k: _route_order(had[k]))]
        for route in sorted(spec.routes, key=_route_order):
            old = had.get(route.key)
            if old is None:
                ops.append(AddRoute(*where, route))
            elif old != route:
                ops.append(ChangeRoute(*where, old, route))
    return ops


def _recreate_reason(link: Link, spec: MacvlanSpec) -> str | None:
    """Why `link` cannot become `spec` in place, or None when it can."""
    for setting, wanted, read in _RECREATE_CHECKS:
        new, old = wanted(spec), read(link)
        if new is None or old == new:
            continue
        why = setting.recreate_when(old, new) if setting.recreate_when else None
        if setting.update is Update.RECREATE or why:
            change = f"{setting.key} {show(setting.read_shown(link))} -> {show(new)}"
            return f"{change}; {why}" if why else change
    return None


def _converge(link: Link, spec: MacvlanSpec, ifindex: int | None) -> list[Operation]:
    """In-place operations that make `link` match `spec` (none when it already does)."""
    changes = []
    for setting, wanted, read in _IN_PLACE:
        new = wanted(spec)
        if new is None:
            continue  # left as the kernel has it
        old = read(link)
        if old != new:
            changes.append(FieldChange(setting.key, old, new))
    ops: list[Operation] = [Change(link.netns, link.name, ifindex, tuple(changes),
                                   _kind(link))] if changes else []
    for steps in _OWN_STEPS.values():
        ops += steps(link, spec, ifindex)
    return ops


def _tap_changes(want: TapAccess, node: TapNode | None) -> tuple[FieldChange, ...]:
    """How /dev/tapN differs from `want` (from "unset" for one not made yet)."""
    changes = []
    for key, value, number, name in (
            ("owner", want.owner, node and node.uid, node and node.owner),
            ("group", want.group, node and node.gid, node and node.group)):
        if value is None:
            continue
        have = number if isinstance(value, int) else name
        if node is None or have != value:
            shown = None if node is None else (name if name is not None else number)
            changes.append(FieldChange(f"tap.{key}", shown, value))
    if want.mode is not None and (node is None or node.mode != want.mode):
        changes.append(FieldChange("tap.mode", None if node is None else f"{node.mode:04o}",
                                   f"{want.mode:04o}"))
    return tuple(changes)


def _kind(link: Link) -> str:
    return link.kind or "macvlan"


def _source_mac_steps(link: Link, spec: MacvlanSpec, ifindex: int | None) -> Iterable[Operation]:
    if spec.mode is Mode.SOURCE:
        # Leaving source mode flushes the list in the kernel, so it is only managed here.
        have = link.source_macs if link.mode is Mode.SOURCE else frozenset()
        for mac in sorted(spec.source_macs - have):
            yield AddSourceMac(link.netns, link.name, ifindex, mac, _kind(link))
        for mac in sorted(have - spec.source_macs):
            yield RemoveSourceMac(link.netns, link.name, ifindex, mac, _kind(link))


_Compared = tuple[Setting, Callable[[MacvlanSpec], object], Callable[[Link], object]]
_IN_PLACE: tuple[_Compared, ...] = tuple(
    (s, *s.accessors()) for s in SETTINGS if s.update is Update.IN_PLACE)
_RECREATE_CHECKS: tuple[_Compared, ...] = tuple(
    (s, *s.accessors()) for s in SETTINGS
    if s.update is Update.RECREATE or s.recreate_when is not None)
_OWN_STEPS: dict[str, Callable[[Link, MacvlanSpec, int | None], Iterable[Operation]]] = {
    "source_macs": _source_mac_steps,
}
"""The planner of each `Update.OWN` setting: the operations that make the link match."""
assert set(_OWN_STEPS) == {s.key for s in SETTINGS if s.update is Update.OWN}
