"""Table-driven tests of the pure planner: DesiredState and ObservedState in, ordered ops out.

No kernel and no I/O: every observed link is built by hand as the kernel would report it.
"""

from __future__ import annotations

import ipaddress
import itertools
import json
from typing import Any

import pytest

from macvland.frozen import replace
from macvland.model import (
    DEFAULT_BC_CUTOFF,
    DEFAULT_BC_QUEUE_LEN,
    OWNER_ALIAS,
    Addresses,
    DesiredState,
    Flag,
    Kind,
    Link,
    MacvlanSpec,
    Mode,
    Netns,
    ObservedState,
    State,
    TapAccess,
    TapNode,
)
from macvland.ops import (
    AddSourceMac,
    Adopt,
    Change,
    ChangeTap,
    Create,
    Delete,
    FieldChange,
    Move,
    Operation,
    RemoveSourceMac,
)
from macvland.plan import Condition, Plan, PlanMemo, Verdict, plan, summary

# --- builders -------------------------------------------------------------------------------

ETH1 = Link(None, "eth1", 2, "veth", True, 1500, "02:00:00:00:00:e1")
ETH2 = Link(None, "eth2", 3, "veth", True, 1500, "02:00:00:00:00:e2")
NAMESPACES: tuple[str, ...] = ("red", "blue")
"""Named namespaces that exist (and are empty unless a test puts links there)."""

MAC_A, MAC_B, MAC_C = "02:00:00:00:aa:01", "02:00:00:00:aa:02", "02:00:00:00:aa:03"
NO_FLAGS: frozenset[Flag] = frozenset()
NO_MACS: frozenset[str] = frozenset()
UP, DOWN, ABSENT = State.UP, State.DOWN, State.ABSENT
IN_PLACE_MODES = [m for m in Mode if m is not Mode.PASSTHRU]

ABSENT_REASON = "the spec says state: absent"
ORPHAN_REASON = "no longer in the spec"


def spec(name: str = "mv0", parent: str = "eth1", **fields: Any) -> MacvlanSpec:
    return MacvlanSpec(name=name, parent=parent, **fields)


def link_from(spec: MacvlanSpec, ifindex: int, owned: bool = True, **overrides: Any) -> Link:
    """The link the kernel would show for `spec` when it matches it, then `overrides`."""
    link = Link(
        netns=spec.netns,
        name=spec.name,
        ifindex=ifindex,
        kind=str(spec.kind),
        up=spec.state is State.UP,
        mtu=spec.mtu if spec.mtu is not None else 1500,
        mac=spec.mac if spec.mac is not None else f"02:00:00:00:10:{ifindex:02x}",
        alias=OWNER_ALIAS if owned else None,
        parent=spec.parent,
        lower=spec.parent,
        mode=spec.mode,
        flags=spec.flags,
        source_macs=spec.source_macs if spec.mode is Mode.SOURCE else frozenset(),
        bcqueuelen=spec.bcqueuelen if spec.bcqueuelen is not None else DEFAULT_BC_QUEUE_LEN,
        bc_cutoff=spec.bc_cutoff if spec.bc_cutoff is not None else DEFAULT_BC_CUTOFF,
        numtxqueues=spec.numtxqueues if spec.numtxqueues is not None else 1,
        numrxqueues=spec.numrxqueues if spec.numrxqueues is not None else 1,
    )
    return replace(link, **overrides)


def veth(name: str, ifindex: int, netns: Netns = None) -> Link:
    return Link(netns, name, ifindex, "veth", True, 1500, f"02:00:00:00:20:{ifindex:02x}")


def observed(*links: Link, missing: tuple[str, ...] = (),
             unreadable: dict[Netns, str] | None = None) -> ObservedState:
    """Home (with parents eth1 and eth2) and every namespace in NAMESPACES, plus `links`."""
    by_netns: dict[Netns, dict[str, Link]] = {None: {"eth1": ETH1, "eth2": ETH2}}
    for netns in NAMESPACES:
        by_netns[netns] = {}
    for link in links:
        by_netns.setdefault(link.netns, {})[link.name] = link
    return ObservedState(by_netns, frozenset(missing), unreadable or {})


def desired(*specs: MacvlanSpec) -> DesiredState:
    return DesiredState(tuple(specs))


def verdict_of(p: Plan, name: str = "mv0", netns: Netns = None) -> Verdict:
    (verdict,) = [v for v in p.verdicts if v.spec.key == (netns, name)]
    return verdict


# --- modes ----------------------------------------------------------------------------------

MODE_PAIRS = [pytest.param(old, new, id=f"{old}->{new}") for old in Mode for new in Mode]


@pytest.mark.parametrize(("old", "new"), MODE_PAIRS)
def test_mode_transition(old: Mode, new: Mode) -> None:
    want = spec(mode=new)
    p = plan(desired(want), observed(link_from(spec(mode=old), 10)))

    if old is new:
        assert p.operations == ()
        assert not p
        assert verdict_of(p).condition is Condition.IN_SYNC
    elif Mode.PASSTHRU not in (old, new):
        assert p.operations == (Change(None, "mv0", 10, (FieldChange("mode", old, new),)),)
        assert verdict_of(p).condition is Condition.DRIFTED
    else:
        why = f"mode {old} -> {new}; the kernel cannot enter or leave passthru"
        assert p.operations == (Delete(None, "mv0", 10, "eth1", why, recreate=True),
                                Create(want, ETH1.ifindex, recreate=why))


def test_entering_source_mode_adds_source_macs_after_the_mode_change() -> None:
    want = spec(mode=Mode.SOURCE, source_macs=frozenset({MAC_B, MAC_A}))
    p = plan(desired(want), observed(link_from(spec(mode=Mode.BRIDGE), 10)))
    assert p.operations == (
        Change(None, "mv0", 10, (FieldChange("mode", Mode.BRIDGE, Mode.SOURCE),)),
        AddSourceMac(None, "mv0", 10, MAC_A),
        AddSourceMac(None, "mv0", 10, MAC_B),
    )


