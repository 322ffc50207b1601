"""The processes under test: `macvland run` (the daemon) and, for comparison,
systemd-networkd, each started inside the benchmark's home namespace."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.items import BenchError, Item
from bench.sandbox import macvland_binary, terminate

DEBOUNCE_MS = 50
"""The daemon's default: the benchmark measures it as shipped."""

PARSE_LINE = re.compile(r"spec parsed: (\d+) interface\(s\) in ([\d.]+) ms")
PASS_LINE = re.compile(r"pass \(([^)]*)\): (\d+) operation\(s\), (\d+) netlink write\(s\), "
                       r"([\d.]+) ms")


@dataclass(frozen=True, slots=True)
class PassLine:
    triggers: str
    operations: int
    writes: int
    ms: float


@dataclass(frozen=True, slots=True)
class Usage:
    cpu_s: float
    switches: int
    per_thread: dict[str, int]
    """Context switches per thread id."""
    cpu_per_thread: dict[str, float]

    def cpu_by_thread(self, before: Usage) -> dict[str, float]:
        """CPU seconds each thread used since `before` (those that used any)."""
        return {tid: round(cpu - before.cpu_per_thread.get(tid, 0.0), 3)
                for tid, cpu in self.cpu_per_thread.items()
                if cpu != before.cpu_per_thread.get(tid, 0.0)}


