"""Integration tests: apply plans to the real kernel and check with an independent read."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from macvland.apply import apply
from macvland.errors import KernelError, NamespaceMissing
from macvland.model import OWNER_ALIAS, Flag, Kind, MacvlanSpec, Mode, State
from macvland.nla import IFLA_MTU, u32
from macvland.ops import Change, Create, Delete, Move
from macvland.plan import Condition
from macvland.rtnl import (
    _LINK_FRAME,
    IFLA_EXT_MASK,
    RTEXT_FILTER_SKIP_STATS,
    RTM_GETLINK,
    RTM_NEWLINK,
    _LinkDecoder,
    decode_link,
    ifinfo,
)
from macvland.settings import LINK_SETTINGS
from tests.conftest import Lab, ip, macvlan_info

MACS = frozenset({"02:00:00:00:00:01", "02:00:00:00:00:02"})


def spec(name: str = "mv0", parent: str = "eth1", mode: Mode = Mode.BRIDGE,
         **settings: Any) -> MacvlanSpec:
    if mode is Mode.SOURCE and "source_macs" not in settings:
        settings["source_macs"] = MACS
    return MacvlanSpec(name=name, parent=parent, mode=mode, **settings)


def converge(lab: Lab, *specs: MacvlanSpec) -> None:
    result = lab.reconcile(*specs)
    failures = [(o.operation.describe(), str(o.error)) for o in result.outcomes if not o.ok]
    assert not failures
    assert result.remaining.operations == ()
    assert result.converged, result.remaining.verdicts


def kinds(result: Any) -> list[str]:
    return [op.kind for op in result.plan.operations]


def test_creates_every_mode_with_its_settings(lab: Lab) -> None:
    lab.add_veth("eth3")
    specs = [
        spec("mv-bridge", mode=Mode.BRIDGE, mtu=1400, mac="02:42:0a:00:00:05", bcqueuelen=300),
        spec("mv-vepa", mode=Mode.VEPA, state=State.DOWN),
        spec("mv-private", mode=Mode.PRIVATE),
        spec("mv-source", mode=Mode.SOURCE, flags=frozenset({Flag.NODST})),
        spec("mv-pass", parent="eth3", mode=Mode.PASSTHRU, flags=frozenset({Flag.NOPROMISC})),
    ]
    converge(lab, *specs)

    links = lab.links()
    bridge = links["mv-bridge"]
    assert (bridge["link"], bridge["mtu"], bridge["address"]) == ("eth1", 1400,
                                                                  "02:42:0a:00:00:05")
    assert macvlan_info(bridge)["bcqueuelen"] == 300
    assert "UP" in bridge["flags"] and "UP" not in links["mv-vepa"]["flags"]
    for s in specs:
        assert macvlan_info(links[s.name])["mode"] == s.mode
        assert links[s.name]["ifalias"] == OWNER_ALIAS
    assert macvlan_info(links["mv-source"])["nodst"] is True
    assert set(macvlan_info(links["mv-source"])["macaddr_data"]) == MACS
    assert macvlan_info(links["mv-pass"])["nopromisc"] is True


@pytest.mark.parametrize(("old", "new"), [
    pytest.param(a, b, id=f"{a}-to-{b}") for a, b in itertools.permutations(Mode, 2)])
def test_mode_transition(lab: Lab, old: Mode, new: Mode) -> None:
    converge(lab, spec(mode=old))
    before = lab.links()["mv0"]

    result = lab.reconcile(spec(mode=new))

    after = lab.links()["mv0"]
    assert macvlan_info(after)["mode"] == new
    in_place = Mode.PASSTHRU not in (old, new)
    assert (after["ifindex"] == before["ifindex"]) is in_place
    expected = ["change"] if in_place else ["delete", "create"]
    assert kinds(result)[:len(expected)] == expected
    if new is Mode.SOURCE:
        assert set(macvlan_info(after)["macaddr_data"]) == MACS
    else:
        assert "macaddr_data" not in macvlan_info(after)
    assert result.remaining.operations == ()


@pytest.mark.parametrize(("name", "before", "after", "check"), [
    pytest.param("mtu", {}, {"mtu": 1280}, lambda link: link["mtu"] == 1280, id="mtu"),
    pytest.param("mac", {}, {"mac": "02:00:00:aa:bb:cc"},
                 lambda link: link["address"] == "02:00:00:aa:bb:cc", id="mac"),
    pytest.param("state", {}, {"state": State.DOWN}, lambda link: "UP" not in link["flags"],
                 id="down"),
    pytest.param("state", {"state": State.DOWN}, {"state": State.UP},
                 lambda link: "UP" in link["flags"], id="up"),
    pytest.param("bcqueuelen", {}, {"bcqueuelen": 64},
                 lambda link: macvlan_info(link)["bcqueuelen"] == 64, id="bcqueuelen"),
    pytest.param("nodst", {"mode": Mode.SOURCE}, {"mode": Mode.SOURCE,
                                                 "flags": frozenset({Flag.NODST})},
                 lambda link: macvlan_info(link).get("nodst") is True, id="flag-nodst-on"),
    pytest.param("nodst", {"mode": Mode.SOURCE, "flags": frozenset({Flag.NODST})},
                 {"mode": Mode.SOURCE}, lambda link: "nodst" not in macvlan_info(link),
                 id="flag-nodst-off"),
    pytest.param("nopromisc", {"mode": Mode.PASSTHRU},
                 {"mode": Mode.PASSTHRU, "flags": frozenset({Flag.NOPROMISC})},
                 lambda link: macvlan_info(link).get("nopromisc") is True, id="flag-nopromisc"),
    pytest.param("source_macs", {"mode": Mode.SOURCE},
                 {"mode": Mode.SOURCE, "source_macs": frozenset({"02:00:00:00:00:02",
                                                                 "02:00:00:00:00:03"})},
                 lambda link: set(macvlan_info(link)["macaddr_data"]) == {
                     "02:00:00:00:00:02", "02:00:00:00:00:03"}, id="source-macs"),
])
def test_in_place_change_keeps_ifindex(lab: Lab, name: str, before: dict[str, Any],
                                       after: dict[str, Any], check: Any) -> None:
    converge(lab, spec(**before))
    ifindex = lab.links()["mv0"]["ifindex"]

    converge(lab, spec(**after))

    link = lab.links()["mv0"]
    assert check(link), link
    assert link["ifindex"] == ifindex


def test_bc_cutoff_is_set_in_place(lab: Lab) -> None:
    # iproute2 6.1 cannot show bc_cutoff; the kernel's acceptance plus a fresh observe is the
    # best read available here.
    converge(lab, spec())
    ifindex = lab.links()["mv0"]["ifindex"]
    result = lab.reconcile(spec(bc_cutoff=5))
    assert [op.fields() for op in result.plan.operations if isinstance(op, Change)] == [
        frozenset({"bc_cutoff"})]
    assert result.converged
    assert lab.links()["mv0"]["ifindex"] == ifindex


def test_source_macs_change_by_additions_then_removals(lab: Lab) -> None:
    converge(lab, spec(mode=Mode.SOURCE, source_macs=frozenset({"02:00:00:00:00:01"})))
    result = lab.reconcile(spec(mode=Mode.SOURCE, source_macs=frozenset({"02:00:00:00:00:09"})))
    assert kinds(result) == ["add-source-mac", "remove-source-mac"]
    assert macvlan_info(lab.links()["mv0"])["macaddr_data"] == ["02:00:00:00:00:09"]


def test_new_parent_recreates(lab: Lab) -> None:
    converge(lab, spec(parent="eth1"))
    result = lab.reconcile(spec(parent="eth2"))
    assert kinds(result) == ["delete", "create"]
    assert lab.links()["mv0"]["link"] == "eth2"
    assert result.converged


def test_namespace_move_keeps_the_interface(lab: Lab) -> None:
    a, b = lab.add_netns("a"), lab.add_netns("b")
    converge(lab, spec(netns=a, mtu=1300))
    before = lab.links(a)["mv0"]

    result = lab.reconcile(spec(netns=b, mtu=1300))

    assert [type(op) for op in result.plan.operations] == [Move, Change]
    assert "mv0" not in lab.links(a)
    moved = lab.links(b)["mv0"]
    assert (moved["address"], moved["mtu"]) == (before["address"], 1300)
    assert "UP" in moved["flags"]
    assert result.converged


def test_same_name_in_two_namespaces(lab: Lab) -> None:
    a = lab.add_netns("a")
    converge(lab, spec("mv0", netns=None, mode=Mode.VEPA), spec("mv0", netns=a))
    assert macvlan_info(lab.links()["mv0"])["mode"] == "vepa"
    assert macvlan_info(lab.links(a)["mv0"])["mode"] == "bridge"


def test_unowned_interfaces_and_parent_are_untouched(lab: Lab) -> None:
    lab.ip("link", "add", "other", "link", "eth1", "type", "macvlan", "mode", "private")
    untouchable = ("other", "eth1", "eth1-peer")
    before = {name: _settings(lab.links()[name]) for name in untouchable}

    converge(lab, spec("mv0", mode=Mode.VEPA, mtu=1400), spec("mv1", mode=Mode.SOURCE))
    converge(lab, spec("mv0", mode=Mode.BRIDGE, mtu=1300))  # changes, and deletes mv1

    links = lab.links()
    assert "mv1" not in links
    assert {name: _settings(links[name]) for name in untouchable} == before


def _settings(link: dict[str, Any]) -> dict[str, Any]:
    # Not promiscuity: the kernel itself counts a parent's macvlans there.
    keep = ("ifindex", "flags", "mtu", "address", "ifalias", "linkinfo")
    return {k: link.get(k) for k in keep}


@pytest.mark.parametrize("make", [
    pytest.param(("link", "add", "mv0", "type", "veth", "peer", "name", "mv0-peer"), id="veth"),
    pytest.param(("link", "add", "mv0", "link", "eth2", "type", "macvlan"),
                 id="macvlan-on-other-parent"),
])
def test_conflict_is_reported_and_nothing_changes(lab: Lab, make: tuple[str, ...]) -> None:
    lab.ip(*make)
    before = _settings(lab.links()["mv0"])

    result = lab.reconcile(spec("mv0", parent="eth1", mode=Mode.VEPA), spec("mv1"))

    verdicts = {v.spec.name: v for v in result.plan.verdicts}
    assert verdicts["mv0"].condition is Condition.CONFLICT
    assert _settings(lab.links()["mv0"]) == before
    assert "mv1" in lab.links()
    assert not result.converged


def test_existing_macvlan_on_the_wanted_parent_is_adopted(lab: Lab) -> None:
    lab.ip("link", "add", "mv0", "link", "eth1", "type", "macvlan", "mode", "private")
    ifindex = lab.links()["mv0"]["ifindex"]

    result = lab.reconcile(spec("mv0", mode=Mode.VEPA))

    assert kinds(result) == ["adopt", "change"]
    link = lab.links()["mv0"]
    assert (link["ifindex"], link["ifalias"]) == (ifindex, OWNER_ALIAS)
    assert macvlan_info(link)["mode"] == "vepa"
    converge(lab)  # adopted means owned: leaving the spec deletes it
    assert "mv0" not in lab.links()


def test_state_absent_deletes_an_unowned_macvlan(lab: Lab) -> None:
    lab.ip("link", "add", "stale", "link", "eth2", "type", "macvlan")
    converge(lab, spec("stale", state=State.ABSENT))
    assert "stale" not in lab.links()


def test_missing_namespace_is_pending_while_others_converge(lab: Lab) -> None:
    later = lab.name("later")
    result = lab.reconcile(spec("mv0", netns=later), spec("mv1"))

    verdicts = {v.spec.name: v for v in result.remaining.verdicts}
    assert verdicts["mv0"].condition is Condition.PENDING
    assert later in verdicts["mv0"].detail
    assert verdicts["mv1"].condition is Condition.IN_SYNC
    assert "mv1" in lab.links()

    lab.add_netns("later")
    converge(lab, spec("mv0", netns=later), spec("mv1"))
    assert "mv0" in lab.links(later)


def test_missing_parent_is_pending(lab: Lab) -> None:
    result = lab.reconcile(spec("mv0", parent="eth9"), spec("mv1"))
    verdicts = {v.spec.name: v for v in result.remaining.verdicts}
    assert verdicts["mv0"].condition is Condition.PENDING
    assert "eth9" in verdicts["mv0"].detail
    assert "mv1" in lab.links()


def test_orphan_is_deleted_from_a_namespace_the_spec_no_longer_names(lab: Lab) -> None:
    a = lab.add_netns("a")
    converge(lab, spec("mv0", netns=a), spec("mv1"))

    result = lab.reconcile(spec("mv1"))  # the spec forgets netns a altogether

    assert [(op.kind, op.netns) for op in result.plan.operations] == [("delete", a)]
    assert "mv0" not in lab.links(a)
    assert lab.ledger.namespaces() == frozenset()


def test_a_failing_interface_does_not_block_the_others(lab: Lab) -> None:
    # The kernel refuses a macvlan MTU above its parent's (1500).
    result = lab.reconcile(spec("mv0", mtu=9000), spec("mv1"), spec("mv2", parent="eth2"))

    failed = [o for o in result.outcomes if o.error]
    assert [o.operation.name for o in failed] == ["mv0"]
    assert isinstance(failed[0].error, KernelError) and failed[0].error.errno == 22
    assert isinstance(failed[0].operation, Create)
    assert {"mv1", "mv2"} <= set(lab.links()) and "mv0" not in lab.links()
    assert not result.converged


def test_no_op_pass_writes_nothing(lab: Lab) -> None:
    specs = [spec(f"mv{i}", mode=mode) for i, mode in enumerate(
        (Mode.BRIDGE, Mode.VEPA, Mode.PRIVATE, Mode.SOURCE))]
    converge(lab, *specs)
    writes = lab.namespaces.writes

    result = lab.reconcile(*specs)

    assert result.plan.operations == () and result.outcomes == ()
    assert lab.namespaces.writes == writes


def test_deleted_namespace_is_reopened_when_recreated(lab: Lab) -> None:
    a = lab.add_netns("a")
    converge(lab, spec("mv0", netns=a))
    lab.del_netns(a)
    lab.add_netns("a")

    converge(lab, spec("mv0", netns=a))

    assert "mv0" in lab.links(a)


def test_delete_is_by_ifindex_never_by_name(lab: Lab) -> None:
    # A plan made against one link must not hit another that took its name meanwhile.
    converge(lab, spec("mv0"))
    stale = lab.reconcile(spec("mv0", parent="eth2"))  # recreated: the old ifindex is gone
    assert stale.converged
    recreated = stale.plan.operations[0]
    assert isinstance(recreated, Delete)
    old = Delete(None, "mv0", ifindex=recreated.ifindex, parent="eth1", reason="test")
    [outcome] = apply((old,), lab.namespaces)
    assert isinstance(outcome.error, KernelError)
    assert "mv0" in lab.links()


def test_prune_deletes_together_and_spares_everything_else(lab: Lab) -> None:
    a = lab.add_netns("a")
    lab.ip("link", "add", "other", "link", "eth1", "type", "macvlan")
    lab.ip("link", "set", "other", "group", "7")
    specs = [spec(f"mv{i}", netns=ns) for i in range(6) for ns in (None, a)]
    converge(lab, *specs)
    writes = lab.namespaces.writes

    result = lab.reconcile()

    assert len(result.outcomes) == 12 and all(o.ok for o in result.outcomes)
    # Per namespace: 6 links join a group, 1 request deletes it (one by one would be 6 more).
    assert lab.namespaces.writes - writes == 2 * (6 + 1)
    assert not [n for n in lab.links() if n.startswith("mv")]
    assert not [n for n in lab.links(a) if n.startswith("mv")]
    assert lab.links()["other"]["group"] == "7"
    assert {"eth1", "eth2", "eth1-peer"} <= set(lab.links())


def test_group_delete_falls_back_when_the_group_is_not_ours_alone(
        lab: Lab, monkeypatch: pytest.MonkeyPatch) -> None:
    converge(lab, spec("mv0"), spec("mv1"))
    lab.ip("link", "add", "other", "link", "eth1", "type", "macvlan")
    lab.ip("link", "set", "other", "group", "4242")
    # As if a stranger joined the group between choosing it and deleting by it.
    monkeypatch.setattr("macvland.apply._free_group", lambda: 4242)

    result = lab.reconcile()

    assert [o.ok for o in result.outcomes] == [True, True]
    links = lab.links()
    assert "other" in links and "mv0" not in links and "mv1" not in links


def test_a_failed_request_in_a_batch_does_not_stop_the_ones_after_it(lab: Lab) -> None:
    # request_many sends a chunk as one datagram: the kernel must go on past an error.
    sock = lab.namespaces.socket(None)
    index = {link.name: link.ifindex for link in sock.links()}
    results = sock.request_many([
        (RTM_NEWLINK, ifinfo(index["eth1"]) + u32(IFLA_MTU, 1400), 0),
        (RTM_NEWLINK, ifinfo(index["eth1"]) + u32(IFLA_MTU, 10), 0),  # below the minimum
        (RTM_NEWLINK, ifinfo(index["eth2"]) + u32(IFLA_MTU, 1300), 0),
    ])

    assert results[0] is None and results[2] is None
    assert isinstance(results[1], KernelError)
    assert lab.links()["eth1"]["mtu"] == 1400 and lab.links()["eth2"]["mtu"] == 1300


def test_a_namespace_gone_between_plan_and_apply_is_named_in_the_error(lab: Lab) -> None:
    gone = lab.add_netns("gone")
    parent = lab.namespaces.socket(None).link("eth1").ifindex
    lab.del_netns(gone)

    [outcome] = apply((Create(spec("mv0", netns=gone), parent),), lab.namespaces)

    assert str(outcome.error) == f"netns /run/netns/{gone}: does not exist"


def test_a_dump_read_by_shapes_equals_one_read_by_walking(lab: Lab) -> None:
    """decode_link reads a message of a shape it has seen by that shape; on a real mixed
    dump (every mode, a macvtap, owned and foreign macvlans, source MACs, veths, lo, and a
    macvlan whose parent is in another namespace) that must read exactly what a walk does."""
    lab.add_veth("eth3")
    lab.add_veth("eth4")
    target = lab.add_netns("t")
    converge(lab, spec("mv-bridge", mtu=1400), spec("mv-vepa", mode=Mode.VEPA),
             spec("mv-private", mode=Mode.PRIVATE), spec("mv-source", mode=Mode.SOURCE),
             spec("mv-pass", parent="eth3", mode=Mode.PASSTHRU),
             spec("tap0", parent="eth4", kind=Kind.MACVTAP),
             spec("mv-there", parent="eth2", netns=target))
    lab.ip("link", "add", "foreign0", "link", "eth2", "type", "macvlan", "mode", "bridge")
    request = ifinfo() + u32(IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS)
    for netns in (None, target):
        bodies = [bytes(b) for b in lab.namespaces.socket(netns).dump(RTM_GETLINK, request)]
        shared = _LinkDecoder(_LINK_FRAME, (a for _, a in LINK_SETTINGS))
        for _ in range(2):  # the second time, every message is of a shape seen
            for body in bodies:
                walked = _LinkDecoder(_LINK_FRAME, (a for _, a in LINK_SETTINGS)).decode(body)
                assert shared.decode(body) == walked
        assert len(shared.shapes) < len(bodies) or netns == target
    assert decode_link(bodies[-1]).name in {"mv-there", "lo"}


def test_namespaces_entered_at_once_each_get_their_own_socket(lab: Lab) -> None:
    """enter() opens the sockets of several namespaces in one thread: each must be inside
    its own namespace, a missing one is left to socket() to name, and a namespace replaced
    since is entered again."""
    named = [lab.add_netns(short) for short in ("a", "b", "c")]
    for netns in named:
        ip("-n", netns, "link", "add", f"v-{netns[-1]}", "type", "veth", "peer", "name", "p")
    missing = lab.name("missing")
    lab.namespaces.enter([None, *named, missing])
    for netns in named:
        assert {link.name for link in lab.namespaces.socket(netns).links()} == {
            "lo", f"v-{netns[-1]}", "p"}
    with pytest.raises(NamespaceMissing, match="missing"):
        lab.namespaces.socket(missing)

    stale = lab.namespaces.socket(named[0])
    lab.del_netns(named[0])
    lab.add_netns("a")
    lab.namespaces.enter(named)
    fresh = lab.namespaces.socket(named[0])
    assert fresh is not stale
    assert {link.name for link in fresh.links()} == {"lo"}
