"""The spec reader: reads and parses the spec off the loop, once its writer is done.

A spec rewritten in place is, for a moment, half written, and half a spec is often a valid
spec with fewer interfaces: acting on it deletes the rest. So a file event only tells this
thread to look; it reads the spec when its writer is done, and only then, if the bytes
changed, parses them and wakes the loop (Trigger.SPEC) with the result.

A writer is done when:

- no process has a spec file open for writing (an exact kernel answer: `being_written`), and
  the spec's files (their inode, size and mtime) have not changed for `QUIET` seconds (a
  single file; `QUIET_DIRECTORY` for a directory of fragments, so one tool writing several
  fragments in a row makes one pass); other files written next to the spec do not count, or
- the spec files have stayed unchanged (size, mtime, inode) for `settle` seconds although a
  writer still holds one open: a writer that never closes is picked up too. While a writer
  keeps writing, nothing is read, however long it takes.

Where the kernel cannot say whether a writer is there (no lease on that file system, or a
file that is not ours), only the `settle` rule applies.

The quiet window is not spent idle: once no writer has the files open, their bytes are read
and parsed at once, ahead of the window's end, and the result is kept by their hash. When the
window ends with the files unchanged, the read that counts finds those bytes parsed already,
so the loop gets the spec a window after the save, not a window plus a parse (at 1,000
interfaces, 30-40 ms; at 10,000, ten times that). Nothing is handed to the loop before the
window ends, so the settle rule is the same; a save that changes again meanwhile costs one
parse more, on this thread. The one save that needs no window is the atomic one: a file its
writer closed, renamed over a single-file spec. Its bytes are whole before it has the spec's
name, so once they read cleanly, they are handed over at once.

A reload (SIGHUP) reads now if no writer is at work; otherwise it waits for the writer, at
most `settle` seconds, and then keeps the spec in force, saying so in the log. Unchanged bytes
are never parsed again: the last result is kept by hash (a reload re-reports it).

Parsing here, not on the loop, keeps the loop repairing drift while a large spec is parsed.
The two threads share the GIL, which CPython hands over every 5 ms (sys.getswitchinterval), so
the loop is slowed, not stopped (see the README for the measured stall).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable

from macvland import audit
from macvland.errors import SpecError
from macvland.frozen import frozen
from macvland.intake import DEFAULT_SETTLE, being_written, read_spec, spec_files
from macvland.model import DesiredState, SpecSource
from macvland.spec import ParseMemo, parse_source

log = logging.getLogger("macvland")

QUIET = 0.05
"""Seconds a spec file nobody writes must stay unchanged to be read: the steps of one save (an
editor's write, rename and chmod) make one read."""

QUIET_DIRECTORY = 1.0
"""The same for a directory of fragments: a tool writing several fragments, one after the
other, makes one pass."""

_POLL = 0.1
"""How often a spec being written is looked at again (its close also wakes us, by event)."""

Clock = Callable[[], float]


@frozen
class Intake:
    """What one read came to: a spec to put in force, or why not."""

    sha256: str
    """Of the bytes read ("" when nothing could be read)."""
    desired: DesiredState | None
    error: SpecError | None
    forced: bool
    """Asked for by a reload: the loop runs a pass and answers the reload even if unchanged."""
    read_ns: int
    """When the bytes were read (CLOCK_MONOTONIC, for `macvland reload`)."""


def _now_ns() -> int:
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC)


