"""What wakes the daemon: the spec's files, /run/netns, and netlink link, address and route
events (macvtaps' device nodes: tapwatch.py).

Events carry no orders to the loop: a watcher only calls `wake(trigger)`, and the loop then
compares whole states, so an event lost or merged costs latency, never correctness. The link
watcher also keeps the link tables its events describe, so a pass need not dump them again.
"""

from __future__ import annotations

import errno
import logging
import os
import select
import socket
import threading
from collections.abc import Callable, Mapping
from enum import StrEnum

from watchdog.events import (
    EVENT_TYPE_CLOSED_NO_WRITE,
    EVENT_TYPE_OPENED,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.api import ObservedWatch

from macvland.errors import NamespaceUnavailable
from macvland.frozen import frozen
from macvland.model import DRIVER_KINDS, Link, Netns, netns_label
from macvland.netns import Namespaces
from macvland.rtnl import (
    RTM_DELADDR,
    RTM_DELLINK,
    RTM_DELROUTE,
    RTM_NEWADDR,
    RTM_NEWLINK,
    RTM_NEWROUTE,
    RTPROT_MACVLAND,
    SOL_NETLINK,
    RawLink,
    decode_address,
    decode_link,
    decode_route,
    link_index,
    messages,
)

log = logging.getLogger("macvland")

RTMGRP_LINK = 0x1
SO_RCVBUFFORCE = 33
NETLINK_ADD_MEMBERSHIP = 1
NETLINK_DROP_MEMBERSHIP = 2
RTNLGRP_LAYERS = (5, 7, 9, 11)
"""RTNLGRP_IPV4_IFADDR, RTNLGRP_IPV4_ROUTE, RTNLGRP_IPV6_IFADDR, RTNLGRP_IPV6_ROUTE."""


class Trigger(StrEnum):
    """Why a pass runs, most telling first (a pass with several is named by the first)."""

    STARTUP = "startup"
    SPEC = "spec change"
    NETNS = "namespace appeared"
    DRIFT = "drift"
    RESYNC = "resync"
    RETRY = "retry"


Wake = Callable[[Trigger], None]

# Reading a file makes events too; reacting to them would make the daemon wake on its own reads.
_READ_ONLY_EVENTS = frozenset({EVENT_TYPE_OPENED, EVENT_TYPE_CLOSED_NO_WRITE})


class _Handler(FileSystemEventHandler):
    def __init__(self, react: Callable[[FileSystemEvent], None]) -> None:
        self._react = react

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type not in _READ_ONLY_EVENTS:
            self._react(event)


class FileWatcher:
    """The spec's directory and /run/netns, through watchdog (inotify).

    The spec's directory is watched, not the file: that sees edits in place, a temporary file
    renamed over it, a ConfigMap-style `..data` symlink swap and delete-then-create alike. The
    directory's parent is watched too, because replacing the directory itself kills the watch
    on it silently: when that happens the watch is armed again. Where the spec is a symlink,
    the directory it resolves to is watched as well, and followed when the link moves.
    """

    def __init__(self, config: str, netns_dir: str, wake: Wake,
                 spec_changed: Callable[[], None]) -> None:
        self._wake = wake
        self._spec_changed = spec_changed
        """Told of events about the spec: it decides when the writer is done (reader.py)."""
        self._observer = Observer()
        self._lock = threading.Lock()
        self._config = os.path.abspath(config)
        self._netns_dir = netns_dir
        self._watches: dict[str, ObservedWatch] = {}
        self._spec_dirs: dict[str, Callable[[FileSystemEvent], None]] = {}
        self._netns_names: frozenset[str] = frozenset()

    def watch_namespaces(self, names: frozenset[str]) -> None:
        """The /run/netns entries whose coming and going matters; others wake nobody."""
        self._netns_names = names

    def start(self) -> None:
        self.follow()
        if os.path.isdir(self._netns_dir):
            self._arm(self._netns_dir, self._on_netns)
        else:
            # The first `ip netns add` on a machine creates the directory; until then, watch
            # its (busy) parent for that alone.
            self._arm(os.path.dirname(self._netns_dir), self._on_netns_parent)
        self._observer.start()

    def stop(self) -> None:
        self._observer.stop()
        self._observer.join(timeout=5)

    def _directories(self) -> dict[str, Callable[[FileSystemEvent], None]]:
        """Where the spec's bytes live (the named place and, through symlinks, the real one),
        and their parents, each with what to do on an event there."""
        content = set()
        for path in {self._config, os.path.realpath(self._config)}:
            content.add(path if os.path.isdir(path) else os.path.dirname(path))
        parents = {os.path.dirname(d) for d in content} - content
        return {**{d: self._on_spec_parent for d in parents},
                **{d: self._on_spec for d in content}}

    def follow(self) -> None:
        """Watch where the spec lives now: a symlink may have been pointed elsewhere."""
        wanted = self._directories()
        if wanted == self._spec_dirs:
            return
        for directory, react in wanted.items():
            if self._spec_dirs.get(directory) != react:
                self._arm(directory, react)
        for gone in set(self._spec_dirs) - set(wanted):
            self._disarm(gone)
        self._spec_dirs = wanted

    def _arm(self, path: str, react: Callable[[FileSystemEvent], None]) -> None:
        """(Re)schedule a watch on `path`; a directory that does not exist yet is skipped."""
        self._disarm(path)
        with self._lock:
            if os.path.isdir(path):
                self._watches[path] = self._observer.schedule(_Handler(react), path)

    def _disarm(self, path: str) -> None:
        with self._lock:
            old = self._watches.pop(path, None)
            if old is not None:
                self._observer.unschedule(old)

    def _on_spec(self, _event: FileSystemEvent) -> None:
        self._spec_changed()

    def _on_spec_parent(self, event: FileSystemEvent) -> None:
        # Only events about a watched directory matter here: it was replaced, and the watch
        # on it died with it.
        for directory in _paths(event):
            if self._spec_dirs.get(directory) == self._on_spec:
                self._arm(directory, self._on_spec)
                self._spec_changed()

    def _on_netns(self, event: FileSystemEvent) -> None:
        if any(os.path.basename(p) in self._netns_names for p in _paths(event)):
            self._wake(Trigger.NETNS)

    def _on_netns_parent(self, event: FileSystemEvent) -> None:
        if self._netns_dir in _paths(event):
            self._arm(self._netns_dir, self._on_netns)
            self._disarm(os.path.dirname(self._netns_dir))
            self._wake(Trigger.NETNS)


def _paths(event: FileSystemEvent) -> set[str]:
    """The paths an event is about: where it happened and, for a move, where it went."""
    return {os.fsdecode(p) for p in (event.src_path, getattr(event, "dest_path", "")) if p}


@frozen
class Interest:
    """The links of one namespace whose events matter: by name, and by ifindex for renames."""

    names: frozenset[str] = frozenset()
    ifindexes: frozenset[int] = frozenset()
    layered: frozenset[int] = frozenset()
    """Links whose addresses or routes macvland manages: their address and route events
    matter too (a namespace without any is not subscribed to those at all)."""


class _Subscription:
    def __init__(self, sock: socket.socket, identity: tuple[int, int], interest: Interest) -> None:
        self.sock = sock
        self.identity = identity
        self.interest = Interest()
        self.layers = False
        """Subscribed to address and route events."""
        self.want(interest)
        self.table: dict[int, RawLink] | None = None
        """The namespace's links, kept current from events once seeded by a dump."""

    def want(self, interest: Interest) -> None:
        self.interest = interest
        self.subscribe_layers(bool(interest.layered))

    def subscribe_layers(self, layers: bool) -> None:
        if layers != self.layers:
            how = NETLINK_ADD_MEMBERSHIP if layers else NETLINK_DROP_MEMBERSHIP
            for group in RTNLGRP_LAYERS:
                self.sock.setsockopt(SOL_NETLINK, how, group)
            self.layers = layers


class LinkWatcher:
    """Netlink link events (RTNLGRP_LINK) in every namespace that holds managed interfaces,
    and the link tables they keep current.

    A thread only rings the bell: it waits until some socket is readable, wakes the loop, and
    waits for the loop to read. The loop reads (`refresh`) before it looks at the kernel:
    each event is a full RTM_NEWLINK/RTM_DELLINK message, so applying the queued events in
    order to a table seeded by one dump gives the kernel's current state without another dump.
    A namespace is subscribed to before its first dump (`listen`), never after it. The kernel
    queues the events a request causes before it acknowledges the request, so after
    macvland's own writes a refresh sees them all. A socket that overflowed (ENOBUFS) lost
    events: its table is dropped, and the next pass dumps that namespace again.
    """

    def __init__(self, namespaces: Namespaces, wake: Wake) -> None:
        self._namespaces = namespaces
        self._wake = wake
        self._subscriptions: dict[Netns, _Subscription] = {}
        self._lock = threading.Lock()
        self._interrupt_r, self._interrupt_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        self._read = threading.Event()
        self.converted: dict[int, tuple[RawLink, tuple[object, ...], Link]] = {}
        self.overflows = 0
        """Event sockets that overflowed (ENOBUFS) so far, for the metrics."""
        self._stopping = False
        self._thread = threading.Thread(target=self._ring, name="macvland-links", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping = True
        self._read.set()
        os.write(self._interrupt_w, b"x")
        self._thread.join(timeout=5)
        with self._lock:
            for sub in self._subscriptions.values():
                sub.sock.close()
            self._subscriptions.clear()
        os.close(self._interrupt_r)
        os.close(self._interrupt_w)

    def watch(self, interest: Mapping[Netns, Interest]) -> bool:
        """Subscribe in exactly these namespaces; reopen where the namespace was replaced.

        True when a subscription is new: what changed there between the caller's last read
        and now was announced to nobody. (A namespace that `observe` read through this cache
        was subscribed before it was read, by `listen`; this is for one it did not read, such
        as a namespace that appeared since.)
        """
        opened = False
        with self._lock:
            for netns in list(self._subscriptions):
                sub = self._subscriptions[netns]
                if netns not in interest or self._namespaces.identity(netns) != sub.identity:
                    sub.sock.close()
                    del self._subscriptions[netns]
            for netns, wanted in interest.items():
                if netns in self._subscriptions:
                    self._subscriptions[netns].want(wanted)
                elif self._subscribe(netns, wanted) is not None:
                    opened = True
        os.write(self._interrupt_w, b"x")
        return opened

    def listen(self, netns: Netns, layers: bool = False) -> None:
        """Receive the link events of `netns` (with `layers`, its address and route events
        too) from now on: called before a dump, so that whatever changes after the dump is
        an event. Subscribed only after the pass that dumped it (by `watch`), a namespace
        would lose a change made in between until the next resync (subscribe, then list:
        the order of Kubernetes' informers). What is not yet of interest wakes nobody until
        `watch` says it is; its events still keep the table current."""
        with self._lock:
            sub = self._subscriptions.get(netns)
            if sub is not None and self._namespaces.identity(netns) != sub.identity:
                sub.sock.close()  # the namespace was replaced: listen in the new one
                del self._subscriptions[netns]
                sub = None
            if sub is None:
                sub = self._subscribe(netns, Interest())
                if sub is None:
                    return
                os.write(self._interrupt_w, b"x")  # the bell thread selects on it too
            if layers:
                sub.subscribe_layers(True)

    def _subscribe(self, netns: Netns, interest: Interest) -> _Subscription | None:
        """A new subscription in `netns` (the lock held); None if it cannot be entered."""
        try:
            sock, identity = self._namespaces.open_event_socket(netns)
        except (NamespaceUnavailable, OSError):
            return None  # the /run/netns watch or a retry brings it back
        # Room for the events of a large pass (about three per link created).
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 8 << 20)
        except PermissionError:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        sock.bind((0, RTMGRP_LINK))
        sock.setblocking(False)
        sub = self._subscriptions[netns] = _Subscription(sock, identity, interest)
        return sub

    # --- the cache observe() reads ---

    def cached(self, netns: Netns) -> list[RawLink] | None:
        sub = self._subscriptions.get(netns)
        if sub is None or sub.table is None:
            return None
        if self._namespaces.identity(netns) != sub.identity:
            return None  # the namespace was replaced; listen() subscribes in the new one
        # The kernel announces a macvlan's mode, flags, source MACs and alias changing only
        # while it is up (netdev_state_change): a down one is read again, on its own while
        # they are few (a link being deleted announces itself down first, and a dump of a
        # thousand for it would be what a repair waits for), else by a dump.
        down = [link.ifindex for link in sub.table.values()
                if link.kind in DRIVER_KINDS and not link.up]
        if len(down) > _REREAD_DOWN:
            return None
        if down:
            sock = self._namespaces.socket(netns)
            for ifindex in down:
                current = sock.link_at(ifindex)
                if current is None:
                    del sub.table[ifindex]
                elif current != sub.table[ifindex]:
                    sub.table[ifindex] = current
        return list(sub.table.values())

    def seed(self, netns: Netns, links: list[RawLink]) -> None:
        """A fresh dump; events read after it bring it up to date (they are never older than
        the state the dump missed, and each carries a link's whole state)."""
        sub = self._subscriptions.get(netns)
        if sub is not None:
            sub.table = {link.ifindex: link for link in links}

    def invalidate(self) -> None:
        """Forget every table: the next pass dumps everything (a resync)."""
        for sub in self._subscriptions.values():
            sub.table = None

    def refresh(self) -> bool:
        """Read every queued event into the tables; True if one was about a link of interest."""
        relevant = False
        with self._lock:
            for netns, sub in self._subscriptions.items():
                relevant |= self._read_events(netns, sub)
        self._read.set()
        return relevant

    def _read_events(self, netns: Netns, sub: _Subscription) -> bool:
        relevant = False
        # Each event carries a link's whole state, so only its last queued one needs decoding:
        # creating 1,000 links queues about 3,000 events.
        latest: dict[int, tuple[int, memoryview]] = {}
        while True:
            try:
                data = sub.sock.recv(1 << 16)
            except BlockingIOError:
                break
            except OSError as error:
                if error.errno != errno.ENOBUFS:
                    raise
                log.warning(f"netlink events of netns {netns_label(netns)} were lost (ENOBUFS); "
                            "reading it again")
                sub.table = None
                self.overflows += 1
                relevant = True
                continue
            for kind, _flags, _seq, body in messages(data):
                if kind in (RTM_NEWLINK, RTM_DELLINK):
                    latest[link_index(body)] = (kind, body)
                elif not relevant and kind in _LAYER_EVENTS:
                    relevant = _layer_event_matters(kind, body, sub.interest.layered)
        interest = sub.interest
        for kind, body in latest.values():
            link = decode_link(body)
            changed = True
            if sub.table is not None:
                # Operational state and carrier come and go (in batches, for a second after
                # links are created): what the planner reads did not change.
                changed = sub.table.get(link.ifindex) != link or kind == RTM_DELLINK
                if kind == RTM_NEWLINK and changed:
                    # An equal one stays: observe() reuses its Link, and the plan memo
                    # reuses a plan while every Link object is the same (an unchanged
                    # object replaced by each carrier event meant a plan from scratch).
                    sub.table[link.ifindex] = link
                elif kind == RTM_DELLINK:
                    sub.table.pop(link.ifindex, None)
            relevant |= changed and (link.name in interest.names
                                     or link.ifindex in interest.ifindexes)
        return relevant

    def _ring(self) -> None:
        while not self._stopping:
            with self._lock:
                fds = [sub.sock.fileno() for sub in self._subscriptions.values()]
            try:
                ready, _, _ = select.select([self._interrupt_r, *fds], [], [])
            except (OSError, ValueError):
                continue  # watch() closed a socket while we waited on it: take the new set
            if self._interrupt_r in ready:
                while _drain(self._interrupt_r):
                    pass
            if any(fd != self._interrupt_r for fd in ready):
                self._read.clear()
                self._wake(Trigger.DRIFT)
                self._read.wait()  # until the loop has read them: select would only repeat


_REREAD_DOWN = 16
"""Down macvlans of one namespace read again one by one, rather than by a dump of all."""

_LAYER_EVENTS = frozenset({RTM_NEWADDR, RTM_DELADDR, RTM_NEWROUTE, RTM_DELROUTE})


def _layer_event_matters(kind: int, body: memoryview, layered: frozenset[int]) -> bool:
    """Whether an address or route event could change a plan: a static address (not one the
    kernel made, such as a link-local address finishing DAD), or one of macvland's routes, on
    a link whose layers macvland manages."""
    if kind in (RTM_NEWADDR, RTM_DELADDR):
        address = decode_address(body)
        return address is not None and address.ifindex in layered and address.static
    route = decode_route(body)
    return (route is not None and route.protocol == RTPROT_MACVLAND
            and route.oif in layered)


def _drain(fd: int) -> bool:
    try:
        return bool(os.read(fd, 4096))
    except BlockingIOError:
        return False
