"""The layers above the link, on the real kernel: addresses and routes, planned and applied by
macvland, checked with iproute2."""

from __future__ import annotations

import ipaddress
import json
from typing import Any

from macvland.model import IPInterface, MacvlanSpec, Route, State, default_metric
from macvland.ops import AddAddress, AddRoute, RemoveAddress, RemoveRoute
from macvland.plan import Condition
from macvland.rtnl import RTPROT_MACVLAND
from tests.conftest import Lab
from tests.helpers import wait_for


def addrs(*text: str) -> frozenset[IPInterface]:
    return frozenset(ipaddress.ip_interface(t) for t in text)


def route(to: str, via: str | None = None, metric: int | None = None,
          table: int = 254) -> Route:
    network = ipaddress.ip_network(to)
    return Route(network, ipaddress.ip_address(via) if via else None,
                 default_metric(network.version) if metric is None else metric, table)


def spec(name: str = "mv0", **settings: Any) -> MacvlanSpec:
    return MacvlanSpec(name=name, parent="eth1", **settings)


def converge(lab: Lab, *specs: MacvlanSpec) -> None:
    result = lab.reconcile(*specs)
    failures = [(o.operation.describe(), str(o.error)) for o in result.outcomes if not o.ok]
    assert not failures
    assert result.converged, (result.remaining.operations, result.remaining.verdicts)


def kernel_addresses(lab: Lab, name: str, netns: str | None = None) -> dict[str, dict[str, Any]]:
    """iproute2's view of an interface's addresses: 'address/prefix' -> its entry."""
    out = lab.ip("-j", "address", "show", "dev", name, netns=netns).stdout
    [link] = json.loads(out)
    return {f"{a['local']}/{a['prefixlen']}": a for a in link["addr_info"]}


def kernel_routes(lab: Lab, *args: str, netns: str | None = None) -> list[dict[str, Any]]:
    routes: list[dict[str, Any]] = []
    for family in ("-4", "-6"):
        out = lab.ip(family, "-j", "route", "show", "table", "all", *args, netns=netns).stdout
        routes += json.loads(out)
    return routes


def ours(lab: Lab, name: str, netns: str | None = None) -> set[tuple[str, str | None]]:
    """(destination, gateway) of the routes with macvland's protocol number via `name`."""
    return {(r["dst"], r.get("gateway")) for r in kernel_routes(lab, "dev", name, netns=netns)
            if r.get("protocol") in (str(RTPROT_MACVLAND), "macvland")}


def link_local(lab: Lab, name: str) -> list[str]:
    return [a for a in kernel_addresses(lab, name) if a.startswith("fe80:")]


def test_addresses_are_set_when_the_interface_is_created(lab: Lab) -> None:
    converge(lab, spec(addresses=addrs("192.0.2.10/24", "2001:db8::10/64")))

    assert {"192.0.2.10/24", "2001:db8::10/64"} <= set(kernel_addresses(lab, "mv0"))


def test_the_kernels_own_addresses_are_never_removed(lab: Lab) -> None:
    lab.ip("link", "set", "eth1-peer", "up")  # carrier: the kernel makes a link-local address
    converge(lab, spec(addresses=addrs("192.0.2.10/24")))
    wait_for(lambda: link_local(lab, "mv0"), "mv0's link-local address")

    converge(lab, spec(addresses=addrs("192.0.2.10/24")))

    assert link_local(lab, "mv0")


def test_addresses_are_reconciled_in_place_and_kernel_ones_kept(lab: Lab) -> None:
    converge(lab, spec(addresses=addrs("192.0.2.10/24")))
    ifindex = lab.links()["mv0"]["ifindex"]
    # Out of band (in this order: deleting a primary address takes its secondaries along).
    lab.ip("address", "del", "192.0.2.10/24", "dev", "mv0")
    lab.ip("address", "add", "192.0.2.99/24", "dev", "mv0")

    result = lab.reconcile(spec(addresses=addrs("192.0.2.10/24", "198.51.100.1/25")))

    assert [(type(op), str(op.address)) for op in result.plan.operations
            if isinstance(op, AddAddress | RemoveAddress)] == [
        (RemoveAddress, "192.0.2.99/24"), (AddAddress, "192.0.2.10/24"),
        (AddAddress, "198.51.100.1/25")]
    found = kernel_addresses(lab, "mv0")
    assert {"192.0.2.10/24", "198.51.100.1/25"} <= set(found)
    assert "192.0.2.99/24" not in found
    assert lab.links()["mv0"]["ifindex"] == ifindex
    assert result.converged


def test_addresses_left_out_are_left_alone(lab: Lab) -> None:
    converge(lab, spec())
    lab.ip("address", "add", "192.0.2.99/24", "dev", "mv0")
    converge(lab, spec())
    assert "192.0.2.99/24" in kernel_addresses(lab, "mv0")


def test_an_interface_macvland_does_not_own_keeps_its_addresses(lab: Lab) -> None:
    lab.ip("link", "add", "mv0", "type", "veth", "peer", "name", "mv0-peer")
    lab.ip("address", "add", "192.0.2.99/24", "dev", "mv0")

    result = lab.reconcile(spec(addresses=addrs("192.0.2.10/24"), routes=frozenset(
        {route("198.51.100.0/24", "192.0.2.1")})))

    assert result.plan.verdicts[0].condition is Condition.CONFLICT
    assert result.plan.operations == ()
    assert set(kernel_addresses(lab, "mv0")) >= {"192.0.2.99/24"}
    assert "192.0.2.10/24" not in kernel_addresses(lab, "mv0")


