"""What wakes the daemon about macvtaps' device nodes: the /dev/tapN of a managed macvtap
changing owner, group or mode, appearing, or going away.

A chmod or chown of /dev/tapN makes no netlink event, so without this only the periodic
resync would see it. The watch is inotify on /dev itself (not recursive), for attribute
changes, creations, deletions and renames only: /dev sees opens, reads and writes all the
time (every write to /dev/null), and with this mask the kernel does not even queue those.
It is armed only while the spec manages some macvtap's device, and only events about the
numbers of those macvtaps count.

Like the link watcher, the thread only rings the bell: the loop reads the queued events
(`refresh`), and a pass reads them just before it reads /dev. So the events of macvland's own
chown and chmod are read by the pass that made them and wake nothing, and whatever changes
after a pass read /dev is an event that is still queued.
"""

from __future__ import annotations

import ctypes
import logging
import os
import select
import struct
import threading

from macvland.devices import DEV
from macvland.watch import Trigger, Wake

log = logging.getLogger("macvland")

IN_ATTRIB = 0x4
IN_MOVED_FROM = 0x40
IN_MOVED_TO = 0x80
IN_CREATE = 0x100
IN_DELETE = 0x200
IN_Q_OVERFLOW = 0x4000
IN_ONLYDIR = 0x01000000
# Renames too: a node moved away is gone for a VM just as a deleted one is.
MASK = IN_ATTRIB | IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO | IN_ONLYDIR
_HEADER = struct.Struct("iIII")
"""struct inotify_event: wd, mask, cookie, len; then len bytes of NUL-padded name."""

_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> int:
    if result < 0:
        code = ctypes.get_errno()
        raise OSError(code, f"{what}: {os.strerror(code)}")
    return result


def tap_numbers(data: bytes) -> tuple[set[int], bool]:
    """The N of every /dev/tapN that a buffer of inotify events names, and whether events were
    lost (the queue overflowed)."""
    numbers: set[int] = set()
    lost = False
    offset = 0
    while offset + _HEADER.size <= len(data):
        _wd, mask, _cookie, length = _HEADER.unpack_from(data, offset)
        name = data[offset + _HEADER.size:offset + _HEADER.size + length].split(b"\0", 1)[0]
        offset += _HEADER.size + length
        lost |= bool(mask & IN_Q_OVERFLOW)
        if name.startswith(b"tap") and name[3:].isdigit():
            numbers.add(int(name[3:]))
    return numbers, lost


class TapWatcher:
    """inotify on /dev, for the /dev/tapN of the macvtaps whose device macvland manages."""

    def __init__(self, wake: Wake, dev: str = DEV) -> None:
        self._wake = wake
        self._dev = dev
        self._fd: int | None = None
        """The inotify instance, made when first armed: a daemon without macvtaps needs none
        (instances are few: fs.inotify.max_user_instances)."""
        self._watch: int | None = None
        self._warned = False
        self._numbers: frozenset[int] = frozenset()
        self._lock = threading.Lock()
        self._interrupt_r, self._interrupt_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        self._read = threading.Event()
        self._stopping = False
        self._thread = threading.Thread(target=self._ring, name="macvland-taps", daemon=True)

    def stop(self) -> None:
        self._stopping = True
        self._read.set()
        os.write(self._interrupt_w, b"x")
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        with self._lock:
            for fd in (self._fd, self._interrupt_r, self._interrupt_w):
                if fd is not None:
                    os.close(fd)
            self._fd = None

    def arm(self, on: bool) -> None:
        """Watch /dev, or stop watching it. Called before a pass reads /dev, so a change just
        after the read is an event (subscribe, then read)."""
        with self._lock:
            if on and self._watch is None:
                try:
                    if self._fd is None:
                        self._fd = _check(_libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC),
                                          "inotify_init1")
                        self._thread.start()
                    self._watch = _check(_libc.inotify_add_watch(
                        self._fd, os.fsencode(self._dev), MASK), f"inotify on {self._dev}")
                except OSError as error:
                    if not self._warned:  # once: it would fail the same way every pass
                        log.warning(f"{error}; a change to a macvtap's /dev/tapN is put back "
                                    "at the next resync only")
                        self._warned = True
            elif not on and self._watch is not None and self._fd is not None:
                _libc.inotify_rm_watch(self._fd, self._watch)
                self._watch = None

    def want(self, numbers: frozenset[int]) -> None:
        """The N of the /dev/tapN whose events matter; others wake nobody."""
        self._numbers = numbers

    def refresh(self) -> bool:
        """Read every queued event; True if one was about a wanted /dev/tapN, or some were
        lost."""
        relevant = False
        with self._lock:
            while self._fd is not None:
                try:
                    data = os.read(self._fd, 1 << 16)
                except BlockingIOError:
                    break
                numbers, lost = tap_numbers(data)
                relevant |= lost or not numbers.isdisjoint(self._numbers)
        self._read.set()
        return relevant

    def _ring(self) -> None:
        fd = self._fd  # set before the thread starts, closed only after it ends
        assert fd is not None
        while not self._stopping:
            ready, _, _ = select.select([self._interrupt_r, fd], [], [])
            if self._interrupt_r in ready:
                while _drain(self._interrupt_r):
                    pass
            if fd in ready and not self._stopping:
                self._read.clear()
                self._wake(Trigger.DRIFT)
                self._read.wait()  # until the loop has read them: select would only repeat


def _drain(fd: int) -> bool:
    try:
        return bool(os.read(fd, 4096))
    except BlockingIOError:
        return False
