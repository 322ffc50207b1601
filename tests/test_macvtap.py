"""macvtap against the real kernel: made, changed in place, recreated where it must be, in any
namespace; checked with `ip -d -j link show`."""

from __future__ import annotations

from typing import Any

import pytest

from macvland.model import OWNER_ALIAS, Flag, Kind, MacvlanSpec, Mode
from tests.conftest import Lab, macvlan_info


def tap(name: str = "mvt0", parent: str = "eth1", **settings: Any) -> MacvlanSpec:
    return MacvlanSpec(name=name, parent=parent, kind=Kind.MACVTAP, **settings)


def converge(lab: Lab, *specs: MacvlanSpec) -> Any:
    result = lab.reconcile(*specs)
    failures = [(o.operation.describe(), str(o.error)) for o in result.outcomes if not o.ok]
    assert not failures
    assert result.converged, (result.remaining.operations, result.remaining.verdicts)
    return result


def kind_of(link: dict[str, Any]) -> str:
    kind: str = link["linkinfo"]["info_kind"]
    return kind


@pytest.mark.parametrize("where", ["home", "netns"])
def test_a_macvtap_is_made_with_its_settings_and_queues(lab: Lab, where: str) -> None:
    netns = lab.add_netns("vm") if where == "netns" else None
    want = tap(netns=netns, mode=Mode.SOURCE, flags=frozenset({Flag.NODST}),
               source_macs=frozenset({"02:00:00:00:00:01"}), bcqueuelen=64,
               numtxqueues=4, numrxqueues=2, mtu=1400)
    converge(lab, want)

    link = lab.links(netns)["mvt0"] if netns else lab.links()["mvt0"]
    assert kind_of(link) == "macvtap"
    info = macvlan_info(link)
    assert (info["mode"], info["nodst"], info["bcqueuelen"]) == ("source", True, 64)
    assert info["macaddr_data"] == ["02:00:00:00:00:01"]
    assert (link["num_tx_queues"], link["num_rx_queues"], link["mtu"]) == (4, 2, 1400)
    assert link["ifalias"] == OWNER_ALIAS
    assert lab.reconcile(want).plan.operations == ()


def test_a_macvtap_changes_mode_and_source_macs_in_place(lab: Lab) -> None:
    converge(lab, tap(mode=Mode.BRIDGE))
    before = lab.links()["mvt0"]["ifindex"]
    result = converge(lab, tap(mode=Mode.SOURCE, source_macs=frozenset({"02:00:00:00:00:07"})))
    assert [op.kind for op in result.plan.operations] == ["change", "add-source-mac"]
    link = lab.links()["mvt0"]
    assert link["ifindex"] == before
    assert macvlan_info(link)["mode"] == "source"
    assert macvlan_info(link)["macaddr_data"] == ["02:00:00:00:00:07"]


@pytest.mark.parametrize(("have", "want", "why"), [
    pytest.param(MacvlanSpec(name="mvt0", parent="eth1"), tap(), "kind macvlan -> macvtap",
                 id="macvlan->macvtap"),
    pytest.param(tap(), MacvlanSpec(name="mvt0", parent="eth1"), "kind macvtap -> macvlan",
                 id="macvtap->macvlan"),
    pytest.param(tap(numtxqueues=1), tap(numtxqueues=3), "numtxqueues 1 -> 3", id="txqueues"),
    pytest.param(tap(numrxqueues=2), tap(numrxqueues=1), "numrxqueues 2 -> 1", id="rxqueues"),
])
def test_what_is_fixed_at_creation_recreates_and_the_plan_says_why(
        lab: Lab, have: MacvlanSpec, want: MacvlanSpec, why: str) -> None:
    converge(lab, have)
    result = converge(lab, want)
    assert [(op.kind, getattr(op, "recreate", None)) for op in result.plan.operations] == [
        ("delete", True), ("create", why)]
    link = lab.links()["mvt0"]
    assert kind_of(link) == want.kind
    for key, attribute in (("numtxqueues", "num_tx_queues"), ("numrxqueues", "num_rx_queues")):
        if getattr(want, key) is not None:
            assert link[attribute] == getattr(want, key)


def test_an_unowned_macvtap_on_the_wanted_parent_is_adopted(lab: Lab) -> None:
    lab.ip("link", "add", "mvt0", "link", "eth1", "type", "macvtap", "mode", "vepa")
    result = converge(lab, tap(mode=Mode.VEPA))
    assert [op.describe() for op in result.plan.operations] == [
        "mvt0: adopt existing macvtap on eth1", "mvt0: state down -> up (in place)"]
    assert lab.links()["mvt0"]["ifalias"] == OWNER_ALIAS


def test_drift_of_a_macvtap_is_put_back(lab: Lab) -> None:
    converge(lab, tap(mode=Mode.PRIVATE))
    lab.ip("link", "set", "mvt0", "type", "macvtap", "mode", "bridge")
    result = converge(lab, tap(mode=Mode.PRIVATE))
    assert [op.describe() for op in result.plan.operations] == [
        "mvt0: mode bridge -> private (in place)"]
    assert macvlan_info(lab.links()["mvt0"])["mode"] == "private"
