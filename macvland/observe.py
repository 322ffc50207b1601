"""Read what the kernel has: one link dump per namespace, never a query per interface, and
where the spec manages addresses or routes, one address dump and one route dump there too.

Read-only. A namespace that does not exist is reported as missing (its interfaces are pending),
one that cannot be entered as unreadable; neither stops the others from being read.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from operator import itemgetter

from macvland.devices import tap_nodes
from macvland.errors import KernelError, NamespaceMissing, NamespaceUnavailable
from macvland.frozen import fields
from macvland.model import (
    DRIVER_KINDS,
    Addresses,
    IPInterface,
    Link,
    Netns,
    ObservedState,
    Route,
)
from macvland.netns import Namespaces
from macvland.rtnl import LINK_KEYS, RawLink, RtnlSocket

TYPE_CHECKING = False  # importing typing costs 5 ms of start-up; only mypy needs it
if TYPE_CHECKING:  # what the callers give; nothing checks it at run time
    from typing import Protocol

    class LinkCache(Protocol):
        """Link tables kept current some other way (netlink events), standing in for dumps."""

        converted: dict[int, tuple[RawLink, tuple[object, ...], Link]]
        """Links built in the last pass, by id of the RawLink they came from (see _link)."""

        def refresh(self) -> bool: ...
        def listen(self, netns: Netns, layers: bool = False) -> None:
            """Before a namespace is read: what changes there from now on reaches the cache."""
        def cached(self, netns: Netns) -> list[RawLink] | None: ...
        def seed(self, netns: Netns, links: list[RawLink]) -> None: ...


    class DeviceEvents(Protocol):
        """Events about device nodes (the daemon's inotify on /dev), read before /dev is read."""

        def refresh(self) -> bool: ...


def observe(namespaces: Namespaces, wanted: Iterable[Netns],
            cache: LinkCache | None = None, layered: Iterable[Netns] = (),
            devices: bool = False, device_events: DeviceEvents | None = None,
            ) -> ObservedState:
    """The links of macvland's own namespace and of every namespace in `wanted`, the
    addresses and routes of those in `layered`, and with `devices` every /dev/tapN.

    With a `cache`, a namespace whose table is current is read from it instead of dumped;
    one that is dumped seeds it. The cache listens to a namespace before it is read, so no
    change can fall between a read and the events that follow it. Likewise `device_events`
    are read just before /dev is: those queued by then are about what this read sees.
    """
    layered = frozenset(layered)
    addresses: dict[Netns, Mapping[int, Addresses]] = {}
    routes: dict[Netns, Mapping[int, frozenset[Route]]] = {}
    raw: dict[Netns, list[RawLink]] = {}
    missing: set[Netns] = set()
    unreadable: dict[Netns, str] = {}
    if cache is not None:
        cache.refresh()
    # Home first: the others' parents are resolved against it.
    order = [None, *sorted({ns for ns in wanted if ns is not None})]
    namespaces.enter(order)
    for netns in order:
        try:
            sock = namespaces.socket(netns)  # also notices a namespace that was replaced
            if cache is not None:
                cache.listen(netns, netns in layered)
            found = cache.cached(netns) if cache is not None else None
            if found is None:
                found = sock.links()
                if cache is not None:
                    cache.seed(netns, found)
            if netns in layered:
                addresses[netns], routes[netns] = _layers(sock)
            raw[netns] = found
        except NamespaceMissing:
            missing.add(netns)
        except (NamespaceUnavailable, KernelError) as error:
            unreadable[netns] = str(error)
    home_names = {link.ifindex: link.name for link in raw.get(None, ())}
    links: dict[Netns, Mapping[str, Link]] = {}
    before = cache.converted if cache is not None else {}
    converted: dict[int, tuple[RawLink, tuple[object, ...], Link]] = {}
    for netns, found in raw.items():
        home_nsid = _home_nsid(namespaces, netns, found)
        local = {link.ifindex: link.name for link in found}
        links[netns] = by_name = {}
        for link in found:
            context = (netns, *_relation(netns, link, local, home_names, home_nsid))
            # A table keeps the same RawLink object while its link does not change, so most
            # of a pass's Links are the last pass's: reuse them (the `is` makes ids safe).
            old = before.get(id(link))
            built = old[2] if old and old[0] is link and old[1] == context else _link(
                link, *context)
            converted[id(link)] = (link, context, built)
            by_name[link.name] = built
    if cache is not None:
        cache.converted = converted
    taps = None
    if devices:
        if device_events is not None:
            device_events.refresh()
        taps = tap_nodes()
    return ObservedState(links, frozenset(missing), unreadable, addresses, routes, taps)


def _layers(sock: RtnlSocket) -> tuple[dict[int, Addresses], dict[int, frozenset[Route]]]:
    """The addresses, and macvland's own routes, of one namespace by ifindex."""
    split: dict[int, tuple[set[IPInterface], set[IPInterface]]] = {}
    for address in sock.addresses():
        static, kernel = split.setdefault(address.ifindex, (set(), set()))
        (static if address.static else kernel).add(address.address)
    routes: dict[int, set[Route]] = {}
    for route in sock.routes():
        if route.oif is not None:  # a multipath route has none: never one of ours
            routes.setdefault(route.oif, set()).add(
                Route(route.to, route.via, route.metric, route.table))
    return ({i: Addresses(frozenset(s), frozenset(k)) for i, (s, k) in split.items()},
            {i: frozenset(r) for i, r in routes.items()})


def _home_nsid(namespaces: Namespaces, netns: Netns, found: list[RawLink]) -> int | None:
    # Only asked when some link there has its lower device in another namespace.
    if netns is None or all(link.link_netnsid is None for link in found):
        return None
    return namespaces.home_nsid(netns)


def _relation(netns: Netns, raw: RawLink, local: Mapping[int, str],
              home_names: Mapping[int, str], home_nsid: int | None,
              ) -> tuple[str | None, str | None, str]:
    """(parent, lower, shown_as): where the link's lower device is, resolved to a name."""
    parent = lower = None
    # Some devices name themselves as their link; across namespaces, though, the lower's
    # ifindex may equal ours by coincidence (each namespace numbers its own).
    if raw.link is not None and (raw.link != raw.ifindex or raw.link_netnsid is not None):
        if raw.link_netnsid is None:
            lower = local.get(raw.link, f"if{raw.link}")
            parent = lower if netns is None else None
        elif home_nsid is not None and raw.link_netnsid == home_nsid:
            parent = lower = home_names.get(raw.link, f"if{raw.link}")
        else:
            lower = f"if{raw.link}@nsid {raw.link_netnsid}"
    if raw.link is None:
        shown_as = raw.name
    elif raw.link_netnsid is not None:
        shown_as = f"{raw.name}@if{raw.link} link-netnsid {raw.link_netnsid}"
    else:
        shown_as = f"{raw.name}@{local.get(raw.link, f'if{raw.link}')}"
    return parent, lower, shown_as


_OWN_FIELDS = ("netns", "name", "ifindex", "kind", "up", "alias", "parent", "lower", "shown_as")
_ARRANGE = itemgetter(*[(*_OWN_FIELDS, *LINK_KEYS).index(f.name) for f in fields(Link)])
"""Link's arguments, in its fields' order, from _OWN_FIELDS' values followed by a RawLink's
settings (LINK_KEYS' order): one call, where keywords cost twice the Link itself."""
assert len(fields(Link)) == len(_OWN_FIELDS) + len(LINK_KEYS), "a value without a Link field"


def _link(raw: RawLink, netns: Netns, parent: str | None, lower: str | None,
          shown_as: str) -> Link:
    return Link(*_ARRANGE((netns, raw.name, raw.ifindex, raw.kind, raw.up, raw.alias,
                           parent if raw.kind in DRIVER_KINDS else None, lower, shown_as,
                           *raw.settings)))