@pytest.mark.parametrize("new", [m for m in IN_PLACE_MODES if m is not Mode.SOURCE],
                         ids=str)
def test_leaving_source_mode_leaves_the_flush_to_the_kernel(new: Mode) -> None:
    have = link_from(spec(mode=Mode.SOURCE, source_macs=frozenset({MAC_A, MAC_B})), 10)
    p = plan(desired(spec(mode=new)), observed(have))
    assert p.operations == (Change(None, "mv0", 10, (FieldChange("mode", Mode.SOURCE, new),)),)


# --- flags ----------------------------------------------------------------------------------

FLAG_CASES = [
    pytest.param(Mode.PASSTHRU, NO_FLAGS, frozenset({Flag.NOPROMISC}), id="add-nopromisc"),
    pytest.param(Mode.PASSTHRU, frozenset({Flag.NOPROMISC}), NO_FLAGS, id="remove-nopromisc"),
    pytest.param(Mode.SOURCE, NO_FLAGS, frozenset({Flag.NODST}), id="add-nodst"),
    pytest.param(Mode.SOURCE, frozenset({Flag.NODST}), NO_FLAGS, id="remove-nodst"),
]


@pytest.mark.parametrize(("mode", "old", "new"), FLAG_CASES)
def test_flags_change_in_place(mode: Mode, old: frozenset[Flag], new: frozenset[Flag]) -> None:
    p = plan(desired(spec(mode=mode, flags=new)),
             observed(link_from(spec(mode=mode, flags=old), 10)))
    assert p.operations == (Change(None, "mv0", 10, (FieldChange("flags", old, new),)),)


# --- source MACs ----------------------------------------------------------------------------

SOURCE_MAC_CASES = [
    pytest.param({MAC_A}, {MAC_A, MAC_C, MAC_B}, [("+", MAC_B), ("+", MAC_C)], id="add-only"),
    pytest.param(set(), {MAC_A}, [("+", MAC_A)], id="add-to-empty"),
    pytest.param({MAC_A, MAC_B, MAC_C}, {MAC_B}, [("-", MAC_A), ("-", MAC_C)], id="remove-only"),
    pytest.param({MAC_A}, set(), [("-", MAC_A)], id="remove-to-empty"),
    pytest.param({MAC_A, MAC_B}, {MAC_B, MAC_C}, [("+", MAC_C), ("-", MAC_A)], id="add-and-remove"),
    pytest.param({MAC_A, MAC_B}, {MAC_A, MAC_B}, [], id="equal"),
]


@pytest.mark.parametrize(("have", "want", "expected"), SOURCE_MAC_CASES)
def test_source_macs_change_by_additions_then_removals(
        have: set[str], want: set[str], expected: list[tuple[str, str]]) -> None:
    p = plan(desired(spec(mode=Mode.SOURCE, source_macs=frozenset(want))),
             observed(link_from(spec(mode=Mode.SOURCE, source_macs=frozenset(have)), 10)))
    op_for = {"+": AddSourceMac, "-": RemoveSourceMac}
    assert p.operations == tuple(op_for[sign](None, "mv0", 10, mac) for sign, mac in expected)
    assert not any(isinstance(op, Change) for op in p.operations), "never a replace"


# --- link and macvlan settings ----------------------------------------------------------------

FIELD_CASES = [
    pytest.param({"mac": MAC_B}, {"mac": MAC_A}, [FieldChange("mac", MAC_A, MAC_B)], id="mac"),
    pytest.param({"mtu": 9000}, {"mtu": 1500}, [FieldChange("mtu", 1500, 9000)], id="mtu"),
    pytest.param({"state": DOWN}, {"up": True}, [FieldChange("state", UP, DOWN)], id="up->down"),
    pytest.param({"state": UP}, {"up": False}, [FieldChange("state", DOWN, UP)], id="down->up"),
    pytest.param({"bcqueuelen": 4000}, {"bcqueuelen": 1000},
                 [FieldChange("bcqueuelen", 1000, 4000)], id="bcqueuelen"),
    pytest.param({"bc_cutoff": 64}, {"bc_cutoff": 1},
                 [FieldChange("bc_cutoff", 1, 64)], id="bc_cutoff"),
    pytest.param({"mac": MAC_B, "mtu": 1400, "state": DOWN},
                 {"mac": MAC_A, "mtu": 1500, "up": True},
                 [FieldChange("mac", MAC_A, MAC_B), FieldChange("mtu", 1500, 1400),
                  FieldChange("state", UP, DOWN)], id="mac+mtu+state"),
    pytest.param({"mode": Mode.VEPA, "mtu": 9000, "bc_cutoff": -1},
                 {"mode": Mode.BRIDGE, "mtu": 1500, "bc_cutoff": 1},
                 [FieldChange("mode", Mode.BRIDGE, Mode.VEPA), FieldChange("mtu", 1500, 9000),
                  FieldChange("bc_cutoff", 1, -1)], id="mode+mtu+bc_cutoff"),
]


@pytest.mark.parametrize(("wanted", "kernel", "changes"), FIELD_CASES)
def test_settings_change_in_one_request(
        wanted: dict[str, Any], kernel: dict[str, Any], changes: list[FieldChange]) -> None:
    want = spec(**wanted)
    p = plan(desired(want), observed(link_from(want, 10, **kernel)))
    assert p.operations == (Change(None, "mv0", 10, tuple(changes)),)


UNSET_CASES = [
    pytest.param({"mac": MAC_C}, id="mac"),
    pytest.param({"mtu": 9000}, id="mtu"),
    pytest.param({"mtu": 68}, id="mtu-small"),
    pytest.param({"bcqueuelen": 7}, id="bcqueuelen"),
    pytest.param({"bc_cutoff": 0}, id="bc_cutoff"),
    pytest.param({"bcqueuelen": None, "bc_cutoff": None}, id="kernel-reports-none"),
]


