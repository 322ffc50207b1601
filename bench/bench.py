"""Benchmark: macvland beside the kernel's own speed, at 10, 100 and 1,000 interfaces (issue 5).

Run it with `make bench` (or `.venv/bin/python -m bench.bench --help`), as root. It prints a
table and writes the same figures as JSON (bench/results.json unless `--json PATH`).

Everything happens in throwaway network namespaces named `mvb<random>-...`: a "home" namespace
with veth parents, where `macvland run` runs as the daemon under test (`ip netns exec`), and in
the "spread" layout ten target namespaces. The daemon is stopped and the namespaces deleted in
`finally` blocks, so a failure leaves nothing behind. The host's own interfaces are never read
or touched.

For each N and each layout -- "one": all N on one parent in the home namespace; "spread": over
10 namespaces and 4 parents -- the interfaces take the modes bridge, vepa, private and source
(with two source MACs) in turn, and the benchmark measures:

1. converge from empty: with the daemon running on `interfaces: []`, the full spec is written
   to a temporary file in the spec's directory and renamed over the spec. The time runs from
   the rename until the kernel shows all N with the right parent, mode, state and source MACs
   ("daemon"), and until they also carry macvland's owner mark ("+mark"). One `ip -batch`
   creating the same interfaces just before, in each repetition, gives the ratio (the median
   of the repetitions' ratios is reported: the machine's speed drifts). In the "one" layout,
   systemd-networkd is timed the same way, started fresh on .netdev files for the same
   interfaces (see Networkd; it leaves them down, so only their presence and settings count).
   `macvland apply` from empty is timed as a process, beside the cost of starting Python and
   importing `macvland.cli`.
2. no-op pass: in-process `reconcile()` with nothing to do (one link dump per namespace):
   median time and netlink writes; and the daemon's own pass after a SIGHUP (which reads its
   link tables kept from events), from its --verbose line.
3. one change: an mtu change and then a mode change of one interface, each renamed into place:
   time until the kernel shows it, and the writes counted by the daemon's --verbose pass lines.
4. repair: an interface deleted out of band -- RTM_DELLINK sent in-process on the benchmark's
   own netlink socket, so no fork is timed -- many times: p50 and p99 from sending the delete
   until the interface is back as specified (a new ifindex with the right settings).
5. prune: the empty spec renamed into place: time until all N are gone, against `ip -batch`
   with one `link del` per interface (one request per interface: one-by-one deletion), and
   beside the kernel's floor: the same links deleted in-process by link group.
6. idle: the daemon's CPU time and context switches (wake-ups), summed over all its threads
   from /proc/PID/task, over a window with nothing happening; and its peak RSS (VmHWM).

How the kernel is watched: the benchmark subscribes to link events (RTMGRP_LINK) in every
namespace involved and keeps each link's state from them, so the end of a measurement is the
arrival of the event that completes it, without polling; one link dump per namespace then
confirms it (and replaces the state after an event overflow). Before each measurement the
daemon is let go quiet (its CPU time and context switches stop moving), so that the tail of
one measurement never lands in the next.

The machines are noisy: compare the ratios, measured in the same run, more than the times.
"""

from __future__ import annotations

import argparse
import errno
import json
import math
import os
import platform
import re
import select
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from macvland.intake import load_spec
from macvland.ledger import Ledger
from macvland.model import OWNER_ALIAS, Key
from macvland.netns import Namespaces
from macvland.reconcile import reconcile
from macvland.rtnl import (
    IFLA_GROUP,
    RTM_DELLINK,
    RTM_NEWLINK,
    RawLink,
    decode_link,
    ifinfo,
    messages,
    u32,
)

NETNS_DIR = "/run/netns"
MODES = ("bridge", "vepa", "private", "source")
LAYOUTS = ("one", "spread")
TARGET_NAMESPACES = 10
SPREAD_PARENTS = ("eth1", "eth2", "eth3", "eth4")
DEBOUNCE_MS = 50
RTMGRP_LINK = 0x1
SO_RCVBUFFORCE = 33
FLUSH_GROUP = 0x6D7662
"""The link group the benchmark's own clean-up deletes by (only in its own namespaces)."""
DEFAULT_JSON = Path(__file__).with_name("results.json")

Check = Callable[[RawLink | None], bool]


class BenchError(Exception):
    """The benchmark could not go on (the daemon died, the kernel never converged...)."""


