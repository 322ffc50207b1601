"""The benchmark's sandbox: its namespaces and parents, the processes it starts, and the
kernel as link events show it.

Everything happens in throwaway network namespaces named `<prefix>-...`: a "home" namespace
with veth parents, where the daemon under test runs, and in the spread layouts ten target
namespaces. They are deleted in `finally` blocks, so a failure leaves nothing behind. The
host's own interfaces are never read or touched.
"""

from __future__ import annotations

import errno
import math
import os
import select
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from bench.items import TARGET_NAMESPACES, BenchError, Check, Layout
from macvland.model import Key
from macvland.netns import Namespaces
from macvland.nla import u32
from macvland.rtnl import (
    IFLA_GROUP,
    RTM_DELLINK,
    RTM_NEWLINK,
    RawLink,
    decode_link,
    ifinfo,
    messages,
)

NETNS_DIR = "/run/netns"
RTMGRP_LINK = 0x1
SO_RCVBUFFORCE = 33
FLUSH_GROUP = 0x6D7662
"""The link group the benchmark's own clean-up deletes by (only in its own namespaces)."""


# --- shell helpers -----------------------------------------------------------------------------

def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["ip", *args], capture_output=True, text=True)
    if check and result.returncode != 0:
        raise BenchError(f"ip {' '.join(args)}: {result.stderr.strip()}")
    return result


def timed(argv: Sequence[str], **kwargs: Any) -> tuple[float, subprocess.CompletedProcess[str]]:
    start = time.monotonic()
    result = subprocess.run(argv, capture_output=True, text=True, **kwargs)
    return time.monotonic() - start, result


def seconds(func: Any) -> float:
    start = time.perf_counter()
    func()
    return time.perf_counter() - start


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p99 of 50 samples is their maximum)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def terminate(process: subprocess.Popen[bytes] | None) -> None:
    """SIGTERM, and SIGKILL if it has not ended within 10 s."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def macvland_binary() -> str:
    found = shutil.which("macvland", path=os.path.dirname(sys.executable))
    if not found:
        raise BenchError("the macvland console script is not next to this Python (make deps?)")
    return found


# --- the namespaces ---------------------------------------------------------------------------

class Lab:
    """The home namespace with its veth parents, and the target namespaces (spread layouts)."""

    def __init__(self, prefix: str, layout: Layout, workdir: str) -> None:
        self.home = f"{prefix}-home"
        self.bare = f"{prefix}-bare"
        """A namespace with nothing in it: where a one-shot command's fixed cost is timed."""
        self.targets = [f"{prefix}-t{k}" for k in range(TARGET_NAMESPACES)] \
            if layout.spread else []
        self.parents = layout.parents
        self.workdir = workdir
        self.created: list[str] = []
        self.namespaces = Namespaces(home=f"{NETNS_DIR}/{self.home}")

    @property
    def item_namespaces(self) -> list[str | None]:
        """Where the macvlans live: the targets, or home (None)."""
        return list(self.targets) or [None]

    def setup(self) -> None:
        for name in (self.home, self.bare, *self.targets):
            ip("netns", "add", name)
            self.created.append(name)
        batch = os.path.join(self.workdir, "parents.batch")
        with open(batch, "w") as file:
            for parent in self.parents:
                file.write(f"link add {parent} type veth peer name {parent}-peer\n"
                           f"link set {parent} up\n")
        ip("-n", self.home, "-batch", batch)

    def parent_ifindexes(self) -> dict[str, int]:
        return {link.name: link.ifindex for link in self.namespaces.socket(None).links()}

    def ip_in(self, netns: str | None) -> list[str]:
        return ["ip", "-n", netns or self.home]

    def flush(self) -> None:
        """Delete every macvlan in the lab at once, by link group (not a measurement)."""
        for netns in self.item_namespaces:
            sock = self.namespaces.socket(netns)
            links = sock.links()
            if any(link.group == FLUSH_GROUP for link in links):
                raise BenchError(f"link group {FLUSH_GROUP} already in use in {netns}")
            doomed = [link.ifindex for link in links if link.kind == "macvlan"]
            if not doomed:
                continue
            errors = sock.request_many([(RTM_NEWLINK, ifinfo(i) + u32(IFLA_GROUP, FLUSH_GROUP),
                                         0) for i in doomed])
            if any(errors):
                raise BenchError(f"setting the link group: {next(e for e in errors if e)}")
            sock.request(RTM_DELLINK, ifinfo() + u32(IFLA_GROUP, FLUSH_GROUP))

    def close(self) -> None:
        self.namespaces.close()
        for name in self.created:
            ip("netns", "del", name, check=False)


