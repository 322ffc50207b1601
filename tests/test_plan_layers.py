"""Table-driven tests of the planner's layers above the link: addresses, then routes.

Pure: every observed state is built by hand as observe() would report it.
"""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from macvland.model import (
    OWNER_ALIAS,
    Addresses,
    DesiredState,
    IPInterface,
    Link,
    MacvlanSpec,
    Netns,
    ObservedState,
    Route,
    State,
    default_metric,
)
from macvland.ops import (
    AddAddress,
    AddRoute,
    ChangeRoute,
    Create,
    Move,
    Operation,
    RemoveAddress,
    RemoveRoute,
)
from macvland.plan import Condition, plan

ETH1 = Link(None, "eth1", 2, "veth", True, 1500, "02:00:00:00:00:e1")
LL = ipaddress.ip_interface("fe80::1234/64")


def ips(*text: str) -> frozenset[IPInterface]:
    return frozenset(ipaddress.ip_interface(t) for t in text)


def rt(to: str, via: str | None = None, metric: int | None = None, table: int = 254) -> Route:
    network = ipaddress.ip_network(to)
    return Route(network, ipaddress.ip_address(via) if via else None,
                 default_metric(network.version) if metric is None else metric, table)


def spec(netns: Netns = None, **fields: Any) -> MacvlanSpec:
    return MacvlanSpec(name="mv0", parent="eth1", netns=netns, **fields)


def link(netns: Netns = None, ifindex: int = 10, owned: bool = True, up: bool = True,
         kind: str = "macvlan") -> Link:
    return Link(netns, "mv0", ifindex, kind, up, 1500, "02:00:00:00:10:0a",
                alias=OWNER_ALIAS if owned else None, parent="eth1", lower="eth1",
                mode=spec().mode, bc_cutoff=1, bcqueuelen=1000)


def observed(*links: Link, static: frozenset[IPInterface] = frozenset(),
             kernel: frozenset[IPInterface] = frozenset({LL}),
             routes: frozenset[Route] = frozenset(), layered: bool = True) -> ObservedState:
    """Home with eth1 and the given links; their addresses and routes as given (by ifindex)."""
    by_netns: dict[Netns, dict[str, Link]] = {None: {"eth1": ETH1}, "red": {}, "blue": {}}
    for lk in links:
        by_netns[lk.netns][lk.name] = lk
    addresses = {ns: {lk.ifindex: Addresses(static, kernel) for lk in by_netns[ns].values()}
                 for ns in by_netns} if layered else {}
    by_oif = {ns: {lk.ifindex: routes for lk in by_netns[ns].values()} for ns in by_netns} \
        if layered else {}
    return ObservedState(by_netns, addresses=addresses, routes=by_oif)


def ops_of(want: MacvlanSpec, seen: ObservedState) -> list[Operation]:
    return list(plan(DesiredState((want,)), seen).operations)


A, B = ips("192.0.2.10/24"), ips("192.0.2.10/24", "2001:db8::10/64")
R1, R1B = rt("198.51.100.0/24", "192.0.2.1"), rt("198.51.100.0/24", "192.0.2.254")
R2 = rt("2001:db8:1::/48", "fe80::1")


@pytest.mark.parametrize(("want", "static", "expected"), [
    pytest.param(None, ips("192.0.2.99/24"), [], id="absent-leaves-alone"),
    pytest.param(A, A, [], id="in-sync"),
    pytest.param(B, A, [AddAddress(None, "mv0", 10, *ips("2001:db8::10/64"))], id="add-missing"),
    pytest.param(A, B, [RemoveAddress(None, "mv0", 10, *ips("2001:db8::10/64"))],
                 id="remove-unlisted"),
    pytest.param(ips("192.0.2.10/16"), A,
                 [RemoveAddress(None, "mv0", 10, *A),
                  AddAddress(None, "mv0", 10, *ips("192.0.2.10/16"))],
                 id="new-prefix-length-removes-first"),
    pytest.param(frozenset(), B, [RemoveAddress(None, "mv0", 10, *ips("192.0.2.10/24")),
                                  RemoveAddress(None, "mv0", 10, *ips("2001:db8::10/64"))],
                 id="empty-list-removes-every-static-one"),
])
def test_addresses(want: frozenset[IPInterface] | None, static: frozenset[IPInterface],
                   expected: list[Operation]) -> None:
    assert ops_of(spec(addresses=want), observed(link(), static=static)) == expected


def test_kernel_made_addresses_are_never_removed_and_count_as_present() -> None:
    # A listed address the kernel happens to hold (say a static link-local one on a kernel too
    # old to say who made it) is present: adding it again would fail with EEXIST.
    assert ops_of(spec(addresses=frozenset({LL})), observed(link())) == []
    assert ops_of(spec(addresses=frozenset()), observed(link())) == []