@pytest.mark.parametrize("kernel", UNSET_CASES)
def test_unset_optional_settings_are_left_as_the_kernel_has_them(kernel: dict[str, Any]) -> None:
    want = spec()
    assert (want.mac, want.mtu, want.bcqueuelen, want.bc_cutoff) == (None, None, None, None)
    p = plan(desired(want), observed(link_from(want, 10, **kernel)))
    assert p.operations == ()
    assert verdict_of(p).condition is Condition.IN_SYNC


IN_SYNC_SPECS = [
    pytest.param(spec(), id="bridge-defaults"),
    pytest.param(spec(mode=Mode.VEPA, mac=MAC_A, mtu=1400, bcqueuelen=500, bc_cutoff=0),
                 id="vepa-all-settings"),
    pytest.param(spec(mode=Mode.PRIVATE, state=DOWN), id="private-down"),
    pytest.param(spec(mode=Mode.PASSTHRU, flags=frozenset({Flag.NOPROMISC})),
                 id="passthru-nopromisc"),
    pytest.param(spec(mode=Mode.SOURCE, flags=frozenset({Flag.NODST}),
                      source_macs=frozenset({MAC_A, MAC_B})), id="source-macs-nodst"),
    pytest.param(spec(netns="red", parent="eth2"), id="in-netns"),
]


@pytest.mark.parametrize("want", IN_SYNC_SPECS)
def test_matching_link_needs_nothing(want: MacvlanSpec) -> None:
    p = plan(desired(want), observed(link_from(want, 10)))
    assert p.operations == ()
    assert not p
    assert p.verdicts == (Verdict(want, Condition.IN_SYNC),)


def test_drifted_verdict_says_what_will_change() -> None:
    want = spec(mtu=9000)
    p = plan(desired(want), observed(link_from(want, 10, mtu=1500)))
    assert p.verdicts == (Verdict(want, Condition.DRIFTED, "mv0: mtu 1500 -> 9000 (in place)"),)


# --- namespace moves ------------------------------------------------------------------------

MOVE_CASES = [
    pytest.param("red", "blue", id="red->blue"),
    pytest.param(None, "red", id="home->red"),
    pytest.param("red", None, id="red->home"),
]


@pytest.mark.parametrize(("source", "target"), MOVE_CASES)
def test_owned_link_moves_then_comes_back_up(source: Netns, target: Netns) -> None:
    want = spec(netns=target)
    p = plan(desired(want), observed(link_from(spec(netns=source), 10)))
    assert p.operations == (
        Move(source, "mv0", 10, target),
        Change(target, "mv0", None, (FieldChange("state", DOWN, UP),)),
    )
    assert verdict_of(p, netns=target).condition is Condition.DRIFTED


def test_move_of_a_link_wanted_down_needs_no_change() -> None:
    want = spec(netns="blue", state=DOWN)
    p = plan(desired(want), observed(link_from(spec(netns="red"), 10)))
    assert p.operations == (Move("red", "mv0", 10, "blue"),)


def test_move_carries_other_changes_by_name() -> None:
    want = spec(netns="blue", mode=Mode.SOURCE, mtu=9000, source_macs=frozenset({MAC_B}))
    have = link_from(spec(netns="red", mode=Mode.SOURCE, source_macs=frozenset({MAC_A})), 10)
    p = plan(desired(want), observed(have))
    assert p.operations == (
        Move("red", "mv0", 10, "blue"),
        Change("blue", "mv0", None, (FieldChange("mtu", 1500, 9000),
                                     FieldChange("state", DOWN, UP))),
        AddSourceMac("blue", "mv0", None, MAC_B),
        RemoveSourceMac("blue", "mv0", None, MAC_A),
    )


def test_move_to_a_missing_namespace_is_held() -> None:
    want = spec(netns="green")
    p = plan(desired(want), observed(link_from(spec(netns="red"), 10), missing=("green",)))
    assert p.operations == ()
    verdict = verdict_of(p, netns="green")
    assert verdict.condition is Condition.PENDING
    assert "green" in verdict.detail


def test_move_with_a_new_parent_is_delete_and_create() -> None:
    want = spec(netns="blue", parent="eth2")
    p = plan(desired(want), observed(link_from(spec(netns="red"), 10)))
    assert p.operations == (Delete("red", "mv0", 10, "eth1", ORPHAN_REASON),
                            Create(want, ETH2.ifindex))
    assert not any(isinstance(op, Move) for op in p.operations)


def test_link_still_wanted_where_it_is_is_not_moved() -> None:
    stay, new = spec(netns="red"), spec(netns="blue")
    p = plan(desired(stay, new), observed(link_from(stay, 10)))
    assert p.operations == (Create(new, ETH1.ifindex),)


# --- ownership ------------------------------------------------------------------------------


def test_unowned_macvlan_on_the_wanted_parent_is_adopted_first() -> None:
    want = spec(mtu=9000)
    p = plan(desired(want), observed(link_from(want, 10, owned=False, mtu=1500)))
    assert p.operations == (Adopt(None, "mv0", 10, "eth1"),
                            Change(None, "mv0", 10, (FieldChange("mtu", 1500, 9000),)))


def test_unowned_matching_macvlan_is_only_adopted() -> None:
    want = spec()
    p = plan(desired(want), observed(link_from(want, 10, owned=False)))
    assert p.operations == (Adopt(None, "mv0", 10, "eth1"),)
    assert verdict_of(p).condition is Condition.DRIFTED


CONFLICT_CASES = [
    pytest.param(link_from(spec(parent="eth2"), 10, owned=False), "eth2", id="macvlan-on-eth2"),
    pytest.param(link_from(spec(), 10, owned=False, parent=None, lower="if7@nsid 3"),
                 "if7@nsid 3", id="macvlan-on-foreign-lower"),
    pytest.param(veth("mv0", 10), "veth", id="veth"),
    pytest.param(replace(veth("mv0", 10), alias=OWNER_ALIAS), "veth",
                 id="veth-with-owner-alias"),
]