# --- what is created -----------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Item:
    """One macvlan of the benchmark, as the spec and as `ip` say it."""

    name: str
    parent: str
    mode: str
    netns: str | None = None
    source_macs: tuple[str, ...] = ()
    mtu: int | None = None

    @property
    def key(self) -> Key:
        return (self.netns, self.name)

    def yaml(self) -> str:
        fields = [f"name: {self.name}", f"parent: {self.parent}", f"mode: {self.mode}"]
        if self.netns:
            fields.append(f"netns: {self.netns}")
        if self.source_macs:
            fields.append("source_macs: [" + ", ".join(f'"{m}"' for m in self.source_macs) + "]")
        if self.mtu:
            fields.append(f"mtu: {self.mtu}")
        return "  - {" + ", ".join(fields) + "}"

    def netdev(self) -> str:
        """The systemd .netdev file that creates it (the "one" layout only: a .netdev cannot
        name another namespace)."""
        lines = ["[NetDev]", f"Name={self.name}", "Kind=macvlan", "[MACVLAN]",
                 f"Mode={self.mode}"]
        if self.source_macs:
            lines.append(f"SourceMACAddress={' '.join(self.source_macs)}")
        if self.mtu:
            lines.insert(3, f"MTUBytes={self.mtu}")
        return "\n".join(lines) + "\n"

    def ip_add(self) -> str:
        """The `ip -batch` line (run in the home namespace) that creates it."""
        where = f" netns {self.netns}" if self.netns else ""
        mtu = f" mtu {self.mtu}" if self.mtu else ""
        macs = f" macaddr set {' '.join(self.source_macs)}" if self.source_macs else ""
        return (f"link add {self.name} link {self.parent}{where}{mtu} up "
                f"type macvlan mode {self.mode}{macs}")


