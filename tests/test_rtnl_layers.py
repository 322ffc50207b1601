"""The address and route codec, pure: what is encoded decodes to the same thing."""

from __future__ import annotations

import ipaddress

import pytest

from macvland.nla import attr, u32
from macvland.rtnl import (
    IFA_F_PERMANENT,
    IFA_F_TEMPORARY,
    IFA_FLAGS,
    IFA_PROTO,
    RTPROT_MACVLAND,
    RawAddress,
    address_body,
    address_index,
    decode_address,
    decode_route,
    route_body,
    route_oif,
)


@pytest.mark.parametrize("text", ["192.0.2.10/24", "2001:db8::10/64", "10.0.0.1/32"])
def test_address_round_trip(text: str) -> None:
    address = ipaddress.ip_interface(text)
    body = memoryview(address_body(7, address) + u32(IFA_FLAGS, IFA_F_PERMANENT))
    assert decode_address(body) == RawAddress(7, address, IFA_F_PERMANENT, None)
    assert address_index(body) == 7


@pytest.mark.parametrize(("text", "flags", "proto", "static"), [
    pytest.param("192.0.2.10/24", IFA_F_PERMANENT, None, True, id="ipv4-permanent"),
    pytest.param("2001:db8::10/64", 0, None, False, id="slaac-has-lifetimes"),
    pytest.param("2001:db8::99/64", IFA_F_TEMPORARY, None, False, id="temporary"),
    pytest.param("192.0.2.11/24", IFA_F_PERMANENT | 0x01, None, True,
                 id="ipv4-secondary-shares-the-temporary-bit"),
    pytest.param("fe80::1/64", IFA_F_PERMANENT, 3, False, id="kernel-link-local"),
    pytest.param("fe80::10/64", IFA_F_PERMANENT, 0, True, id="link-local-set-by-someone"),
    pytest.param("fe80::1/64", IFA_F_PERMANENT, None, False, id="link-local-old-kernel"),
])
def test_which_addresses_are_static(text: str, flags: int, proto: int | None,
                                    static: bool) -> None:
    body = address_body(7, ipaddress.ip_interface(text)) + u32(IFA_FLAGS, flags)
    if proto is not None:
        body += attr(IFA_PROTO, bytes([proto]))
    decoded = decode_address(memoryview(body))
    assert decoded is not None and decoded.static is static


@pytest.mark.parametrize(("to", "via", "metric", "table"), [
    pytest.param("198.51.100.0/24", "192.0.2.1", 0, 254, id="ipv4-gateway"),
    pytest.param("203.0.113.0/24", None, 10, 254, id="ipv4-on-link"),
    pytest.param("0.0.0.0/0", "192.0.2.1", 0, 1000, id="default-in-a-large-table"),
    pytest.param("2001:db8:1::/48", "fe80::1", 1024, 254, id="ipv6"),
])
def test_route_round_trip(to: str, via: str | None, metric: int, table: int) -> None:
    network = ipaddress.ip_network(to)
    gateway = ipaddress.ip_address(via) if via else None
    body = memoryview(route_body(9, network, gateway, metric, table))
    route = decode_route(body)
    assert route is not None
    assert (route.to, route.via, route.oif, route.metric, route.table, route.protocol) == (
        network, gateway, 9, metric, table, RTPROT_MACVLAND)
    assert route_oif(body) == 9