@pytest.mark.parametrize(("other", "mentioned"), CONFLICT_CASES)
def test_foreign_link_with_the_wanted_name_is_a_conflict_and_untouched(
        other: Link, mentioned: str) -> None:
    bystander = spec("mv1")
    p = plan(desired(spec(), bystander), observed(other))
    assert p.operations == (Create(bystander, ETH1.ifindex),)
    verdict = verdict_of(p)
    assert verdict.condition is Condition.CONFLICT
    assert mentioned in verdict.detail


ORPHAN_CASES = [
    pytest.param(spec("old"), id="home"),
    pytest.param(spec("old", netns="red"), id="netns-still-named"),
    pytest.param(spec("old", netns="blue", parent="eth2"), id="netns-no-longer-named"),
    pytest.param(spec("mv0", netns="blue"), id="same-name-other-netns"),
]


@pytest.mark.parametrize("gone", ORPHAN_CASES)
def test_owned_link_that_left_the_spec_is_deleted(gone: MacvlanSpec) -> None:
    keep = spec(netns="red")
    p = plan(desired(keep), observed(link_from(keep, 10), link_from(gone, 11)))
    assert p.operations == (Delete(gone.netns, gone.name, 11, gone.parent, ORPHAN_REASON),)
    assert p.verdicts == (Verdict(keep, Condition.IN_SYNC),)


def test_empty_spec_deletes_every_owned_link_and_nothing_else() -> None:
    mine = [link_from(spec("a"), 10), link_from(spec("b", netns="red"), 11)]
    theirs = [link_from(spec("c"), 12, owned=False), veth("d", 13)]
    p = plan(desired(), observed(*mine, *theirs))
    assert p.operations == (Delete(None, "a", 10, "eth1", ORPHAN_REASON),
                            Delete("red", "b", 11, "eth1", ORPHAN_REASON))


def test_unowned_macvlan_not_in_the_spec_is_untouched() -> None:
    p = plan(desired(), observed(link_from(spec("theirs"), 10, owned=False)))
    assert p.operations == ()


def test_owned_link_on_another_parent_is_recreated() -> None:
    want = spec(parent="eth2")
    p = plan(desired(want), observed(link_from(spec(parent="eth1"), 10)))
    why = "parent eth1 -> eth2"
    assert p.operations == (Delete(None, "mv0", 10, "eth1", why, recreate=True),
                            Create(want, ETH2.ifindex, recreate=why))


# --- state: absent --------------------------------------------------------------------------


@pytest.mark.parametrize("owned", [True, False], ids=["owned", "unowned"])
def test_absent_deletes_an_existing_macvlan(owned: bool) -> None:
    want = spec(state=ABSENT)
    p = plan(desired(want), observed(link_from(spec(), 10, owned=owned)))
    assert p.operations == (Delete(None, "mv0", 10, "eth1", ABSENT_REASON),)


def test_absent_macvlan_on_another_parent_is_still_deleted() -> None:
    p = plan(desired(spec(state=ABSENT)),
             observed(link_from(spec(parent="eth2"), 10, owned=False)))
    assert p.operations == (Delete(None, "mv0", 10, "eth2", ABSENT_REASON),)


def test_absent_never_deletes_a_non_macvlan() -> None:
    p = plan(desired(spec(state=ABSENT)), observed(veth("mv0", 10)))
    assert p.operations == ()
    assert verdict_of(p).condition is Condition.CONFLICT


def test_absent_and_gone_is_in_sync() -> None:
    want = spec(state=ABSENT)
    p = plan(desired(want), observed())
    assert p.operations == ()
    assert p.verdicts == (Verdict(want, Condition.IN_SYNC),)


def test_absent_in_a_missing_namespace_needs_nothing() -> None:
    p = plan(desired(spec(netns="green", state=ABSENT)), observed(missing=("green",)))
    assert p.operations == ()


def test_absent_with_a_missing_parent_still_deletes() -> None:
    p = plan(desired(spec(parent="eth9", state=ABSENT)),
             observed(link_from(spec(), 10)))
    assert p.operations == (Delete(None, "mv0", 10, "eth1", ABSENT_REASON),)


# --- pending and unreadable -----------------------------------------------------------------


def test_missing_namespace_is_pending_and_the_rest_is_still_planned() -> None:
    waiting, ready = spec(netns="green"), spec("mv1")
    p = plan(desired(waiting, ready), observed(missing=("green",)))
    assert p.operations == (Create(ready, ETH1.ifindex),)
    verdict = verdict_of(p, netns="green")
    assert verdict.condition is Condition.PENDING
    assert "netns green" in verdict.detail
    assert verdict_of(p, "mv1").condition is Condition.DRIFTED


def test_missing_parent_is_pending_and_the_rest_is_still_planned() -> None:
    waiting, ready = spec(parent="eth9"), spec("mv1", netns="red")
    p = plan(desired(waiting, ready), observed())
    assert p.operations == (Create(ready, ETH1.ifindex),)
    verdict = verdict_of(p)
    assert verdict.condition is Condition.PENDING
    assert "eth9" in verdict.detail


def test_owned_link_whose_parent_is_pending_is_kept() -> None:
    want = spec(parent="eth9")
    p = plan(desired(want), observed(link_from(spec(), 10)))
    assert p.operations == ()
    assert verdict_of(p).condition is Condition.PENDING


def test_unreadable_namespace_is_an_error_not_a_plan() -> None:
    p = plan(desired(spec(netns="grey")),
             observed(unreadable={"grey": "permission denied"}))
    assert p.operations == ()
    verdict = verdict_of(p, netns="grey")
    assert verdict.condition is Condition.ERROR
    assert "grey" in verdict.detail
    assert "permission denied" in verdict.detail


def test_move_into_an_unreadable_namespace_keeps_the_link_where_it_is() -> None:
    # A read error may be passing: the working interface is not deleted because of it.
    p = plan(desired(spec(netns="grey")),
             observed(link_from(spec(netns="red"), 10), unreadable={"grey": "EPERM"}))
    assert p.operations == ()
    assert verdict_of(p, netns="grey").condition is Condition.ERROR