def make_items(n: int, layout: str, targets: Sequence[str]) -> list[Item]:
    items = []
    for i in range(n):
        mode = MODES[i % len(MODES)]
        macs = tuple(f"02:b0:{i >> 8 & 255:02x}:{i & 255:02x}:00:{k:02x}" for k in (1, 2)) \
            if mode == "source" else ()
        if layout == "one":
            items.append(Item(f"mv{i}", "eth1", mode, None, macs))
        else:
            parent = SPREAD_PARENTS[i // TARGET_NAMESPACES % len(SPREAD_PARENTS)]
            items.append(Item(f"mv{i}", parent, mode, targets[i % TARGET_NAMESPACES], macs))
    return items


def spec_text(items: Iterable[Item]) -> str:
    lines = [item.yaml() for item in items]
    if not lines:
        return "version: 1\ninterfaces: []\n"
    return "version: 1\ninterfaces:\n" + "\n".join(lines) + "\n"


# --- checks on what the kernel shows --------------------------------------------------------

def as_specified(item: Item, parent_ifindex: int, up: bool = True) -> Check:
    """The kernel shows `item` as specified; with `up` False, in either admin state
    (networkd leaves a netdev that no .network file matches down)."""
    macs = frozenset(item.source_macs)

    def check(link: RawLink | None) -> bool:
        return (link is not None and link.kind == "macvlan" and link.mode == item.mode
                and (link.up or not up) and link.link == parent_ifindex
                and link.source_macs == macs
                and (item.mtu is None or link.mtu == item.mtu))
    return check


def marked(check: Check) -> Check:
    return lambda link: check(link) and link is not None and link.alias == OWNER_ALIAS


def replaced(check: Check, old_ifindex: int) -> Check:
    return lambda link: check(link) and link is not None and link.ifindex != old_ifindex


def gone(link: RawLink | None) -> bool:
    return link is None


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
    """The home namespace with its veth parents, and the target namespaces (spread layout)."""

    def __init__(self, prefix: str, layout: str) -> None:
        self.home = f"{prefix}-home"
        self.targets = [f"{prefix}-t{k}" for k in range(TARGET_NAMESPACES)] \
            if layout == "spread" else []
        self.parents = SPREAD_PARENTS if layout == "spread" else ("eth1",)
        self.created: list[str] = []
        self.namespaces = Namespaces(home=f"{NETNS_DIR}/{self.home}")

    @property
    def item_namespaces(self) -> list[str | None]:
        """Where the macvlans live: the targets, or home (None)."""
        return list(self.targets) or [None]

    def setup(self) -> None:
        for name in (self.home, *self.targets):
            ip("netns", "add", name)
            self.created.append(name)
        for parent in self.parents:
            ip("-n", self.home, "link", "add", parent, "type", "veth", "peer", "name",
               f"{parent}-peer")
            ip("-n", self.home, "link", "set", parent, "up")

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


# --- the daemon under test ---------------------------------------------------------------------

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


# --- one scenario: N interfaces in one layout ------------------------------------------------

@dataclass
class Config:
    sizes: list[int]
    layouts: list[str] = field(default_factory=lambda: list(LAYOUTS))
    quick: bool = False
    converge_reps: int = 5
    noop_reps: int = 9
    repairs: int = 50
    """Out-of-band deletions at N >= 1,000; at most 20 below (and 2 per interface)."""
    idle_s: float = 10.0
    settle_s: float = 1.2
    """How long the daemon must stay still after a measurement before the next one. The
    kernel's link watcher reports a new link's operational state up to 1 s later, and that
    event wakes the daemon for one more (empty) pass."""
    prune_sample: int | None = None
    """Delete only this many one by one and extrapolate (labelled as extrapolated)."""
    prefix: str = field(default_factory=lambda: f"mvb{uuid.uuid4().hex[:8]}")


class Scenario:
    """Every measurement for one N and one layout, in one lab with one daemon."""

    def __init__(self, n: int, layout: str, config: Config, workdir: Path) -> None:
        self.n = n
        self.layout = layout
        self.config = config
        self.workdir = workdir
        self.lab = Lab(f"{config.prefix}-{n}{layout[0]}", layout)
        self.items = make_items(n, layout, self.lab.targets)
        self.view: KernelView | None = None
        self.daemon: Daemon | None = None
        self.networkd: Networkd | None = None
        self.networkd_skipped = ""
        binary = networkd_binary()
        if layout != "one":
            self.networkd_skipped = "a .netdev cannot name another namespace"
        elif binary is None:
            self.networkd_skipped = "systemd-networkd is not installed"
        else:
            self.networkd = Networkd(binary, self.lab.home, workdir)
        self.parents: dict[str, int] = {}
        self.result: dict[str, Any] = {"n": n, "layout": layout}

    def run(self) -> dict[str, Any]:
        try:
            self.lab.setup()
            self.parents = self.lab.parent_ifindexes()
            self.view = KernelView(self.lab.namespaces, self.lab.item_namespaces)
            self.result["apply"] = self.measure_apply()
            self.daemon = Daemon(self.lab.home, self.workdir)
            self.daemon.start(spec_text([]))
            self.measure_daemon()
            self.result["prune"]["one_by_one"] = self.measure_one_by_one()
            self.result["daemon_problems"] = self.daemon.problems(0)
        finally:
            if self.daemon is not None:
                self.daemon.stop()
            if self.view is not None:
                self.view.close()
            self.lab.close()
        return self.result

    # -- helpers

    def expect(self, items: Iterable[Item], make: Callable[[Check], Check] = lambda c: c,
               up: bool = True) -> dict[Key, Check]:
        return {item.key: make(as_specified(item, self.parents[item.parent], up))
                for item in items}

    def write_spec(self, items: Sequence[Item], name: str) -> Path:
        path = self.workdir / name
        path.write_text(spec_text(items))
        return path

    def kernel_wait(self, expect: Mapping[Key, Check], what: str, timeout: float = 60.0) -> float:
        assert self.view is not None
        done = self.view.wait(expect, timeout)
        if done is None:
            unmet = sorted(self.view.unmet(expect), key=str)
            seen = "\n".join(f"  {key}: {self.view.links.get(key)}" for key in unmet[:3])
            log = f"\ndaemon log:\n{self.daemon.tail()}" if self.daemon else ""
            raise BenchError(f"N={self.n} {self.layout}, {what}: the kernel did not show it "
                             f"within {timeout} s; {len(unmet)} unmet, e.g.\n{seen}{log}")
        return done

    def ip_batch(self, lines: Sequence[str], netns: str | None = None) -> float:
        """Run `ip -batch` (in `netns`, default home) and return its wall time."""
        batch = self.workdir / "ip.batch"
        batch.write_text("\n".join(lines) + "\n")
        seconds, result = timed([*self.lab.ip_in(netns), "-batch", str(batch)])
        if result.returncode != 0:
            raise BenchError(f"ip -batch: {result.stderr.strip()[:500]}")
        return seconds

    # -- 1. converge from empty: `macvland apply` and start-up

    def measure_apply(self) -> dict[str, Any]:
        """`macvland apply` from empty, as a process, before the daemon starts."""
        spec = self.write_spec(self.items, "full.yaml")
        env = {**os.environ, "MACVLAND_STATE_DIR": str(self.workdir / "apply-state")}
        wall, result = timed(["ip", "netns", "exec", self.lab.home, macvland_binary(), "apply",
                              "-c", str(spec)], env=env)
        if result.returncode != 0:
            raise BenchError(f"macvland apply failed:\n{result.stderr[-2000:]}")
        self.kernel_wait(self.expect(self.items, marked), "macvland apply", 10)
        self.lab.flush()
        exec_home = ["ip", "netns", "exec", self.lab.home, sys.executable, "-c"]
        startup = statistics.median(timed([*exec_home, "import macvland.cli"])[0]
                                    for _ in range(3))
        bare = statistics.median(timed([*exec_home, "pass"])[0] for _ in range(3))
        return {"wall_s": wall, "startup_imports_s": startup, "python_bare_s": bare,
                "work_s": wall - startup}

    # -- the daemon's measurements, in the order they run

    def measure_daemon(self) -> None:
        converge: dict[str, list[Any]] = {k: [] for k in (
            "ip_batch_s", "daemon_s", "daemon_marked_s", "pass_ms", "parse_ms", "writes", "passes",
            "daemon_cpu_s", "daemon_cpu_by_thread", "networkd_s")}
        prune: dict[str, list[Any]] = {k: [] for k in (
            "daemon_s", "group_delete_s", "pass_ms", "writes", "passes")}
        for rep in range(self.config.converge_reps):
            created, deleted = self.measure_ip_batch()
            converge["ip_batch_s"].append(created)
            prune["group_delete_s"].append(deleted)
            if self.networkd is not None:
                try:
                    converge["networkd_s"].append(self.measure_networkd())
                except BenchError as error:  # a comparison, not the subject: note it, go on
                    self.networkd, self.networkd_skipped = None, f"failed: {error}"
            for k, v in self.measure_converge().items():
                converge[k].append(v)
            if rep == 0:
                self.result["noop"] = self.measure_noop()
                self.result["change"] = self.measure_changes()
                self.result["repair"] = self.measure_repairs()
                self.result["idle"] = self.measure_idle()
            for k, v in self.measure_prune().items():
                prune[k].append(v)
        self.result["converge"] = summarize_converge(converge)
        if self.networkd is None:
            self.result["converge"]["networkd_skipped"] = self.networkd_skipped
        self.result["prune"] = {**prune, "daemon_median_s": statistics.median(prune["daemon_s"]),
                                "group_delete_median_s": statistics.median(prune["group_delete_s"])}

    def measure_networkd(self) -> float:
        """systemd-networkd started fresh, until the kernel shows all N (in either admin
        state: it leaves them down); then it is stopped and its interfaces deleted."""
        assert self.networkd is not None and self.view is not None and self.daemon is not None
        self.daemon.wait_quiet()
        self.networkd.write(self.items)
        start = self.networkd.start()
        try:
            done = self.view.wait(self.expect(self.items, up=False), 30)
            if done is None:
                raise BenchError(f"systemd-networkd did not create the interfaces:\n"
                                 f"{self.networkd.tail()}")
        finally:
            self.networkd.stop()
            self.lab.flush()
            self.view.reset()
            self.daemon.wait_quiet(self.config.settle_s)
        return done - start

    def measure_ip_batch(self) -> tuple[float, float]:
        """`ip -batch` creating the spec's interfaces; then, as the floor of a prune, the
        in-process deletion of them all by link group (set the group, one RTM_DELLINK)."""
        assert self.daemon is not None and self.view is not None
        self.daemon.wait_quiet()
        created = self.ip_batch([item.ip_add() for item in self.items])
        self.view.reset()
        if self.view.wait(self.expect(self.items), 5) is None:
            raise BenchError("ip -batch did not create what the spec asks for")
        deleted = _seconds(self.lab.flush)
        self.view.reset()
        self.daemon.wait_quiet(self.config.settle_s)
        return created, deleted

    def measure_converge(self) -> dict[str, Any]:
        assert self.daemon is not None and self.view is not None
        offset = self.daemon.offset()
        before = self.daemon.usage()
        start = self.daemon.replace_spec(spec_text(self.items))
        done = self.kernel_wait(self.expect(self.items), "converge")
        done_marked = self.kernel_wait(self.expect(self.items, marked), "converge (marks)")
        passes = self.settle(offset)
        after = self.daemon.usage()
        return {"daemon_s": done - start, "daemon_marked_s": done_marked - start,
                "pass_ms": [p.ms for p in passes], "writes": sum(p.writes for p in passes),
                "parse_ms": self.daemon.parse_ms(offset, len(self.items)),
                "passes": len(passes), "daemon_cpu_s": after.cpu_s - before.cpu_s,
                "daemon_cpu_by_thread": after.cpu_by_thread(before)}

    def settle(self, offset: int) -> list[PassLine]:
        """Wait for the daemon's pass line, then for it to go quiet; its pass lines."""
        assert self.daemon is not None
        if self.daemon.wait_pass(offset) is None:
            raise BenchError(f"no pass line from the daemon:\n{self.daemon.tail()}")
        self.daemon.wait_quiet(self.config.settle_s)
        return self.daemon.passes(offset)

    # -- 2. no-op pass

    def measure_noop(self) -> dict[str, Any]:
        assert self.daemon is not None
        desired = load_spec(str(self.daemon.spec))
        namespaces = self.lab.namespaces
        ledger = Ledger(str(self.workdir / "bench-state"))
        reconcile(desired, namespaces, ledger)  # opens the sockets
        times, writes, operations = [], 0, 0
        for _ in range(self.config.noop_reps):
            before = namespaces.writes
            start = time.perf_counter()
            result = reconcile(desired, namespaces, ledger)
            times.append(1000 * (time.perf_counter() - start))
            writes += namespaces.writes - before
            operations += len(result.plan.operations)
        daemon = [self.daemon.hangup_pass() for _ in range(self.config.noop_reps)]
        return {"pass_ms": times, "pass_ms_median": statistics.median(times), "writes": writes,
                "operations": operations,
                "daemon_pass_ms": [p.ms for p in daemon],
                "daemon_pass_ms_median": statistics.median(p.ms for p in daemon),
                "daemon_writes": sum(p.writes for p in daemon),
                "daemon_operations": sum(p.operations for p in daemon),
                "method": "in-process reconcile() without a link cache (one dump per namespace); "
                          "daemon: SIGHUP, its --verbose pass line (link tables from events)"}

    # -- 3. one change

    def measure_changes(self) -> list[dict[str, Any]]:
        mode_index = 4 * (self.n // 8)  # a bridge-mode interface
        mtu_index = self.n - 1
        return [self.measure_change(mtu_index, "mtu", replace(self.items[mtu_index], mtu=1400)),
                self.measure_change(mode_index, "mode",
                                    replace(self.items[mode_index], mode="vepa"))]

    def measure_change(self, index: int, field_name: str, changed: Item) -> dict[str, Any]:
        assert self.daemon is not None
        assert self.view is not None
        items = [*self.items[:index], changed, *self.items[index + 1:]]
        self.view.dump()
        if not self.view.unmet(self.expect([changed])):
            raise BenchError(f"{field_name} change: the kernel shows it before it is asked for")
        offset = self.daemon.offset()
        start = self.daemon.replace_spec(spec_text(items))
        done = self.kernel_wait(self.expect([changed]), f"{field_name} change", 10)
        passes = self.settle(offset)
        self.items = items
        return {"field": field_name, "interface": changed.name, "ms": 1000 * (done - start),
                "writes": sum(p.writes for p in passes), "passes": len(passes),
                "pass_ms": [p.ms for p in passes]}

    # -- 4. repair

    def measure_repairs(self) -> dict[str, Any]:
        # The daemon stops fighting for an interface undone more than 3 times a minute, so
        # each interface is deleted at most twice: fewer repetitions at small N.
        reps = min(self.config.repairs, 2 * self.n, 20 if self.n < 1000 else self.n)
        samples, deletes = [], []
        for rep in range(reps):
            item = self.items[(rep * 7919) % self.n] if reps <= self.n \
                else self.items[rep % self.n]
            latency, delete = self.measure_repair(item)
            samples.append(latency)
            deletes.append(delete)
        return {"method": "RTM_DELLINK in-process on the benchmark's own netlink socket; "
                          "from sending it until the event of the re-created link",
                "reps": reps, "p50_ms": percentile(samples, 50),
                "p99_ms": percentile(samples, 99), "max_ms": max(samples),
                "delete_ack_ms_median": statistics.median(deletes), "samples_ms": samples}

    def measure_repair(self, item: Item) -> tuple[float, float]:
        assert self.daemon is not None and self.view is not None
        self.daemon.wait_quiet()
        self.view.reset()
        old = self.view.links[item.key]
        offset = self.daemon.offset()
        sock = self.lab.namespaces.socket(item.netns)
        start = time.monotonic()
        sock.request(RTM_DELLINK, ifinfo(old.ifindex))
        acked = time.monotonic()
        check = replaced(as_specified(item, self.parents[item.parent]), old.ifindex)
        done = self.kernel_wait({item.key: check}, f"repair of {item.name}", 10)
        self.settle(offset)
        return 1000 * (done - start), 1000 * (acked - start)

    # -- 5. prune

    def measure_prune(self) -> dict[str, Any]:
        assert self.daemon is not None
        offset = self.daemon.offset()
        start = self.daemon.replace_spec(spec_text([]))
        done = self.kernel_wait(dict.fromkeys((item.key for item in self.items), gone), "prune")
        passes = self.settle(offset)
        return {"daemon_s": done - start, "pass_ms": [p.ms for p in passes],
                "writes": sum(p.writes for p in passes), "passes": len(passes)}

    def measure_one_by_one(self) -> dict[str, Any]:
        """`ip -batch` with one `link del` per interface (each its own RTM_DELLINK)."""
        assert self.daemon is not None and self.view is not None
        self.daemon.wait_quiet()
        self.ip_batch([item.ip_add() for item in self.items])
        sample = self.config.prune_sample
        chosen = self.items if sample is None or sample >= self.n else self.items[:sample]
        by_netns: dict[str | None, list[str]] = {}
        for item in chosen:
            by_netns.setdefault(item.netns, []).append(f"link del {item.name}")
        seconds = sum(self.ip_batch(lines, netns) for netns, lines in by_netns.items())
        self.lab.flush()
        self.view.reset()
        extrapolated = len(chosen) < self.n
        return {"seconds": seconds * self.n / len(chosen), "measured_links": len(chosen),
                "measured_s": seconds, "extrapolated": extrapolated,
                "method": "ip -batch, one `link del` line per interface, per namespace"}

    # -- 6. idle

    def measure_idle(self) -> dict[str, Any]:
        assert self.daemon is not None
        window = self.config.idle_s if self.n == max(self.config.sizes) \
            else min(self.config.idle_s, 3.0)
        self.daemon.wait_quiet(max(self.config.settle_s, 1.2))
        before = self.daemon.usage()
        time.sleep(window)
        after = self.daemon.usage()
        woke = {tid: after.per_thread[tid] - count for tid, count in before.per_thread.items()
                if tid in after.per_thread and after.per_thread[tid] != count}
        return {"window_s": window, "cpu_s": after.cpu_s - before.cpu_s,
                "wakeups": after.switches - before.switches,
                "wakeups_per_s": (after.switches - before.switches) / window,
                "threads": len(after.per_thread), "wakeups_by_thread": woke,
                "peak_rss_mb": self.daemon.peak_rss_mb()}


def _seconds(func: Callable[[], object]) -> float:
    start = time.perf_counter()
    func()
    return time.perf_counter() - start


def summarize_converge(raw: dict[str, list[Any]]) -> dict[str, Any]:
    """Medians; each ratio is the median of the repetitions' own ratios, since each pairs
    measurements taken seconds apart, while the machine's speed drifts over a run."""
    def ratio(key: str) -> float | None:
        pairs = list(zip(raw[key], raw["ip_batch_s"], strict=False))
        return statistics.median(t / ip for t, ip in pairs) if pairs else None

    def median(key: str) -> float | None:
        values = [v for v in raw[key] if v is not None]
        return statistics.median(values) if values else None
    return {**raw, "ip_batch_median_s": median("ip_batch_s"), "daemon_median_s": median("daemon_s"),
            "daemon_marked_median_s": median("daemon_marked_s"),
            "networkd_median_s": median("networkd_s"), "ratio": ratio("daemon_s"),
            "ratio_marked": ratio("daemon_marked_s"), "networkd_ratio": ratio("networkd_s"),
            "parse_median_ms": median("parse_ms"), "debounce_ms": DEBOUNCE_MS}


# --- targets ------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Target:
    name: str
    goal: str
    measure: Callable[[dict[str, Any]], tuple[str, bool]]


def _converge(r: dict[str, Any]) -> tuple[str, bool]:
    c = r["converge"]
    networkd = f"; networkd {c['networkd_ratio']:.2f}x" if c["networkd_ratio"] else ""
    return (f"{c['ratio']:.2f}x (medians {c['daemon_median_s']:.3f} s, "
            f"{c['ip_batch_median_s']:.3f} s){networkd}", c["ratio"] <= 1.5)


def _noop(r: dict[str, Any]) -> tuple[str, bool]:
    n = r["noop"]
    return (f"{n['pass_ms_median']:.1f} ms, {n['writes']} writes",
            n["pass_ms_median"] <= 50 and n["writes"] == 0)


def _daemon_noop(r: dict[str, Any]) -> tuple[str, bool]:
    n = r["noop"]
    return (f"{n['daemon_pass_ms_median']:.1f} ms, {n['daemon_writes']} writes",
            n["daemon_pass_ms_median"] <= 50 and n["daemon_writes"] == 0)


def _change(r: dict[str, Any]) -> tuple[str, bool]:
    changes = r["change"]
    text = "; ".join(f"{c['field']}: {c['ms']:.0f} ms, {c['writes']} write(s)" for c in changes)
    return text, all(c["writes"] == 1 and c["ms"] <= 100 for c in changes)


def _repair(r: dict[str, Any]) -> tuple[str, bool]:
    rp = r["repair"]
    return (f"p50 {rp['p50_ms']:.0f} ms, p99 {rp['p99_ms']:.0f} ms ({rp['reps']} reps)",
            rp["p50_ms"] <= DEBOUNCE_MS + 20 and rp["p99_ms"] <= 150)


def _prune(r: dict[str, Any]) -> tuple[str, bool]:
    p = r["prune"]
    speedup = p["one_by_one"]["seconds"] / p["daemon_median_s"]
    label = " (extrapolated)" if p["one_by_one"]["extrapolated"] else ""
    return (f"{speedup:.0f}x ({p['daemon_median_s']:.3f} s vs "
            f"{p['one_by_one']['seconds']:.2f} s{label})", speedup >= 50)


IDLE_WAKEUPS_PER_S = 0.2
"""'No wake-ups other than timers': resync is every 300 s and there is no watchdog here."""


def _idle(r: dict[str, Any]) -> tuple[str, bool]:
    i = r["idle"]
    return (f"{i['wakeups_per_s']:.2f} wake-ups/s, {1000 * i['cpu_s']:.0f} ms CPU in "
            f"{i['window_s']:.0f} s", i["wakeups_per_s"] <= IDLE_WAKEUPS_PER_S)


def _rss(r: dict[str, Any]) -> tuple[str, bool]:
    rss = r["idle"]["peak_rss_mb"]
    return f"{rss:.1f} MB", rss <= 60


TARGETS = (
    Target("converge from empty, daemon", "<= 1.5x ip -batch (networkd 1.96x)", _converge),
    Target("no-op pass, in-process", "<= 50 ms, 0 writes", _noop),
    Target("no-op pass, daemon (SIGHUP)", "<= 50 ms, 0 writes", _daemon_noop),
    Target("one change", "1 write each, <= 100 ms", _change),
    Target("repair", f"p50 <= {DEBOUNCE_MS + 20} ms, p99 <= 150 ms", _repair),
    Target("prune", ">= 50x one-by-one", _prune),
    Target("idle wake-ups", f"<= {IDLE_WAKEUPS_PER_S}/s (timers only)", _idle),
    Target("peak RSS", "<= 60 MB", _rss),
)


def evaluate(scenarios: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each target against each layout at the largest N (the targets are set for 1,000)."""
    largest = max(s["n"] for s in scenarios)
    rows = []
    for target in TARGETS:
        for s in scenarios:
            if s["n"] == largest:
                measured, ok = target.measure(s)
                rows.append({"target": target.name, "goal": target.goal, "n": s["n"],
                             "layout": s["layout"], "measured": measured, "pass": ok})
    return rows


# --- output ---------------------------------------------------------------------------------

def table(title: str, headers: Sequence[str], rows: Sequence[Sequence[object]],
          left: int = 2) -> str:
    """A plain-text table; the first `left` columns are text, the others figures."""
    cells = [[str(h) for h in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = [title]
    for k, row in enumerate(cells):
        lines.append("  ".join(c.rjust(w) if k and i >= left else c.ljust(w)
                               for i, (c, w) in enumerate(zip(row, widths, strict=True))).rstrip())
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _passes(pass_ms: Sequence[float]) -> str:
    """The first pass's time, and how many more passes followed (events, resyncs)."""
    more = f" (+{len(pass_ms) - 1})" if len(pass_ms) > 1 else ""
    return f"{pass_ms[0]:.0f}{more}" if pass_ms else "-"


def profile_line(s: dict[str, Any]) -> str:
    c = s["converge"]
    lost = sum("were lost (ENOBUFS)" in line for line in s.get("daemon_problems", []))
    return (f"  N={s['n']} {s['layout']}: {1000 * c['daemon_s'][0]:.0f} ms after the rename: "
            f"the spec parsed in {_ms(c['parse_ms'][0])} ms (within the {DEBOUNCE_MS} ms "
            f"debounce, or past it), then a first pass of {c['pass_ms'][0][0]:.0f} ms (whose "
            f"owner-mark wave and verifying read end after the kernel shows all); ip -batch "
            f"{1000 * c['ip_batch_s'][0]:.0f} ms; then "
            f"{c['passes'][0] - 1} more pass(es); {lost} event overflow(s) in the run")


def _ms(value: float | None) -> str:
    return "?" if value is None else f"{value:.0f}"


def report(results: dict[str, Any]) -> str:
    scenarios = results["scenarios"]
    meta = results["meta"]
    parts = [f"macvland benchmark: kernel {meta['kernel']}, {meta['cpus']} CPUs, debounce "
             f"{DEBOUNCE_MS} ms; times are medians of {meta['converge_reps']} unless said "
             f"otherwise; a converge ratio is the median of each repetition's own ratio"]
    parts.append(table("\n1. converge from empty (s; CPU s: the daemon's, from the rename until it "
                       "went quiet, follow-up passes included)", [
        "N", "layout", "ip -batch", "daemon", "ratio", "+mark", "ratio", "networkd", "ratio",
        "pass ms (+more)", "writes", "CPU s", "parse ms", "apply", "start-up+imports"], [[
            s["n"], s["layout"], f"{c['ip_batch_median_s']:.3f}", f"{c['daemon_median_s']:.3f}",
            f"{c['ratio']:.2f}", f"{c['daemon_marked_median_s']:.3f}", f"{c['ratio_marked']:.2f}",
            *((f"{c['networkd_median_s']:.3f}", f"{c['networkd_ratio']:.2f}")
              if c["networkd_median_s"] is not None else ("-", "-")),
            _passes(c["pass_ms"][0]), c["writes"][0], f"{c['daemon_cpu_s'][0]:.2f}",
            _ms(c["parse_median_ms"]), f"{s['apply']['wall_s']:.3f}",
            f"{s['apply']['startup_imports_s']:.3f}"]
            for s in scenarios for c in [s["converge"]]]))
    parts.append(table("\n2-3. no-op pass (in-process with dumps; daemon after SIGHUP) and one "
                       "change (daemon, from the rename)", [
        "N", "layout", "no-op ms", "writes", "daemon no-op ms", "writes",
        *[h for c in scenarios[0]["change"] for h in (f"{c['field']} ms", "writes", "passes")]],
        [[s["n"], s["layout"], f"{s['noop']['pass_ms_median']:.1f}", s["noop"]["writes"],
          f"{s['noop']['daemon_pass_ms_median']:.1f}", s["noop"]["daemon_writes"],
          *[v for c in s["change"] for v in (f"{c['ms']:.0f}", c["writes"], c["passes"])]]
         for s in scenarios]))
    parts.append(table("\n4-5. repair (out-of-band delete) and prune", [
        "N", "layout", "repairs", "p50 ms", "p99 ms", "prune daemon s", "pass ms (+more)",
        "writes", "group del s", "one-by-one s", "speedup"], [[
            s["n"], s["layout"], r["reps"], f"{r['p50_ms']:.0f}", f"{r['p99_ms']:.0f}",
            f"{p['daemon_median_s']:.3f}", _passes(p["pass_ms"][0]), p["writes"][0],
            f"{p['group_delete_median_s']:.3f}",
            f"{p['one_by_one']['seconds']:.2f}" + ("*" if p["one_by_one"]["extrapolated"] else ""),
            f"{p['one_by_one']['seconds'] / p['daemon_median_s']:.0f}x"]
            for s in scenarios for r, p in [(s["repair"], s["prune"])]]))
    parts.append(table("\n6. idle daemon", [
        "N", "layout", "window s", "CPU ms", "wake-ups", "per s", "threads", "peak RSS MB"], [[
            s["n"], s["layout"], f"{i['window_s']:.0f}", f"{1000 * i['cpu_s']:.0f}",
            i["wakeups"], f"{i['wakeups_per_s']:.2f}", i["threads"], f"{i['peak_rss_mb']:.1f}"]
            for s in scenarios for i in [s["idle"]]]))
    if any(s["prune"]["one_by_one"]["extrapolated"] for s in scenarios):
        parts.append("* extrapolated from a sample of one-by-one deletions (--prune-sample)")
    parts.append(table("\ntargets", ["target", "N/layout", "goal", "measured", "result"], [
        [t["target"], f"{t['n']} {t['layout']}", t["goal"], t["measured"],
         "PASS" if t["pass"] else "FAIL"] for t in results["targets"]], left=5))
    parts.append("\nwhere the daemon's converge time goes (first repetition, from its own "
                 "log):")
    parts.extend(profile_line(s) for s in scenarios)
    failed = [f"  N={s['n']} {s['layout']}: {s['converge']['networkd_skipped']}"
              for s in scenarios
              if s["converge"].get("networkd_skipped", "").startswith("failed")]
    if failed:
        parts.append("\nsystemd-networkd could not be compared:\n" + "\n".join(failed))
    problems = [f"{s['n']} {s['layout']}: {line}" for s in scenarios
                for line in s.get("daemon_problems", [])]
    if problems:
        parts.append("\ndaemon warnings and errors:\n" + "\n".join(problems[:20]))
    return "\n".join(parts)


# --- entry point --------------------------------------------------------------------------------

def parse_args(argv: Sequence[str] | None) -> tuple[Config, Path]:
    parser = argparse.ArgumentParser(prog="bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10,100,1000",
                        help="comma-separated numbers of interfaces (default 10,100,1000)")
    parser.add_argument("--layouts", default=",".join(LAYOUTS),
                        help="one, spread, or both (default)")
    parser.add_argument("--quick", action="store_true",
                        help="fewer repetitions, short idle window, one-by-one deletion sampled")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, metavar="PATH",
                        help=f"where to write the figures (default {DEFAULT_JSON})")
    parser.add_argument("--repairs", type=int,
                        help="out-of-band deletions at N >= 1000 (50; at most 20 below)")
    parser.add_argument("--idle", type=float, help="idle window in seconds (10)")
    parser.add_argument("--prune-sample", type=int,
                        help="delete only this many one by one, and extrapolate")
    parser.add_argument("--prefix", help="namespace name prefix (default mvb<random>)")
    args = parser.parse_args(argv)
    config = Config(sizes=[int(s) for s in args.sizes.split(",") if s],
                    layouts=[name for name in args.layouts.split(",") if name])
    if args.quick:
        config.converge_reps, config.noop_reps, config.repairs = 1, 3, 10
        config.idle_s, config.prune_sample, config.settle_s = 2.0, 50, 0.3
        config.quick = True
    config.repairs = args.repairs or config.repairs
    config.idle_s = args.idle or config.idle_s
    config.prune_sample = args.prune_sample or config.prune_sample
    if args.prefix:
        config.prefix = args.prefix
    if not config.sizes or any(n < 8 for n in config.sizes) \
            or not set(config.layouts) <= set(LAYOUTS):
        parser.error("sizes must be at least 8; layouts are one and spread")
    return config, args.json


def run(config: Config) -> dict[str, Any]:
    scenarios = []
    with tempfile.TemporaryDirectory(prefix=f"{config.prefix}-") as tmp:
        for n in config.sizes:
            for layout in config.layouts:
                print(f"N={n} {layout} ...", file=sys.stderr, flush=True)
                workdir = Path(tmp) / f"{n}-{layout}"
                workdir.mkdir()
                scenarios.append(Scenario(n, layout, config, workdir).run())
    meta = {"kernel": platform.release(), "cpus": os.cpu_count(), "python": sys.version.split()[0],
            "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "debounce_ms": DEBOUNCE_MS,
            "converge_reps": config.converge_reps, "quick": config.quick,
            "sizes": config.sizes, "layouts": config.layouts}
    return {"meta": meta, "scenarios": scenarios, "targets": evaluate(scenarios)}


def main(argv: Sequence[str] | None = None) -> int:
    if os.geteuid() != 0:
        print("bench: needs root (network namespaces)", file=sys.stderr)
        return 2
    config, json_path = parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, so every `finally` removes what it made.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        results = run(config)
    except BenchError as error:
        print(f"bench: {error}", file=sys.stderr)
        return 1
    json_path.write_text(json.dumps(results, indent=2) + "\n")
    print(report(results))
    print(f"\nfigures written to {json_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
