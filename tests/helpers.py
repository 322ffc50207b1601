"""Waiting for a condition, and the long-running processes tests start: `macvland run` and
the like, each in a session of its own with its output in a file, always reaped.

Waiting is always polling for a condition with a generous deadline (the whole suite shares two
cores), never a fixed sleep standing in for "long enough". A failed wait says what it waited
for and shows the process's output.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from tests.conftest import Lab

DEADLINE = 30.0
"""How long a wait may take before the test fails; only a failing test ever waits this long."""
QUIET_WINDOW = 1.5
"""How long the log must stay unchanged to count as "the daemon did nothing"."""
MACVLAND = str(Path(sys.executable).parent / "macvland")
"""The console script of the package under test, installed with it in the virtualenv."""
ROOT = Path(__file__).parent.parent


def stated_exposure() -> float:
    """The unit's `systemd-analyze security` exposure as the README states it: a promise the
    offline and the booted analysis both hold the unit to."""
    found = re.search(r"`systemd-analyze security` exposure ([\d.]+)",
                      (ROOT / "README.md").read_text())
    assert found, "README.md states the unit's exposure"
    return float(found[1])


def exposure(analysis: str) -> float:
    """The overall exposure in the output of `systemd-analyze security UNIT`."""
    found = re.search(r"Overall exposure level for \S+: ([\d.]+)", analysis)
    assert found, analysis
    return float(found[1])


def built_once(target: Path, build: Callable[[Path], object], lock: Path | None = None) -> Path:
    """`target`, a directory kept across runs outside the checkout: made the first time by
    `build(directory)`, then renamed into place whole, so a build cut short is never reused.
    A run that needs it while another builds it waits on `lock` (TARGET.lock unless named)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(lock or target.with_name(target.name + ".lock"), "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        if not target.is_dir():
            building = target.with_name(target.name + ".building")
            shutil.rmtree(building, ignore_errors=True)
            build(building)
            building.rename(target)
    return target


def checkout_wheels(tmp_path_factory: pytest.TempPathFactory, *pip_args: str) -> Path:
    """This checkout built as `pip wheel -w DIRECTORY .` (with `pip_args`) does, from a copy,
    as a build writes into its source tree: the directory of wheels."""
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source)
    shutil.copytree(ROOT / "macvland", source / "macvland",
                    ignore=shutil.ignore_patterns("__pycache__"))
    wheels = tmp_path_factory.mktemp("wheels")
    subprocess.run([Path(sys.executable).parent / "pip", "wheel", "-q", *pip_args, "-w", wheels,
                    "."], cwd=source, check=True, capture_output=True)
    return wheels


def wait_for(condition: Callable[[], Any], what: str, *, timeout: float = DEADLINE,
             process: Process | None = None, explain: Callable[[], str] | None = None) -> Any:
    """Poll `condition` until it returns something truthy, and return that.

    A condition that raises KeyError or CalledProcessError (a link or a namespace not there
    yet) counts as not yet. With `process`, its exit ends the wait at once, and its log is
    shown on failure; `explain` adds anything else worth showing.
    """
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while True:
        try:
            value = condition()
            if value:
                return value
        except (KeyError, subprocess.CalledProcessError) as error:
            last = error
        if process is not None and not process.running():
            pytest.fail(f"{process.name} exited ({process.returncode}) while waiting for "
                        f"{what}:\n{process.log()}")
        if time.monotonic() > deadline:
            said = [f"timed out waiting for {what}"
                    + (f" (last error: {last!r})" if last else "")]
            if process is not None:
                said.append(f"{process.name}'s log:\n{process.log()}")
            if explain is not None:
                said.append(explain())
            pytest.fail("\n".join(said))
        time.sleep(0.05)


class Process:
    """A process a test starts and drives, in a session of its own (a kill takes whatever it
    started too), stdin closed, stdout and stderr into one log file.

    Its fixture or `finally:` calls `kill()`, so that nothing outlives the test.
    """

    def __init__(self, name: str, log_path: Path) -> None:
        self.name = name
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def spawn(self, command: Sequence[str | Path], env: Mapping[str, str] | None = None) -> None:
        assert self.process is None, f"one {self.name} per test"
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [str(part) for part in command], stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, env=env, start_new_session=True)

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def returncode(self) -> int | None:
        return None if self.process is None else self.process.returncode

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def signal(self, signum: int) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def log(self) -> str:
        with contextlib.suppress(FileNotFoundError):
            return self.log_path.read_text(errors="replace")
        return ""

    def wait_for(self, condition: Callable[[], Any], what: str,
                 timeout: float = DEADLINE) -> Any:
        """`wait_for`, ended at once by this process's exit, with its log on failure."""
        return wait_for(condition, what, timeout=timeout, process=self)

    def stop(self, timeout: float = DEADLINE) -> int:
        """SIGTERM (unless it has exited already), then the exit code."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout)

    def kill(self) -> None:
        """The finalizer: SIGKILL to the whole session if it still runs, then reaped."""
        if self.process is None:
            return
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=DEADLINE)


class Daemon(Process):
    """`macvland run` as a process inside the lab's home namespace, logging to a file."""

    def __init__(self, lab: Lab, log_path: Path) -> None:
        super().__init__("the daemon", log_path)
        self.lab = lab

    def start(self, config: Path, *, resync: float = 300, extra: Sequence[str] = (),
              env: Mapping[str, str] | None = None, wrap: Sequence[str] = ()) -> None:
        """Run with `config`; `extra` arguments come after the defaults (and win over them),
        `env` is added to the environment, and `wrap` comes before `ip netns exec`."""
        environ = {**os.environ, "MACVLAND_STATE_DIR": self.lab.state_dir, **(env or {})}
        environ.pop("MACVLAND_CONFIG", None)
        self.spawn([*wrap, "ip", "netns", "exec", self.lab.home, MACVLAND, "run",
                    "-c", str(config), "--log", "stderr", "--debounce", "50",
                    "--resync", str(resync), *extra], environ)

    def applied(self) -> list[str]:
        """The applied-change lines (`info: NAME: ...` carrying MACVLAND_ACTION)."""
        return [line for line in self.log().splitlines()
                if line.startswith("info: ") and "MACVLAND_ACTION=" in line
                and "MACVLAND_INTERFACE=" in line]

    def wait_for_applied(self, count: int) -> int:
        """Wait for `count` applied-change lines (a change lands in the kernel before its line
        in the log), and return how many there are."""
        self.wait_for(lambda: len(self.applied()) >= count, f"{count} applied change(s)")
        return len(self.applied())

    def wait_for_log(self, text: str, count: int = 1) -> None:
        self.wait_for(lambda: self.log().count(text) >= count,
                      f"{count} log line(s) containing {text!r}")

    def assert_quiet(self) -> None:
        """The log does not grow over a bounded window (an absence can only be observed)."""
        before = self.log()
        time.sleep(QUIET_WINDOW)
        after = self.log()
        assert after == before, f"the daemon kept logging:\n{after[len(before):]}"