@pytest.mark.parametrize(("want", "have", "expected"), [
    pytest.param(None, frozenset({R1}), [], id="absent-leaves-alone"),
    pytest.param(frozenset({R1, R2}), frozenset({R1, R2}), [], id="in-sync"),
    pytest.param(frozenset({R1, R2}), frozenset({R1}), [AddRoute(None, "mv0", 10, R2)],
                 id="add-missing"),
    pytest.param(frozenset({R1}), frozenset({R1, R2}), [RemoveRoute(None, "mv0", 10, R2)],
                 id="remove-unlisted"),
    pytest.param(frozenset({R1B}), frozenset({R1}), [ChangeRoute(None, "mv0", 10, R1, R1B)],
                 id="new-gateway-in-place"),
    pytest.param(frozenset({rt("198.51.100.0/24", "192.0.2.1", metric=5)}), frozenset({R1}),
                 [RemoveRoute(None, "mv0", 10, R1),
                  AddRoute(None, "mv0", 10, rt("198.51.100.0/24", "192.0.2.1", metric=5))],
                 id="new-metric-is-another-route"),
    pytest.param(frozenset({rt("0.0.0.0/0", "192.0.2.1", table=100)}),
                 frozenset({rt("0.0.0.0/0", "192.0.2.1")}),
                 [RemoveRoute(None, "mv0", 10, rt("0.0.0.0/0", "192.0.2.1")),
                  AddRoute(None, "mv0", 10, rt("0.0.0.0/0", "192.0.2.1", table=100))],
                 id="new-table-is-another-route"),
])
def test_routes(want: frozenset[Route] | None, have: frozenset[Route],
                expected: list[Operation]) -> None:
    assert ops_of(spec(routes=want), observed(link(), routes=have)) == expected


def test_a_new_interface_gets_its_addresses_then_its_routes() -> None:
    want = spec(addresses=A, routes=frozenset({R1}))
    assert ops_of(want, observed()) == [Create(want, ETH1.ifindex),
                                        AddAddress(None, "mv0", None, *A),
                                        AddRoute(None, "mv0", None, R1)]


def test_a_moved_interface_gets_them_again() -> None:
    want = spec(netns="blue", addresses=A, routes=frozenset({R1}))
    ops = ops_of(want, observed(link("red"), static=A, routes=frozenset({R1})))
    assert [type(op) for op in ops] == [Move, type(ops[1]), AddAddress, AddRoute]
    assert [op.ifindex for op in ops[2:] if isinstance(op, AddAddress | AddRoute)] == [
        None, None]  # looked up after the move


def test_a_recreated_interface_gets_them_again() -> None:
    seen = observed(link(), static=A)
    eth2 = Link(None, "eth2", 3, "veth", True, 1500, None)
    seen = ObservedState({None: {**seen.links[None], "eth2": eth2}},
                         addresses=seen.addresses, routes=seen.routes)
    ops = ops_of(MacvlanSpec("mv0", "eth2", addresses=A), seen)  # a new parent: recreated
    assert [op.kind for op in ops] == ["delete", "create", "add-address"]


def test_the_link_comes_up_before_its_routes_are_put_back() -> None:
    ops = ops_of(spec(addresses=A, routes=frozenset({R1})), observed(link(up=False)))
    assert [op.kind for op in ops] == ["change", "add-address", "add-route"]


@pytest.mark.parametrize("seen", [
    pytest.param(observed(link(kind="veth")), id="a-veth-of-that-name"),
    pytest.param(observed(), id="absent-state"),
])
def test_nothing_is_done_on_an_interface_macvland_does_not_own(seen: ObservedState) -> None:
    state = State.ABSENT if not seen.links[None].get("mv0") else State.UP
    assert ops_of(spec(state=state, addresses=A, routes=frozenset({R1})), seen) == []


def test_layers_not_read_decide_nothing() -> None:
    assert ops_of(spec(addresses=A), observed(link(), layered=False)) == []


def test_address_drift_is_a_drifted_verdict_that_says_what() -> None:
    p = plan(DesiredState((spec(addresses=B),)), observed(link(), static=A))
    [verdict] = p.verdicts
    assert verdict.condition is Condition.DRIFTED
    assert verdict.detail == "mv0: address + 2001:db8::10/64"


@pytest.mark.parametrize(("op", "line"), [
    pytest.param(AddAddress("web", "mv0", None, *A), "mv0 in netns web: address + 192.0.2.10/24",
                 id="add-address"),
    pytest.param(RemoveAddress(None, "mv0", 1, *A), "mv0: address - 192.0.2.10/24",
                 id="remove-address"),
    pytest.param(AddRoute(None, "mv0", 1, rt("0.0.0.0/0", "192.0.2.1", metric=7, table=100)),
                 "mv0: route + default via 192.0.2.1 metric 7 table 100", id="add-route"),
    pytest.param(RemoveRoute(None, "mv0", 1, rt("203.0.113.0/24")),
                 "mv0: route - 203.0.113.0/24", id="remove-route"),
    pytest.param(ChangeRoute(None, "mv0", 1, R1, R1B),
                 "mv0: route 198.51.100.0/24: via 192.0.2.1 -> 192.0.2.254 (in place)",
                 id="change-route"),
])
def test_operations_describe_themselves_in_one_line(op: Operation, line: str) -> None:
    assert op.describe() == line
    assert op.to_dict()["op"] == op.kind