class Daemon:
    """`macvland run --verbose` inside the home namespace, logging to a file."""

    def __init__(self, home: str, workdir: Path) -> None:
        self.home = home
        self.spec = workdir / "spec" / "macvland.yaml"
        self.log = workdir / "daemon.log"
        self.state_dir = workdir / "daemon-state"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self, text: str) -> None:
        self.spec.parent.mkdir(parents=True, exist_ok=True)
        self.spec.write_text(text)
        env = {**os.environ, "MACVLAND_STATE_DIR": str(self.state_dir)}
        for name in ("MACVLAND_CONFIG", "NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
            env.pop(name, None)
        with open(self.log, "wb") as log:
            # `ip netns exec` execs the daemon: the Popen's pid is the daemon's.
            self.process = subprocess.Popen(
                ["ip", "netns", "exec", self.home, macvland_binary(), "run", "-c", str(self.spec),
                 "--debounce", str(DEBOUNCE_MS), "--resync", "300", "--log", "stderr",
                 "--verbose"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env,
                start_new_session=True)
        if self.wait_pass(0, 30, busy=False) is None:
            raise BenchError(f"the daemon made no first pass:\n{self.tail()}")
        self.wait_quiet()

    def stop(self) -> None:
        terminate(self.process)

    def tail(self, lines: int = 20) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def offset(self) -> int:
        return self.log.stat().st_size

    def lines(self, offset: int) -> list[str]:
        """The complete log lines written since `offset`."""
        with open(self.log, "rb") as file:
            file.seek(offset)
            data = file.read()
        return data[:data.rfind(b"\n") + 1].decode(errors="replace").splitlines()

    def passes(self, offset: int) -> list[PassLine]:
        found = (PASS_LINE.search(line) for line in self.lines(offset))
        return [PassLine(m[1], int(m[2]), int(m[3]), float(m[4])) for m in found if m]

    def parse_ms(self, offset: int, interfaces: int) -> float | None:
        """The daemon's own time for its first parse of a spec of `interfaces` since `offset`
        (waking for the temporary file, it parsed the old spec again first)."""
        found = [float(m[2]) for line in self.lines(offset)
                 if (m := PARSE_LINE.search(line)) and int(m[1]) == interfaces]
        return found[0] if found else None

    def problems(self, offset: int) -> list[str]:
        return [line for line in self.lines(offset) if line.startswith(("warning:", "error:"))]

    def wait_pass(self, offset: int, timeout: float = 10.0, busy: bool = True,
                  ) -> list[PassLine] | None:
        """The pass lines since `offset`, once there is one (with operations, if `busy`)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.passes(offset)
            if any(p.operations or not busy for p in found):
                return found
            self._check_alive()
            time.sleep(0.01)
        return None

    def _check_alive(self) -> None:
        if self.process is not None and self.process.poll() is not None:
            raise BenchError(f"the daemon exited ({self.process.returncode}):\n{self.tail()}")

    def usage(self) -> Usage:
        """CPU seconds and context switches, summed over the daemon's threads."""
        ticks = switches = 0
        per_thread, cpu_per_thread = {}, {}
        hz = os.sysconf("SC_CLK_TCK")
        task_dir = f"/proc/{self.pid}/task"
        for tid in os.listdir(task_dir):
            try:
                with open(f"{task_dir}/{tid}/stat") as file:
                    fields = file.read().rsplit(")", 1)[1].split()
                with open(f"{task_dir}/{tid}/status") as file:
                    status = dict(line.split(":", 1) for line in file if ":" in line)
            except FileNotFoundError:
                continue  # the thread ended meanwhile
            thread_ticks = int(fields[11]) + int(fields[12])  # utime, stime
            ticks += thread_ticks
            cpu_per_thread[tid] = thread_ticks / hz
            count = sum(int(status[k]) for k in ("voluntary_ctxt_switches",
                                                 "nonvoluntary_ctxt_switches"))
            switches += count
            per_thread[tid] = count
        return Usage(ticks / hz, switches, per_thread, cpu_per_thread)

    def peak_rss_mb(self) -> float:
        with open(f"/proc/{self.pid}/status") as file:
            for line in file:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        raise BenchError("no VmHWM in /proc/PID/status")

    def hangup_pass(self) -> PassLine:
        """SIGHUP (re-read the spec) makes one pass; the daemon's own line about it."""
        self.wait_quiet()
        offset = self.offset()
        os.kill(self.pid, signal.SIGHUP)
        found = self.wait_pass(offset, busy=False)
        if not found:
            raise BenchError(f"no pass after SIGHUP:\n{self.tail()}")
        return found[0]

    def wait_quiet(self, quiet: float = 0.15, timeout: float = 10.0) -> bool:
        """Wait until the daemon's CPU time and context switches stand still for `quiet` s."""
        deadline = time.monotonic() + timeout
        last = self.usage()
        still_since = time.monotonic()
        while time.monotonic() < deadline:
            time.sleep(0.025)
            self._check_alive()
            now = self.usage()
            if (now.cpu_s, now.switches) != (last.cpu_s, last.switches):
                last, still_since = now, time.monotonic()
            elif time.monotonic() - still_since >= quiet:
                return True
        return False

    def replace_spec(self, text: str) -> float:
        """Write `text` beside the spec, let the daemon settle, rename it over; the rename's
        monotonic time. (The temporary file's own events wake the daemon, which finds the spec
        unchanged; settling first keeps that wake-up out of the measurement.)"""
        temporary = self.spec.with_name(".macvland.yaml.new")
        temporary.write_text(text)
        self.wait_quiet()
        start = time.monotonic()
        os.rename(temporary, self.spec)
        return start


# --- systemd-networkd, for comparison ------------------------------------------------------------

NETWORKD_BINARIES = ("/lib/systemd/systemd-networkd", "/usr/lib/systemd/systemd-networkd")
NETWORKD_CONFIG_DIRS = ("/etc/systemd", "/run/systemd", "/run/dbus", "/usr/lib/systemd/network",
                        "/usr/local/lib/systemd/network")


def networkd_binary() -> str | None:
    return next((path for path in NETWORKD_BINARIES if os.access(path, os.X_OK)), None)


class Networkd:
    """systemd-networkd creating the same interfaces from .netdev files, started fresh.

    Only in the "one" layout: a .netdev cannot name another namespace. networkd runs in the
    home namespace and in a mount namespace of its own, where every directory it reads
    configuration or state from is an empty tmpfs (its configuration is then bound in), so
    nothing of the host's is read or changed and it registers on no bus; /sys is read-only,
    which tells networkd there is no udev to wait for, as in a container.
    """

    def __init__(self, binary: str, home: str, workdir: Path) -> None:
        self.binary = binary
        self.home = home
        self.config = workdir / "networkd"
        self.log = workdir / "networkd.log"
        self.process: subprocess.Popen[bytes] | None = None

    def write(self, items: Sequence[Item]) -> None:
        shutil.rmtree(self.config, ignore_errors=True)
        self.config.mkdir()
        self.config.chmod(0o755)  # read by networkd as the systemd-network user
        for parent in sorted({item.parent for item in items}):
            names = [f"MACVLAN={item.name}" for item in items if item.parent == parent]
            (self.config / f"10-{parent}.network").write_text(
                "\n".join(["[Match]", f"Name={parent}", "[Network]", *names]) + "\n")
        for item in items:
            (self.config / f"{item.name}.netdev").write_text(item.netdev())

    def start(self) -> float:
        """Start networkd; the monotonic time just before."""
        private = " ".join(f"mount -t tmpfs tmpfs {d};" for d in NETWORKD_CONFIG_DIRS
                           if os.path.isdir(d))
        inner = f"mount -o remount,ro,bind /sys && exec {shlex.quote(self.binary)}"
        script = (f"set -e; mount --make-rprivate /; {private} "
                  "mkdir -p /etc/systemd/network /run/systemd/netif; "
                  "chown systemd-network:systemd-network /run/systemd/netif; "
                  f"mount --bind {shlex.quote(str(self.config))} /etc/systemd/network; "
                  f"exec ip netns exec {shlex.quote(self.home)} unshare --mount "
                  f"sh -c {shlex.quote(inner)}")
        with open(self.log, "wb") as log:
            start = time.monotonic()
            # Each step execs the next: the Popen's pid ends up networkd's.
            self.process = subprocess.Popen(["unshare", "--mount", "sh", "-c", script],
                                            stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                            start_new_session=True)
        return start

    def stop(self) -> None:
        terminate(self.process)
        self.process = None

    def tail(self, lines: int = 10) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