# --- the kernel, as link events show it -------------------------------------------------------

def _queued(sock: socket.socket) -> Iterator[bytes | None]:
    """The datagrams waiting on a non-blocking socket; None where some were lost (ENOBUFS)."""
    while True:
        try:
            yield sock.recv(1 << 16)
        except BlockingIOError:
            return
        except OSError as error:
            if error.errno != errno.ENOBUFS:
                raise
            yield None


class KernelView:
    """The links of some namespaces, kept current from netlink link events."""

    def __init__(self, namespaces: Namespaces, watched: Sequence[str | None]) -> None:
        self._namespaces = namespaces
        self._sockets: dict[int, tuple[str | None, socket.socket]] = {}
        self.links: dict[Key, RawLink] = {}
        for netns in watched:
            sock, _identity = namespaces.open_event_socket(netns)
            # Thousands of events arrive per converge; only an overflow would lose them.
            sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 64 << 20)
            sock.bind((0, RTMGRP_LINK))
            sock.setblocking(False)
            self._sockets[sock.fileno()] = (netns, sock)
        self.reset()

    def close(self) -> None:
        for _, sock in self._sockets.values():
            sock.close()
        self._sockets.clear()

    def reset(self) -> None:
        """Drop the events queued so far (unread) and take the state from a dump."""
        for _, sock in self._sockets.values():
            for _data in _queued(sock):
                pass
        self.dump()

    def dump(self) -> None:
        self.links = {}
        for netns, _ in self._sockets.values():
            for link in self._namespaces.socket(netns).links():
                self.links[(netns, link.name)] = link

    def wait(self, expect: Mapping[Key, Check], timeout: float) -> float | None:
        """The monotonic time at which the event completing `expect` arrived (None: timeout).

        The result is confirmed by a dump; if the dump disagrees, waiting goes on.
        """
        deadline = time.monotonic() + timeout
        unmet = self._unmet(expect, expect)
        met_at = time.monotonic()
        while True:
            while unmet:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                ready, _, _ = select.select(list(self._sockets), [], [], left)
                met_at = time.monotonic()
                changed = self._receive(ready)
                touched = expect.keys() if changed is None else changed & expect.keys()
                unmet = (unmet - set(touched)) | self._unmet(expect, touched)
            self.dump()
            unmet = self._unmet(expect, expect)
            if not unmet:
                return met_at

    def unmet(self, expect: Mapping[Key, Check]) -> set[Key]:
        return self._unmet(expect, expect)

    def _unmet(self, expect: Mapping[Key, Check], keys: Iterable[Key]) -> set[Key]:
        return {key for key in keys if not expect[key](self.links.get(key))}

    def _receive(self, ready: Iterable[int]) -> set[Key] | None:
        """Apply the pending events; the keys they touched (None after an overflow: all)."""
        changed: set[Key] = set()
        for fd in ready:
            netns, sock = self._sockets[fd]
            for data in _queued(sock):
                if data is None:
                    self.dump()
                    return None
                for kind, _flags, _seq, body in messages(data):
                    if kind in (RTM_NEWLINK, RTM_DELLINK):
                        changed.add(self._apply(netns, kind, decode_link(body)))
        return changed

    def _apply(self, netns: str | None, kind: int, link: RawLink) -> Key:
        key = (netns, link.name)
        if kind == RTM_NEWLINK:
            self.links[key] = link
        elif (known := self.links.get(key)) is not None and known.ifindex == link.ifindex:
            del self.links[key]
        return key
