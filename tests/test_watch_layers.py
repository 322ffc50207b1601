"""Address and route events against the real kernel: which ones wake the daemon."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from macvland.observe import observe
from macvland.rtnl import RTPROT_MACVLAND
from macvland.watch import Interest, LinkWatcher, Trigger
from tests.conftest import Lab


@pytest.fixture
def watched(lab: Lab) -> Iterator[tuple[LinkWatcher, int]]:
    lab.ip("link", "add", "mv0", "link", "eth1", "up", "type", "macvlan")
    lab.ip("link", "add", "mv1", "link", "eth1", "up", "type", "macvlan")
    index = lab.links()["mv0"]["ifindex"]
    rings: list[Trigger] = []
    links = LinkWatcher(lab.namespaces, rings.append)
    names = frozenset({"mv0", "mv1"})
    links.watch({None: Interest(names, frozenset({index}), layered=frozenset({index}))})
    links.start()
    observe(lab.namespaces, [], links)  # seeds the link table: link events that change
    links.refresh()                     # nothing the planner reads then matter not
    yield links, index
    links.stop()


@pytest.mark.parametrize(("change", "matters"), [
    pytest.param(("address", "add", "192.0.2.10/24", "dev", "mv0"), True,
                 id="static-address-on-a-layered-link"),
    pytest.param(("address", "add", "192.0.2.11/24", "dev", "mv1"), False,
                 id="address-on-a-link-whose-layers-are-left-alone"),
    pytest.param(("address", "add", "2001:db8::1/64", "dev", "mv0", "valid_lft", "100",
                  "preferred_lft", "100"), False, id="address-with-lifetimes-is-not-static"),
    pytest.param(("route", "add", "198.51.100.0/24", "dev", "mv0", "proto",
                  str(RTPROT_MACVLAND)), True, id="route-of-macvland"),
    pytest.param(("route", "add", "198.51.100.0/24", "dev", "mv0", "proto", "static"), False,
                 id="route-of-someone-else"),
])
def test_which_events_matter(lab: Lab, watched: tuple[LinkWatcher, int],
                             change: tuple[str, ...], matters: bool) -> None:
    links, _ = watched
    lab.ip(*change)
    # The kernel queues the events before `ip` gets its ack: one refresh sees them.
    assert links.refresh() is matters


def test_a_namespace_without_layers_is_not_subscribed_to_them(
        lab: Lab, watched: tuple[LinkWatcher, int]) -> None:
    links, index = watched
    links.watch({None: Interest(frozenset({"mv0"}), frozenset({index}))})
    lab.ip("address", "add", "192.0.2.10/24", "dev", "mv0")
    assert links.refresh() is False
    links.watch({None: Interest(frozenset({"mv0"}), frozenset({index}), frozenset({index}))})
    lab.ip("address", "del", "192.0.2.10/24", "dev", "mv0")
    assert links.refresh() is True


def test_an_address_change_between_the_first_dump_and_watch_is_an_event(lab: Lab) -> None:
    # As for links (test_watch.py): the first pass reads the addresses before the loop says
    # whose matter; an address added in between must not wait for the resync.
    lab.ip("link", "add", "mv0", "link", "eth1", "up", "type", "macvlan")
    index = lab.links()["mv0"]["ifindex"]
    links = LinkWatcher(lab.namespaces, lambda trigger: None)
    try:
        links.start()
        observe(lab.namespaces, [], links, layered=[None])
        lab.ip("address", "add", "192.0.2.10/24", "dev", "mv0")
        links.watch({None: Interest(frozenset({"mv0"}), frozenset({index}), frozenset({index}))})
        assert links.refresh() is True
    finally:
        links.stop()
