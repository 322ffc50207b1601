"""Network namespaces: where each one is, and a long-lived netlink socket inside each.

A socket created inside a namespace stays bound to it, so each namespace is entered once (by a
short-lived thread, since setns(2) moves only the calling thread) and its socket reused. A
namespace file can be replaced (`ip netns del x; ip netns add x`): the file's inode is checked
on every use and a stale socket is reopened.
"""

from __future__ import annotations

import ctypes
import os
import socket
import threading
from collections.abc import Callable, Iterable, Sequence

from macvland.errors import KernelError, NamespaceMissing, NamespaceUnavailable
from macvland.model import Netns
from macvland.rtnl import RtnlSocket

RUN_DIR = "/run/netns"
CLONE_NEWNET = 0x40000000


def _libc_setns(fd: int, nstype: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, nstype) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))


_setns: Callable[[int, int], None] = getattr(os, "setns", _libc_setns)


def _sockets_in(fds: Sequence[int]) -> list[socket.socket | BaseException]:
    """A NETLINK_ROUTE socket created inside each namespace behind `fds`, in their order, or
    what kept it from being made there.

    One thread enters them in turn: starting a thread costs more than entering a namespace,
    and a pass that reads ten namespaces for the first time enters all ten."""
    result: list[socket.socket | BaseException] = []

    def enter_and_open() -> None:
        for fd in fds:
            try:
                _setns(fd, CLONE_NEWNET)
                result.append(socket.socket(socket.AF_NETLINK, socket.SOCK_RAW,
                                            socket.NETLINK_ROUTE))
            except BaseException as error:  # handed to the caller's thread below
                result.append(error)

    # This thread ends inside the last namespace; nothing else ever runs on it.
    thread = threading.Thread(target=enter_and_open, name="macvland-setns")
    thread.start()
    thread.join()
    return result


class _Entry:
    def __init__(self, fd: int, sock: RtnlSocket) -> None:
        self.fd = fd
        self.sock = sock
        self.identity = _identity(fd)


def _identity(file: int | str) -> tuple[int, int]:
    """Which namespace a descriptor or a path names (the same one twice: the same identity)."""
    st = os.stat(file)
    return (st.st_dev, st.st_ino)


class Namespaces:
    """The namespaces macvland works in, each with its file descriptor and socket.

    `home` is the namespace macvland manages from (None: the one this process runs in); tests
    pass a throwaway namespace's path so that nothing of the host's is ever touched.
    """

    def __init__(self, home: str | None = None, run_dir: str = RUN_DIR) -> None:
        self.home = home
        self.run_dir = run_dir
        self._entries: dict[Netns, _Entry] = {}

    def path(self, netns: Netns) -> str:
        if netns is None:
            return self.home or "/proc/self/ns/net"
        return netns if os.path.isabs(netns) else os.path.join(self.run_dir, netns)

    def _entry(self, netns: Netns) -> _Entry:
        path = self.path(netns)
        entry = self._entries.get(netns)
        if entry is not None:
            try:
                if _identity(path) == entry.identity:
                    return entry
            except FileNotFoundError:
                pass
            self._drop(netns)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise NamespaceMissing(path) from None
        except OSError as error:
            raise NamespaceUnavailable(path, error.strerror or str(error)) from None
        sock = self._sockets_in([(netns, fd)])[0]
        if isinstance(sock, BaseException):
            os.close(fd)
            if isinstance(sock, OSError):
                raise NamespaceUnavailable(path, sock.strerror or str(sock)) from None
            raise sock
        return self._add(netns, fd, sock)

    def _add(self, netns: Netns, fd: int, sock: socket.socket) -> _Entry:
        entry = self._entries[netns] = _Entry(fd, RtnlSocket(sock))
        return entry

    def enter(self, wanted: Iterable[Netns]) -> None:
        """Open the socket of each namespace in `wanted` that has none yet, all at once.

        What cannot be opened is left as it is: socket() then raises what is wrong with it.
        """
        opened: list[tuple[Netns, int]] = []
        for netns in wanted:
            if netns is None and self.home is None:
                continue  # this process's own: no thread needed
            entry = self._entries.get(netns)
            try:
                if entry is not None and _identity(self.path(netns)) == entry.identity:
                    continue
                opened.append((netns, os.open(self.path(netns), os.O_RDONLY | os.O_CLOEXEC)))
            except OSError:
                continue
            if entry is not None:
                self._drop(netns)
        if not opened:
            return
        for (netns, fd), sock in zip(opened, self._sockets_in(opened), strict=True):
            if isinstance(sock, BaseException):
                os.close(fd)
            else:
                self._add(netns, fd, sock)

    def _sockets_in(self, where: Sequence[tuple[Netns, int]],
                    ) -> list[socket.socket | BaseException]:
        if [netns for netns, _ in where] == [None] and self.home is None:
            return [socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)]
        return _sockets_in([fd for _, fd in where])

    def open_event_socket(self, netns: Netns) -> tuple[socket.socket, tuple[int, int]]:
        """A new socket inside `netns` (not pooled), and the identity of the namespace file.

        For the event watcher, which must hold its own subscribed sockets. Raises
        NamespaceMissing or OSError.
        """
        path = self.path(netns)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise NamespaceMissing(path) from None
        try:
            sock = self._sockets_in([(netns, fd)])[0]
            if isinstance(sock, BaseException):
                raise sock
            return sock, _identity(fd)
        finally:
            os.close(fd)

    def identity(self, netns: Netns) -> tuple[int, int] | None:
        """Which namespace the file names right now (None: there is no such file)."""
        try:
            return _identity(self.path(netns))
        except FileNotFoundError:
            return None

    def socket(self, netns: Netns) -> RtnlSocket:
        """The socket inside `netns`; raises NamespaceMissing or NamespaceUnavailable."""
        return self._entry(netns).sock

    def fd(self, netns: Netns) -> int:
        """A descriptor of `netns`, for IFLA_NET_NS_FD and RTM_GETNSID."""
        return self._entry(netns).fd

    def home_nsid(self, netns: Netns) -> int | None:
        """The id under which `netns` knows macvland's own namespace (None: it has none)."""
        if netns is None:
            return None
        try:
            return self.socket(netns).nsid(self.fd(None))
        except KernelError:
            return None

    @property
    def writes(self) -> int:
        return sum(entry.sock.writes for entry in self._entries.values())

    def _drop(self, netns: Netns) -> None:
        entry = self._entries.pop(netns)
        entry.sock.close()
        os.close(entry.fd)

    def close(self) -> None:
        for netns in list(self._entries):
            self._drop(netns)

    def __enter__(self) -> Namespaces:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
