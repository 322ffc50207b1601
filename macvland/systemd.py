"""systemd glue: sd_notify (readiness, status, reload, watchdog) and a journald log handler.

Outside systemd (no NOTIFY_SOCKET) every notification is silently skipped.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping

import systemd.daemon
import systemd.journal


class Notifier:
    """Tells systemd where the daemon stands.

    READY=1 only after the first pass (so units ordered after macvland find their
    interfaces), again after each reload; STATUS= after every pass; WATCHDOG=1 pings at half
    the interval systemd asks for, sent from the loop itself so a hung loop stops pinging.
    """

    def __init__(self, environ: Mapping[str, str] = os.environ) -> None:
        self._socket = environ.get("NOTIFY_SOCKET")
        # Without a socket no ping can reach anyone: no reason to wake up for it either.
        self.watchdog_interval = _watchdog_interval(environ) if self._socket else None
        self._ready = False

    def _send(self, *lines: str) -> None:
        if self._socket:
            systemd.daemon.notify("\n".join(lines))

    def passed(self, status: str) -> None:
        lines = [f"STATUS={status}"]
        if not self._ready:
            lines.append("READY=1")
            self._ready = True
        self._send(*lines)

    def reloading(self) -> None:
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self._send("RELOADING=1", f"MONOTONIC_USEC={usec}", "STATUS=reloading the spec")
        self._ready = False

    def stopping(self) -> None:
        self._send("STOPPING=1", "STATUS=stopping; interfaces are left in place")

    def watchdog(self) -> None:
        self._send("WATCHDOG=1")


def _watchdog_interval(environ: Mapping[str, str]) -> float | None:
    """Half of WATCHDOG_USEC, when the watchdog is meant for this process."""
    usec, pid = environ.get("WATCHDOG_USEC"), environ.get("WATCHDOG_PID")
    if not usec or not usec.isdigit() or int(usec) == 0:
        return None
    if pid and pid.isdigit() and int(pid) != os.getpid():
        return None
    return int(usec) / 2e6


_PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3,
             logging.CRITICAL: 2}


class JournalHandler(logging.Handler):
    """Sends each record to journald natively, its `fields` as journal fields.

    systemd-python's own handler also sends every attribute of the LogRecord; this sends only
    the fields the audit trail defines.
    """

    def emit(self, record: logging.LogRecord) -> None:
        try:
            fields = {k: str(v) for k, v in getattr(record, "fields", {}).items()}
            priority = str(_PRIORITY.get(record.levelno, 6))
            systemd.journal.send(self.format(record), PRIORITY=priority,
                                 SYSLOG_IDENTIFIER="macvland", **fields)
        except Exception:  # a logging handler must never take the daemon down
            self.handleError(record)


def journal_is_stderr(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether systemd connected our stderr to the journal (JOURNAL_STREAM names it)."""
    stream = environ.get("JOURNAL_STREAM", "")
    try:
        device, inode = (int(part) for part in stream.split(":"))
        st = os.fstat(2)
    except (ValueError, OSError):
        return False
    return (st.st_dev, st.st_ino) == (device, inode)