def test_same_name_in_two_namespaces_is_two_creates() -> None:
    home, red = spec(), spec(netns="red")
    p = plan(desired(red, home), observed())
    assert len(p.operations) == 2
    assert set(p.operations) == {Create(home, ETH1.ifindex), Create(red, ETH1.ifindex)}


# --- ordering -------------------------------------------------------------------------------

PHASE = {Delete: 0, Move: 1, Adopt: 2, Change: 2, AddSourceMac: 2, RemoveSourceMac: 2,
         Create: 3}


def mixed() -> tuple[DesiredState, ObservedState]:
    """A spec and kernel that need every kind of operation at once."""
    to_passthru = spec("a-pass", mode=Mode.PASSTHRU, parent="eth2")
    adopted = spec("b-adopt", mode=Mode.SOURCE, source_macs=frozenset({MAC_A, MAC_B}))
    macs = spec("c-macs", mode=Mode.SOURCE, source_macs=frozenset({MAC_B, MAC_C}))
    created = spec("d-new", netns="red")
    moved = spec("e-move", netns="blue")
    specs = (to_passthru, adopted, macs, created, moved)
    links = (
        link_from(spec("a-pass", parent="eth2"), 10),
        link_from(spec("b-adopt"), 11, owned=False),
        link_from(replace(macs, source_macs=frozenset({MAC_A, MAC_B})), 12),
        link_from(spec("e-move", netns="red"), 13),
        link_from(spec("z-orphan"), 14),
    )
    return desired(*specs), observed(*links)


def test_plan_is_ordered_deletes_moves_changes_creates() -> None:
    d, o = mixed()
    to_passthru, _, _, created, _ = d.interfaces
    why = "mode bridge -> passthru; the kernel cannot enter or leave passthru"
    assert plan(d, o).operations == (
        Delete(None, "a-pass", 10, "eth2", why, recreate=True),
        Delete(None, "z-orphan", 14, "eth1", ORPHAN_REASON),
        Move("red", "e-move", 13, "blue"),
        Adopt(None, "b-adopt", 11, "eth1"),
        Change(None, "b-adopt", 11, (FieldChange("mode", Mode.BRIDGE, Mode.SOURCE),)),
        AddSourceMac(None, "b-adopt", 11, MAC_A),
        AddSourceMac(None, "b-adopt", 11, MAC_B),
        AddSourceMac(None, "c-macs", 12, MAC_C),
        RemoveSourceMac(None, "c-macs", 12, MAC_A),
        Change("blue", "e-move", None, (FieldChange("state", DOWN, UP),)),
        Create(to_passthru, ETH2.ifindex, recreate=why),
        Create(created, ETH1.ifindex),
    )


def test_phases_never_go_backwards() -> None:
    phases = [PHASE[type(op)] for op in plan(*mixed()).operations]
    assert phases == sorted(phases)
    assert set(phases) == {0, 1, 2, 3}


def test_name_freed_by_a_recreate_is_deleted_before_it_is_created() -> None:
    first, want = spec("aaa"), spec(parent="eth2")
    p = plan(desired(want, first), observed(link_from(spec(), 10)))
    why = "parent eth1 -> eth2"
    assert p.operations == (Delete(None, "mv0", 10, "eth1", why, recreate=True),
                            Create(first, ETH1.ifindex),
                            Create(want, ETH2.ifindex, recreate=why))


def test_mac_freed_by_an_orphan_delete_is_freed_before_it_is_reused() -> None:
    want = spec("aaa", mac=MAC_A)
    p = plan(desired(want), observed(link_from(spec("zzz", mac=MAC_A), 10)))
    assert p.operations == (Delete(None, "zzz", 10, "eth1", ORPHAN_REASON),
                            Create(want, ETH1.ifindex))


def test_per_interface_order_is_kept() -> None:
    ops = plan(*mixed()).operations

    def kinds(name: str) -> list[str]:
        return [op.kind for op in ops if op.name == name]

    assert kinds("b-adopt") == ["adopt", "change", "add-source-mac", "add-source-mac"]
    assert kinds("c-macs") == ["add-source-mac", "remove-source-mac"]
    assert kinds("e-move") == ["move", "change"]
    assert kinds("a-pass") == ["delete", "create"]


# --- determinism ----------------------------------------------------------------------------


def test_plan_is_deterministic() -> None:
    d, o = mixed()
    assert plan(d, o) == plan(d, o)


def test_plan_does_not_depend_on_spec_order() -> None:
    d, o = mixed()
    expected = plan(d, o)
    for order in itertools.permutations(d.interfaces):
        assert plan(replace(d, interfaces=order), o) == expected


# --- describe() and to_dict() ---------------------------------------------------------------