def test_addresses_and_routes_follow_a_move(lab: Lab) -> None:
    a, b = lab.add_netns("a"), lab.add_netns("b")
    layers: dict[str, Any] = {"addresses": addrs("192.0.2.10/24"),
                              "routes": frozenset({route("198.51.100.0/24", "192.0.2.1")})}
    converge(lab, spec(netns=a, **layers))

    converge(lab, spec(netns=b, **layers))

    assert "192.0.2.10/24" in kernel_addresses(lab, "mv0", b)
    assert ours(lab, "mv0", b) == {("198.51.100.0/24", "192.0.2.1")}


def test_routes_carry_the_mark_and_foreign_routes_stay(lab: Lab) -> None:
    lab.ip("address", "add", "192.0.2.2/24", "dev", "eth1")
    wanted = frozenset({route("198.51.100.0/24", "192.0.2.1"), route("203.0.113.0/24"),
                        route("0.0.0.0/0", "192.0.2.1", metric=50, table=100),
                        route("2001:db8:1::/48", "fe80::1")})
    converge(lab, spec(addresses=addrs("192.0.2.10/24", "2001:db8::10/64"), routes=wanted))
    lab.ip("route", "add", "192.0.2.128/25", "dev", "mv0", "proto", "static")

    assert ours(lab, "mv0") == {("198.51.100.0/24", "192.0.2.1"), ("203.0.113.0/24", None),
                                ("default", "192.0.2.1"), ("2001:db8:1::/48", "fe80::1")}
    [default] = json.loads(lab.ip("-4", "-j", "route", "show", "table", "100").stdout)
    assert default["metric"] == 50

    # Change one gateway, drop two, keep one: the static route is never touched.
    changed = frozenset({route("198.51.100.0/24", "192.0.2.254"), route("203.0.113.0/24")})
    result = lab.reconcile(spec(addresses=addrs("192.0.2.10/24"), routes=changed))

    assert [op.kind for op in result.plan.operations] == [
        "remove-address", "remove-route", "remove-route", "change-route"]
    assert ours(lab, "mv0") == {("198.51.100.0/24", "192.0.2.254"), ("203.0.113.0/24", None)}
    assert ("192.0.2.128/25", None) in {(r["dst"], r.get("gateway"))
                                        for r in kernel_routes(lab, "dev", "mv0")}
    assert result.converged


def test_a_route_taken_by_someone_else_fails_for_its_interface_only(lab: Lab) -> None:
    lab.ip("address", "add", "192.0.2.2/24", "dev", "eth1")
    lab.ip("route", "add", "198.51.100.0/24", "via", "192.0.2.1", "dev", "eth1")

    result = lab.reconcile(
        spec("mv0", addresses=addrs("192.0.2.10/24"),
             routes=frozenset({route("198.51.100.0/24", "192.0.2.1")})),
        spec("mv1", addresses=addrs("192.0.2.11/24"),
             routes=frozenset({route("203.0.113.0/24", "192.0.2.1")})))

    failed = [o for o in result.outcomes if o.error]
    assert [(o.operation.name, type(o.operation)) for o in failed] == [("mv0", AddRoute)]
    assert "File exists" in str(failed[0].error)
    assert ours(lab, "mv1") == {("203.0.113.0/24", "192.0.2.1")}
    assert ("198.51.100.0/24", "192.0.2.1") in {
        (r["dst"], r.get("gateway")) for r in kernel_routes(lab, "dev", "eth1")}
    assert not result.converged


def test_drift_is_repaired_and_then_nothing_is_written(lab: Lab) -> None:
    wanted = spec(addresses=addrs("192.0.2.10/24"),
                  routes=frozenset({route("198.51.100.0/24", "192.0.2.1")}))
    converge(lab, wanted)
    lab.ip("link", "set", "mv0", "down")  # IPv4 drops the route with it
    lab.ip("address", "flush", "dev", "mv0")

    result = lab.reconcile(wanted)

    assert [op.kind for op in result.plan.operations] == ["change", "add-address", "add-route"]
    assert result.converged
    writes = lab.namespaces.writes
    again = lab.reconcile(wanted)
    assert again.plan.operations == () and lab.namespaces.writes == writes


def test_an_empty_route_list_removes_only_macvlands_routes(lab: Lab) -> None:
    converge(lab, spec(addresses=addrs("192.0.2.10/24"),
                       routes=frozenset({route("198.51.100.0/24", "192.0.2.1")})))
    lab.ip("route", "add", "203.0.113.0/24", "dev", "mv0")

    result = lab.reconcile(spec(addresses=addrs("192.0.2.10/24"), routes=frozenset()))

    assert [type(op) for op in result.plan.operations] == [RemoveRoute]
    assert ours(lab, "mv0") == set()
    assert "203.0.113.0/24" in {r["dst"] for r in kernel_routes(lab, "dev", "mv0")}


def test_state_down_keeps_the_addresses(lab: Lab) -> None:
    converge(lab, spec(state=State.DOWN, addresses=addrs("192.0.2.10/24")))
    assert "192.0.2.10/24" in kernel_addresses(lab, "mv0")
