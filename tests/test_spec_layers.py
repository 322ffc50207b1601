"""Reading `addresses` and `routes`: what they mean, and every bad one reported at its place."""

from __future__ import annotations

import ipaddress

import pytest

from macvland.errors import SpecError, SpecProblem
from macvland.model import Route
from macvland.spec import parse_spec

FILE = "macvland.yaml"


def document(*lines: str) -> str:
    body = "\n".join(f"    {line}" for line in lines)
    return f"version: 1\ninterfaces:\n  - name: mv0\n    parent: eth1\n{body}\n"


def problems_of(text: str) -> list[SpecProblem]:
    with pytest.raises(SpecError) as caught:
        parse_spec(text, FILE)
    return caught.value.problems


def test_absent_means_left_alone_and_empty_means_none() -> None:
    [left] = parse_spec(document(), FILE).interfaces
    assert (left.addresses, left.routes) == (None, None)
    [empty] = parse_spec(document("addresses: []", "routes: []"), FILE).interfaces
    assert (empty.addresses, empty.routes) == (frozenset(), frozenset())


def test_addresses_and_routes_parse_to_what_the_kernel_will_hold() -> None:
    [spec] = parse_spec(document(
        "addresses: [192.0.2.10/24, 2001:DB8::10/64]",
        "routes:",
        "  - to: default",
        "    via: 192.0.2.1",
        "  - {to: 198.51.100.0/24, via: 192.0.2.254, metric: 10, table: 100}",
        "  - to: 2001:db8:1::/48",
        "  - to: 203.0.113.7",
    ), FILE).interfaces
    assert spec.addresses == frozenset({ipaddress.ip_interface("192.0.2.10/24"),
                                        ipaddress.ip_interface("2001:db8::10/64")})
    n, a = ipaddress.ip_network, ipaddress.ip_address
    assert spec.routes == frozenset({
        Route(n("0.0.0.0/0"), a("192.0.2.1"), 0, 254),
        Route(n("198.51.100.0/24"), a("192.0.2.254"), 10, 100),
        Route(n("2001:db8:1::/48"), None, 1024, 254),  # the kernel's IPv6 default metric
        Route(n("203.0.113.7/32"), None, 0, 254),
    })


# (id, lines of the interface, line, column, path, a part of the message)
BAD = [
    ("no-prefix-length", ["addresses: [192.0.2.10]"], 5, 17, "interfaces[0].addresses[0]",
     "has no prefix length (write it, like 192.0.2.10/24)"),
    ("not-an-address", ["addresses: [192.0.2.300/24]"], 5, 17, "interfaces[0].addresses[0]",
     "'192.0.2.300' is not an IPv4 or IPv6 address"),
    ("prefix-too-long", ["addresses: [2001:db8::1/129]"], 5, 17, "interfaces[0].addresses[0]",
     "the prefix length must be 0..128"),
    ("network-address", ["addresses: [192.0.2.0/24]"], 5, 17, "interfaces[0].addresses[0]",
     "is the network address of 192.0.2.0/24"),
    ("multicast", ["addresses: [239.1.1.1/24]"], 5, 17, "interfaces[0].addresses[0]",
     "is a multicast address"),
    ("twice", ["addresses: [192.0.2.10/24, 192.0.2.10/24]"], 5, 32,
     "interfaces[0].addresses[1]", "listed twice"),
    ("host-bits", ["routes: [{to: 198.51.100.7/24}]"], 5, 19, "interfaces[0].routes[0].to",
     "has host bits set (the prefix is 198.51.100.0/24)"),
    ("default-without-via", ["routes: [{to: default}]"], 5, 19, "interfaces[0].routes[0].to",
     "'default' needs 'via' to say its family"),
    ("via-of-another-family", ["routes: [{to: 2001:db8::/32, via: 192.0.2.1}]"], 5, 39,
     "interfaces[0].routes[0].via", "192.0.2.1 is IPv4, but 'to' (2001:db8::/32) is IPv6"),
    ("unknown-key", ["routes: [{to: 10.0.0.0/8, gateway: 192.0.2.1}]"], 5, 14,
     "interfaces[0].routes[0]", "unknown key 'gateway'"),
    ("missing-to", ["routes: [{via: 192.0.2.1}]"], 5, 14, "interfaces[0].routes[0]",
     "missing required key 'to'"),
    ("metric-out-of-range", ["routes: [{to: 10.0.0.0/8, metric: -1}]"], 5, 39,
     "interfaces[0].routes[0].metric", "out of range 0..4294967295"),
    ("local-table", ["routes: [{to: 10.0.0.0/8, table: 255}]"], 5, 38,
     "interfaces[0].routes[0].table", "the kernel's local table"),
    ("not-a-mapping", ["routes: [10.0.0.0/8]"], 5, 14, "interfaces[0].routes[0]",
     "expected a mapping with keys to, via, metric, table"),
    ("routes-on-a-down-interface", ["state: down", "routes: [{to: 10.0.0.0/8}]"], 6, 5,
     "interfaces[0].routes", "routes need state: up"),
    ("one-route-per-key", ["routes: [{to: 10.0.0.0/8, via: 192.0.2.1},",
                           "         {to: 10.0.0.0/8, via: 192.0.2.2}]"], 6, 14,
     "interfaces[0].routes[1]", "has the destination, metric and table of the route on line 5"),
]


@pytest.mark.parametrize(("lines", "line", "column", "path", "message"),
                         [pytest.param(*case[1:], id=case[0]) for case in BAD])
def test_each_problem_is_reported_at_its_place(lines: list[str], line: int, column: int,
                                               path: str, message: str) -> None:
    found = [(p.line, p.column, p.path) for p in problems_of(document(*lines))
             if message in p.message]
    assert found == [(line, column, path)], problems_of(document(*lines))


def test_every_problem_of_a_route_is_reported_at_once() -> None:
    found = problems_of(document("routes: [{to: 10.0.0.0/33, via: nowhere, metric: x}]"))
    assert [p.path for p in found] == [f"interfaces[0].routes[0].{k}"
                                      for k in ("to", "via", "metric")]


def test_the_same_route_on_two_interfaces_of_one_namespace_is_an_error() -> None:
    text = ("version: 1\ninterfaces:\n"
            "  - {name: mv0, parent: eth1, routes: [{to: 10.0.0.0/8}]}\n"
            "  - {name: mv1, parent: eth1, routes: [{to: 10.0.0.0/8}]}\n"
            "  - {name: mv2, parent: eth1, netns: red, routes: [{to: 10.0.0.0/8}]}\n")
    [problem] = problems_of(text)
    assert (problem.line, problem.path) == (4, "interfaces[1]")
    assert "also a route of interfaces[0] (line 3)" in problem.message