DESCRIBE_CASES = [
    pytest.param(spec(mode=Mode.VEPA), link_from(spec(), 10),
                 ["mv0: mode bridge -> vepa (in place)"], id="mode"),
    pytest.param(spec(mode=Mode.PASSTHRU, flags=frozenset({Flag.NOPROMISC})),
                 link_from(spec(mode=Mode.PASSTHRU), 10),
                 ["mv0: flags none -> nopromisc (in place)"], id="flags"),
    pytest.param(spec(netns="red", mac=MAC_B, mtu=9000, state=DOWN),
                 link_from(spec(netns="red", mac=MAC_A), 10),
                 [f"mv0 in netns red: mac {MAC_A} -> {MAC_B}, mtu 1500 -> 9000, "
                  "state up -> down (in place)"], id="mac-mtu-state"),
    pytest.param(spec(bcqueuelen=2000, bc_cutoff=0), link_from(spec(), 10),
                 ["mv0: bcqueuelen 1000 -> 2000, bc_cutoff 1 -> 0 (in place)"], id="broadcast"),
    pytest.param(spec(mode=Mode.SOURCE, source_macs=frozenset({MAC_B})),
                 link_from(spec(mode=Mode.SOURCE, source_macs=frozenset({MAC_A})), 10),
                 [f"mv0: source MAC + {MAC_B} (in place)",
                  f"mv0: source MAC - {MAC_A} (in place)"], id="source-macs"),
    pytest.param(spec(netns="blue"), link_from(spec(netns="red"), 10),
                 ["mv0: netns red -> blue (in place)",
                  "mv0 in netns blue: state down -> up (in place)"], id="move"),
    pytest.param(spec(netns="red", state=DOWN), link_from(spec(), 10),
                 ["mv0: netns host -> red (in place)"], id="move-from-home"),
    pytest.param(spec(mode=Mode.PASSTHRU), link_from(spec(), 10),
                 ["mv0: delete to recreate (mode bridge -> passthru; "
                  "the kernel cannot enter or leave passthru)",
                  "mv0: recreate (mode bridge -> passthru; the kernel cannot enter or leave "
                  "passthru): macvlan passthru on eth1, up"], id="recreate-passthru"),
    pytest.param(spec(parent="eth2"), link_from(spec(), 10),
                 ["mv0: delete to recreate (parent eth1 -> eth2)",
                  "mv0: recreate (parent eth1 -> eth2): macvlan bridge on eth2, up"],
                 id="recreate-parent"),
    pytest.param(spec(mtu=1400), link_from(spec(), 10, owned=False),
                 ["mv0: adopt existing macvlan on eth1", "mv0: mtu 1500 -> 1400 (in place)"],
                 id="adopt"),
    pytest.param(spec(state=ABSENT), link_from(spec(), 10),
                 ["mv0: delete (the spec says state: absent)"], id="absent"),
    pytest.param(spec("mv1"), link_from(spec(), 10),
                 ["mv0: delete (no longer in the spec)",
                  "mv1: create: macvlan bridge on eth1, up"], id="orphan-and-create"),
    pytest.param(spec(netns="red", mode=Mode.SOURCE, flags=frozenset({Flag.NODST}),
                      source_macs=frozenset({MAC_B, MAC_A}), mac=MAC_C, mtu=1400,
                      bcqueuelen=10, bc_cutoff=0, state=DOWN), None,
                 [f"mv0 in netns red: create: macvlan source on eth1, flags nodst, "
                  f"source MACs {MAC_A},{MAC_B}, mac {MAC_C}, mtu 1400, bcqueuelen 10, "
                  "bc_cutoff 0, down"], id="create-everything"),
]


@pytest.mark.parametrize(("want", "have", "lines"), DESCRIBE_CASES)
def test_describe_says_what_changes_from_what_to_what(
        want: MacvlanSpec, have: Link | None, lines: list[str]) -> None:
    p = plan(desired(want), observed(*([have] if have else [])))
    assert [op.describe() for op in p.operations] == lines


def every_op_kind() -> list[Any]:
    ops = plan(*mixed()).operations
    by_kind = {op.kind: op for op in reversed(ops)}
    assert set(by_kind) == {"delete", "move", "adopt", "change", "add-source-mac",
                            "remove-source-mac", "create"}
    return [pytest.param(op, id=kind) for kind, op in sorted(by_kind.items())]


@pytest.mark.parametrize("op", every_op_kind())
def test_to_dict_is_json(op: Operation) -> None:
    data = op.to_dict()
    assert json.loads(json.dumps(data)) == data
    assert data["op"] == op.kind
    assert (data["netns"], data["name"]) == (op.netns, op.name)


def test_to_dict_spells_enums_and_sets_as_plain_values() -> None:
    change = Change(None, "mv0", 10, (FieldChange("mode", Mode.BRIDGE, Mode.SOURCE),
                                      FieldChange("flags", NO_FLAGS, frozenset({Flag.NODST})),
                                      FieldChange("state", DOWN, UP)))
    assert json.loads(json.dumps(change.to_dict()))["changes"] == [
        {"field": "mode", "old": "bridge", "new": "source"},
        {"field": "flags", "old": [], "new": ["nodst"]},
        {"field": "state", "old": "down", "new": "up"},
    ]
    create = Create(spec(mode=Mode.SOURCE, source_macs=frozenset({MAC_B, MAC_A})), 2)
    assert json.loads(json.dumps(create.to_dict()))["source_macs"] == [MAC_A, MAC_B]


# --- absent keys are never move sources -----------------------------------------------------


@pytest.mark.parametrize("wanted_in", [None, "blue"], ids=["home", "blue"])
def test_absent_link_is_not_also_moved(wanted_in: Netns) -> None:
    # Whatever the namespaces' sort order, a link the spec says is absent is deleted, not moved.
    want, gone = spec(netns=wanted_in), spec(netns="red", state=ABSENT)
    p = plan(desired(want, gone), observed(link_from(spec(netns="red"), 10)))
    assert p.operations == (Delete("red", "mv0", 10, "eth1", ABSENT_REASON),
                            Create(want, ETH1.ifindex))


def test_absent_link_in_a_later_namespace_is_deleted_and_the_name_created() -> None:
    # The same situation with the namespaces sorting the other way round plans correctly.
    want, gone = spec(netns="red"), spec(netns="blue", state=ABSENT)
    p = plan(desired(want, gone), observed(link_from(spec(netns="blue"), 10)))
    assert p.operations == (Delete("blue", "mv0", 10, "eth1", ABSENT_REASON),
                            Create(want, ETH1.ifindex))


# --- the plan memo --------------------------------------------------------------------------

SPEC_A = spec("mv0", mtu=1400)
SPEC_B = spec("mv1", parent="eth2", mode=Mode.SOURCE, source_macs=frozenset({MAC_A}))
LINK_A = link_from(SPEC_A, 10)
LINK_B = link_from(SPEC_B, 11, parent="eth1", lower="eth1")  # on the wrong parent: recreated
ETH2_RENUMBERED = replace(ETH2, ifindex=30)


def with_home(*links: Link) -> ObservedState:
    state = observed(LINK_A, LINK_B)
    home = {**state.links[None], **{link.name: link for link in links}}
    return replace(state, links={**state.links, None: home})


