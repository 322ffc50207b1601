"""A synchronous reload: `macvland reload` signals the daemon and waits for that reload's pass.

systemd 252 ends a reload job as soon as ExecReload= exits (Type=notify-reload came later), and
`kill -HUP` exits before the daemon has even read the spec. So ExecReload= runs
`macvland reload --pid $MAINPID`, which notes the time, sends SIGHUP and waits for the daemon's
record in the state directory. After each pass that re-read the spec because of a SIGHUP, the
daemon replaces that record: when it read the spec (CLOCK_MONOTONIC, the same clock in every
process) and what came of it. A record whose read is later than the signal answers the reload:
that pass saw the spec as it was when the reload was asked for, and the pass is over, so the
spec is in force or was rejected and logged. Reloads that overlap are answered by one pass, and
there is no counter to race on; a plain `kill -HUP` still works, it just does not wait.
"""

from __future__ import annotations

import json
import os
import signal
import time

from macvland.errors import MacvlandError
from macvland.frozen import fields, frozen

RECORD = "reload.json"
_POLL = 0.01  # seconds between looks at the record: a pass takes ~50 ms (the debounce)


def now_ns() -> int:
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC)


@frozen
class Reloaded:
    """What one reload came to, as the daemon records it."""

    pid: int
    read_ns: int
    """When the pass read the spec (CLOCK_MONOTONIC)."""
    in_force: str | None
    """The sha256 of the spec in force after the pass (None: no valid spec yet)."""
    rejected: str | None = None
    """The sha256 of the content read, when it was rejected."""
    problems: int = 0
    status: str = ""


def record(state_dir: str, reloaded: Reloaded) -> None:
    """Replace the record atomically, so a waiting reader never sees half of it."""
    path = os.path.join(state_dir, RECORD)
    temporary = f"{path}.tmp"
    try:
        os.makedirs(state_dir, exist_ok=True)
        with open(temporary, "w", encoding="utf-8") as file:
            json.dump({f.name: getattr(reloaded, f.name) for f in fields(reloaded)}, file)
        os.replace(temporary, path)
    except OSError as error:
        raise MacvlandError(f"cannot record the reload in {path}: {error.strerror or error}"
                            " (`macvland reload` waits for it)") from error


def _read(path: str) -> Reloaded | None:
    try:
        with open(path, encoding="utf-8") as file:
            return Reloaded(**json.load(file))
    except (OSError, ValueError, TypeError):
        return None  # not written yet, or by another version: keep waiting


def request(pid: int, state_dir: str, timeout: float) -> Reloaded:
    """SIGHUP `pid`, then wait until a pass that read the spec after the signal is over."""
    path = os.path.join(state_dir, RECORD)
    asked = now_ns()
    try:
        os.kill(pid, signal.SIGHUP)
    except ProcessLookupError:
        raise MacvlandError(f"no process {pid} to reload") from None
    except PermissionError:
        raise MacvlandError(f"not allowed to signal process {pid}") from None
    deadline = time.monotonic() + timeout
    while True:
        done = _read(path)
        if done is not None and done.pid == pid and done.read_ns >= asked:
            return done
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            raise MacvlandError(f"process {pid} exited before finishing the reload") from None
        if time.monotonic() >= deadline:
            raise MacvlandError(
                f"process {pid} did not finish the reload within {timeout:g} s: no answer in "
                f"{path} (is it macvland run with MACVLAND_STATE_DIR={state_dir}?)")
        time.sleep(_POLL)