class SpecReader:
    """One thread that reads and parses the spec when asked and its writer is done."""

    def __init__(self, config: str, max_bytes: int, deliver: Callable[[], None],
                 settle: float = DEFAULT_SETTLE, clock: Clock = time.monotonic) -> None:
        self._config = config
        self._max_bytes = max_bytes
        self._deliver = deliver
        self.settle = settle
        self._clock = clock
        self._memo: ParseMemo = {}
        self._last: tuple[str, DesiredState | SpecError] | None = None
        """The last parse, by the hash of its bytes: unchanged bytes are not parsed again."""
        self._seen: str | None = None
        """The hash of the last bytes handed to the loop (rejected or not)."""
        self._condition = threading.Condition()
        self.on_read: Callable[[], None] = lambda: None
        """Called after each read, changed or not (the file watcher follows moved symlinks,
        which may point at the same bytes elsewhere)."""
        self._read_signature: tuple[tuple[str, int, int, int], ...] = ()
        """The spec's files (path, inode, size, mtime) when it was last read."""
        self._reading = threading.Lock()
        """One read and parse at a time: start-up's, on the loop, and the thread's share state."""
        self._pending = False
        self._forced = False
        self._result: Intake | None = None
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="macvland-spec", daemon=True)

    # --- asked by others ---

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        with self._condition:
            self._stopping = True
            self._condition.notify()
        self._thread.join(timeout=5)

    def changed(self) -> None:
        """A file event about the spec: look again once its writer is done."""
        with self._condition:
            self._pending = True
            self._condition.notify()

    def request(self, forced: bool = False) -> None:
        """Read again (a resync, or with `forced` a reload), once no writer is at work."""
        with self._condition:
            self._pending = True
            self._forced |= forced
            self._condition.notify()

    def take(self) -> Intake | None:
        """The latest result not yet taken."""
        with self._condition:
            result, self._result = self._result, None
            return result

    def read_now(self, forced: bool = False) -> Intake | None:
        """Read and parse on the caller's thread (start-up: nothing to do until then)."""
        return self._read(forced)

    # --- the thread ---

    def _run(self) -> None:
        while True:
            with self._condition:
                while not self._pending and not self._stopping:
                    self._condition.wait()
                if self._stopping:
                    return
                self._pending = False
                forced = self._forced
            if not self._writer_done(forced):
                continue
            with self._condition:
                forced = self._forced  # a reload asked for while we waited counts too
                self._forced = False
            result = self._read(forced)
            if result is not None:
                with self._condition:
                    if self._result is not None and self._result.forced:
                        result = _forced(result)  # a reload not yet answered stays asked
                    self._result = result
                self._deliver()

    def _writer_done(self, forced: bool) -> bool:
        """Wait until the spec's writer is done; False when a reload gave up on it (or we stop).

        A reload asked for while this waits makes the wait a reload's: bounded by `settle`.
        """
        signature = self._signature()
        changed_at = self._clock()
        reload_since = changed_at if forced else None
        parsed_ahead: tuple[tuple[str, int, int, int], ...] | None = None
        while True:
            now = self._clock()
            with self._condition:
                if self._stopping:
                    return False
                if self._forced and reload_since is None:
                    reload_since = now
            files = spec_files(self._config)
            writing = [f for f in files if being_written(f) is not False]
            current = self._signature()
            if current != signature:
                signature, changed_at = current, now
            quiet = QUIET_DIRECTORY if os.path.isdir(self._config) else QUIET
            # Quiet means the spec's own files, not their directory: an editor's swap file or a
            # log written next to the spec all the time must not hold its reading back.
            if not writing and (reload_since is not None or now - changed_at >= quiet):
                return True
            if not writing and current != parsed_ahead:
                parsed_ahead = current
                if self._parse_ahead() and self._renamed_in(current):
                    return True
                continue  # that took a while: look at the files again before waiting
            if now - changed_at >= self.settle:
                if any(being_written(f) for f in writing):
                    log.warning(f"reading {', '.join(writing)} although a writer still has it "
                                f"open: it has not changed for {self.settle:g} s")
                return True
            if reload_since is not None and now - reload_since >= self.settle:
                log.warning(f"reload: not read, {', '.join(writing)} is still being written "
                            f"after {self.settle:g} s; the spec in force stays, and the file "
                            "is read once its writer is done")
                with self._condition:
                    self._pending = True  # read it when the writer is done, as for an event
                    self._forced = False
                    self._result = _unanswered(self._result)
                self._deliver()
                return False
            wait = _POLL if writing else max(0.0, changed_at + quiet - now)
            with self._condition:
                if not self._stopping:
                    self._condition.wait(timeout=min(wait, _POLL))

    def _signature(self) -> tuple[tuple[str, int, int, int], ...]:
        found = []
        for path in spec_files(self._config):
            try:
                info = os.stat(path)
            except OSError:
                continue
            found.append((path, info.st_ino, info.st_size, info.st_mtime_ns))
        return tuple(found)

    def _parse(self, source: SpecSource) -> DesiredState | SpecError:
        """The parse of `source`'s bytes: the last one's again if they are the same."""
        if self._last is None or self._last[0] != source.sha256:
            start = self._clock()
            parsed: DesiredState | SpecError
            try:
                parsed = parse_source(source, self._memo)
            except SpecError as error:
                parsed = error
            else:
                audit.spec_parsed(len(parsed.interfaces), self._clock() - start)
            self._last = (source.sha256, parsed)
        return self._last[1]

    def _parse_ahead(self) -> bool:
        """Read and parse the spec as it is now into the cache by hash, handing nothing out:
        what the quiet window's end then reads is parsed already if it did not change.
        False when it could not be read (say, a mode the save's last step fixes)."""
        with self._reading:
            try:
                source = read_spec(self._config, self._max_bytes)
            except SpecError:
                return False  # the read that counts says why, if it is still so then
            self._parse(source)
            return True

    def _renamed_in(self, current: tuple[tuple[str, int, int, int], ...]) -> bool:
        """Whether the spec is one file that another file, closed by its writer, replaced
        since the last read (an atomic save: rename over it). Its bytes are whole, so it needs
        no quiet window; one that reads cleanly is read at once. (Fragments of a directory
        arrive one file at a time, and a file rewritten in place keeps its inode: both wait.)"""
        before = self._read_signature[0][1] if len(self._read_signature) == 1 else None
        return (len(current) == 1 and not os.path.isdir(self._config)
                and current[0][1] != before and self._signature() == current)

    def _read(self, forced: bool) -> Intake | None:
        """Read the spec; a result for the loop, or None when its bytes did not change."""
        with self._reading:
            try:
                return self._read_locked(forced)
            finally:
                self.on_read()

    def _read_locked(self, forced: bool) -> Intake | None:
        read_ns = _now_ns()
        self._read_signature = self._signature()
        try:
            source = read_spec(self._config, self._max_bytes)
        except SpecError as error:
            # Nothing parsed (unsafe, unreadable, too large): the same refusal again is news
            # only to a reload; the bytes, once readable, are compared afresh.
            seen = error.sha256 or f"!{error}"
            if seen == self._seen and not forced:
                return None
            self._seen = seen
            return Intake(error.sha256, None, error, forced, read_ns)
        if source.sha256 == self._seen and not forced:
            return None  # our own reads, an unrelated file, or a write of the same bytes
        self._seen = source.sha256
        parsed = self._parse(source)
        if isinstance(parsed, SpecError):
            return Intake(source.sha256, None, parsed, forced, read_ns)
        return Intake(source.sha256, parsed, None, forced, read_ns)


def _forced(result: Intake) -> Intake:
    return Intake(result.sha256, result.desired, result.error, True, result.read_ns)


def _unanswered(previous: Intake | None) -> Intake:
    """A reload's answer when the writer was not done: nothing read, the spec in force kept."""
    if previous is not None:
        return _forced(previous)
    return Intake("", None, None, True, _now_ns())