MEMO_AFTER = {
    "nothing changed": observed(LINK_A, LINK_B),
    "a link drifted": observed(replace(LINK_A, mtu=1500), LINK_B),
    "a link vanished": observed(LINK_B),
    "a link lost its alias": observed(replace(LINK_A, alias=None), LINK_B),
    "a link became a veth": observed(replace(LINK_A, kind="veth"), LINK_B),
    "the parent was renumbered": with_home(ETH2_RENUMBERED),
    "the parent vanished": with_home(replace(ETH2, name="eth9")),
    "an equal link, not the same object": observed(replace(LINK_A), LINK_B),
    "a namespace went missing": observed(LINK_A, LINK_B, missing=("blue",)),
    "a namespace became unreadable": observed(LINK_A, LINK_B, unreadable={"blue": "EPERM"}),
    "an address appeared": replace(observed(LINK_A, LINK_B), addresses={
        None: {10: Addresses(frozenset({ipaddress.ip_interface("192.0.2.1/24")}))}}),
    "the devices were looked at": replace(observed(LINK_A, LINK_B), taps={}),
}


@pytest.mark.parametrize("after", MEMO_AFTER.values(), ids=MEMO_AFTER.keys())
def test_a_memo_never_changes_the_plan(after: ObservedState) -> None:
    want = desired(SPEC_A, SPEC_B)
    memo = PlanMemo()
    plan(want, observed(LINK_A, LINK_B), memo)

    assert plan(want, after, memo) == plan(want, after)
    assert plan(want, after, memo) == plan(want, after)  # and with this plan's own memo


def test_the_same_states_again_are_the_same_plan() -> None:
    want, state = desired(SPEC_A, SPEC_B), observed(LINK_A, LINK_B)
    memo = PlanMemo()
    first = plan(want, state, memo)
    again = plan(want, replace(state), memo)  # a new observation, same Links

    assert again is first
    assert plan(desired(SPEC_A, SPEC_B), state, memo) is not first  # another spec object


def test_a_renumbered_parent_is_what_a_recreate_uses() -> None:
    want = desired(SPEC_A, SPEC_B)
    memo = PlanMemo()
    plan(want, observed(LINK_A, LINK_B), memo)

    creates = [op for op in plan(want, with_home(ETH2_RENUMBERED), memo).operations
               if isinstance(op, Create)]

    assert [op.parent_ifindex for op in creates] == [30]


def test_a_memo_reuses_the_decision_for_the_same_spec_and_link() -> None:
    want, state = desired(SPEC_A), observed(LINK_A)
    memo = PlanMemo()
    first = plan(want, state, memo)

    again = plan(want, state, memo)
    fresh = plan(desired(replace(SPEC_A)), state, memo)  # equal, not the same

    assert again.verdicts[0] is first.verdicts[0]
    assert fresh.verdicts[0] == first.verdicts[0] and fresh.verdicts[0] is not first.verdicts[0]


# --- kinds and queues -----------------------------------------------------------------------

TAP = {"kind": Kind.MACVTAP}

RECREATE_CASES = [
    pytest.param({}, TAP, "kind macvlan -> macvtap", id="macvlan->macvtap"),
    pytest.param(TAP, {}, "kind macvtap -> macvlan", id="macvtap->macvlan"),
    pytest.param({"numtxqueues": 1}, {"numtxqueues": 4}, "numtxqueues 1 -> 4", id="txqueues"),
    pytest.param({"numrxqueues": 4}, {"numrxqueues": 1}, "numrxqueues 4 -> 1", id="rxqueues"),
    pytest.param({**TAP, "numtxqueues": 2}, {**TAP, "numtxqueues": 8}, "numtxqueues 2 -> 8",
                 id="macvtap-txqueues"),
]


@pytest.mark.parametrize(("have", "want", "why"), RECREATE_CASES)
def test_kind_and_queues_are_fixed_at_creation(
        have: dict[str, Any], want: dict[str, Any], why: str) -> None:
    wanted = spec(**want)
    p = plan(desired(wanted), observed(link_from(spec(**have), 10)))
    assert p.operations == (Delete(None, "mv0", 10, "eth1", why, recreate=True),
                            Create(wanted, ETH1.ifindex, recreate=why))


def test_unset_queues_are_left_as_the_kernel_has_them() -> None:
    p = plan(desired(spec(**TAP)), observed(link_from(spec(**TAP, numtxqueues=8), 10)))
    assert p.operations == ()


def test_a_macvtap_change_names_its_kind() -> None:
    want = spec(**TAP, mode=Mode.SOURCE, source_macs=frozenset({MAC_A}))
    have = link_from(spec(**TAP), 10, kind="macvtap")
    p = plan(desired(want), observed(have))
    assert p.operations == (
        Change(None, "mv0", 10, (FieldChange("mode", Mode.BRIDGE, Mode.SOURCE),), "macvtap"),
        AddSourceMac(None, "mv0", 10, MAC_A, "macvtap"),
    )


def test_an_unowned_macvtap_is_adopted_as_one() -> None:
    want = spec(**TAP)
    p = plan(desired(want), observed(link_from(want, 10, owned=False, kind="macvtap")))
    assert [op.describe() for op in p.operations] == ["mv0: adopt existing macvtap on eth1"]


def test_a_veth_where_a_macvtap_is_wanted_is_a_conflict() -> None:
    p = plan(desired(spec(**TAP)), observed(veth("mv0", 10)))
    assert p.operations == ()
    assert verdict_of(p) == Verdict(spec(**TAP), Condition.CONFLICT,
                                    "mv0 already exists as a veth, not a macvtap")


def test_a_macvtap_create_line_names_kind_and_queues() -> None:
    p = plan(desired(spec(**TAP, numtxqueues=4, numrxqueues=2)), observed())
    assert [op.describe() for op in p.operations] == [
        "mv0: create: macvtap bridge on eth1, numtxqueues 4, numrxqueues 2, up"]
    assert p.operations[0].to_dict()["kind"] == "macvtap"


# --- /dev/tapN ------------------------------------------------------------------------------

ACCESS = TapAccess(owner="qemu", group="kvm", mode=0o660)


def node(number: int, link_name: str | None = "mv0", owner: str = "root", uid: int = 0,
         group: str = "root", gid: int = 0, mode: int = 0o600) -> TapNode:
    return TapNode(number, 0xF600000 + number, uid, gid, mode, owner, group, link_name)


def with_taps(state: ObservedState, *nodes: TapNode) -> ObservedState:
    return replace(state, taps={n.number: n for n in nodes})


def test_a_new_macvtap_gets_a_number_whose_device_is_free_and_then_its_access() -> None:
    want = spec(**TAP, tap=ACCESS)
    # eth1 is 2, eth2 is 3 at home; /dev/tap4 and /dev/tap5 belong to others.
    p = plan(desired(want), with_taps(observed(), node(4, "other"), node(5, None)))
    assert p.operations == (
        Create(want, ETH1.ifindex, ifindex=6),
        ChangeTap(None, "mv0", 6, ACCESS, (FieldChange("tap.owner", None, "qemu"),
                                           FieldChange("tap.group", None, "kvm"),
                                           FieldChange("tap.mode", None, "0660"))),
    )


def test_two_new_macvtaps_in_two_namespaces_never_share_a_number() -> None:
    a, b = spec("mv0", netns="red", **TAP), spec("mv0", netns="blue", **TAP)
    p = plan(desired(a, b), with_taps(observed()))
    numbers = [op.ifindex for op in p.operations if isinstance(op, Create)]
    assert len(set(numbers)) == 2 and None not in numbers


def test_macvlans_and_unobserved_devices_keep_the_kernels_choice_of_ifindex() -> None:
    assert plan(desired(spec()), with_taps(observed())).operations == (Create(spec(), 2),)
    assert plan(desired(spec(**TAP)), observed()).operations == (Create(spec(**TAP), 2),)


TAP_DRIFT = [
    pytest.param(node(10, owner="qemu", group="kvm", mode=0o660), [], id="in-sync"),
    pytest.param(node(10, owner="root", group="kvm", mode=0o660),
                 [FieldChange("tap.owner", "root", "qemu")], id="owner"),
    pytest.param(node(10, owner="qemu", group="kvm", mode=0o600),
                 [FieldChange("tap.mode", "0600", "0660")], id="mode"),
    pytest.param(node(10, owner="qemu", group="root", mode=0o666),
                 [FieldChange("tap.group", "root", "kvm"), FieldChange("tap.mode", "0666", "0660")],
                 id="group-and-mode"),
]


@pytest.mark.parametrize(("have", "changes"), TAP_DRIFT)
def test_tap_access_is_compared_with_the_device(have: TapNode, changes: list[FieldChange]) -> None:
    want = spec(**TAP, tap=ACCESS)
    p = plan(desired(want), with_taps(observed(link_from(want, 10)), have))
    assert p.operations == ((ChangeTap(None, "mv0", 10, ACCESS, tuple(changes)),) if changes
                            else ())


def test_numeric_ids_compare_with_the_devices_ids() -> None:
    want = spec(**TAP, tap=TapAccess(owner=107, group=0))
    have = node(10, owner="libvirt-qemu", uid=107, group="root", gid=0)
    assert plan(desired(want), with_taps(observed(link_from(want, 10)), have)).operations == ()


def test_no_tap_access_leaves_the_device_alone() -> None:
    want = spec(**TAP)
    p = plan(desired(want), with_taps(observed(link_from(want, 10)), node(10, mode=0o777)))
    assert p.operations == ()


@pytest.mark.parametrize(("want", "condition"), [
    pytest.param(spec(**TAP, tap=ACCESS), Condition.PENDING, id="with-tap-access-pending"),
    pytest.param(spec(**TAP), Condition.IN_SYNC, id="without-tap-access-not-looked-at"),
])
def test_a_macvtap_without_its_device_is_pending_and_nothing_is_done(
        want: MacvlanSpec, condition: Condition) -> None:
    p = plan(desired(want), with_taps(observed(link_from(want, 10))))
    assert p.operations == ()
    assert [v.condition for v in p.verdicts] == [condition]
    if condition is Condition.PENDING:
        assert p.verdicts[0].detail.startswith("waits for /dev/tap10: there is none (removed")
        assert summary(p.verdicts).startswith("1 pending: mv0 waits for /dev/tap10: ")


def test_a_macvtap_with_its_device_in_place_is_in_sync() -> None:
    want = spec(**TAP, tap=ACCESS)
    have = node(10, owner="qemu", group="kvm", mode=0o660)
    p = plan(desired(want), with_taps(observed(link_from(want, 10)), have))
    assert [v.condition for v in p.verdicts] == [Condition.IN_SYNC]


def test_a_macvtap_whose_number_is_another_devices_is_recreated_with_a_free_one() -> None:
    want = spec(**TAP, tap=ACCESS)
    why = ("its /dev/tap10 is the device of squat, a macvtap of the same ifindex in another "
           "namespace")
    p = plan(desired(want), with_taps(observed(link_from(want, 10)), node(10, "squat")))
    assert p.operations[:2] == (Delete(None, "mv0", 10, "eth1", why, recreate=True),
                                Create(want, ETH1.ifindex, why, ifindex=4))
    assert p.operations[2] == ChangeTap(None, "mv0", 4, ACCESS, (
        FieldChange("tap.owner", None, "qemu"), FieldChange("tap.group", None, "kvm"),
        FieldChange("tap.mode", None, "0660")))
    assert [op.describe() for op in p.operations][2] == (
        "mv0: /dev/tap4: tap.owner unset -> qemu, tap.group unset -> kvm, tap.mode unset -> 0660")


def test_a_foreign_macvtap_is_never_recreated_for_its_device() -> None:
    want = spec(**TAP)
    have = link_from(want, 10, owned=False, parent="eth2", lower="eth2")
    p = plan(desired(want), with_taps(observed(have), node(10, "squat")))
    assert verdict_of(p).condition is Condition.CONFLICT
    assert p.operations == ()
