"""The systemd unit, sd_notify and the journald audit trail, each against the real thing.

PID 1 is not systemd here, so the unit is checked with `systemd-analyze`, sd_notify with a
socket the test owns, and the journal with a private systemd-journald in its own mount
namespace (the host's /run/systemd is never touched).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from macvland.audit import MESSAGE_IDS
from macvland.rtnl import RTPROT_MACVLAND
from macvland.systemd import Notifier
from tests.conftest import Lab
from tests.helpers import MACVLAND, Daemon, Process, exposure, stated_exposure, wait_for

ROOT = Path(__file__).parent.parent
UNIT = ROOT / "systemd" / "macvland.service"


def unit_for_test(tmp_path: Path) -> Path:
    """The unit with ExecStart pointing at this checkout's binary (verify needs it to exist)."""
    unit = tmp_path / "macvland.service"
    unit.write_text(UNIT.read_text().replace("/usr/local/bin/macvland", MACVLAND))
    return unit


def test_unit_verifies_cleanly(tmp_path: Path) -> None:
    result = subprocess.run(["systemd-analyze", "verify", "--man=no",
                             str(unit_for_test(tmp_path))], capture_output=True, text=True)
    assert result.returncode == 0
    assert result.stdout + result.stderr == ""  # unknown keys are only warnings: none at all


def test_unit_is_more_confined_than_networkd(tmp_path: Path) -> None:
    result = subprocess.run(["systemd-analyze", "security", "--offline=true",
                             str(unit_for_test(tmp_path))], capture_output=True, text=True)
    score = exposure(result.stdout + result.stderr)
    assert score <= stated_exposure(), result.stdout  # what the README says holds
    assert score < 2.8, result.stdout  # systemd-networkd's own unit scores 2.8


def test_unit_keeps_its_promises() -> None:
    settings: dict[str, set[str]] = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            settings.setdefault(key, set()).update(value.split())
    expected = {"Type": {"notify"}, "Restart": {"on-failure"}, "Wants": {"network-pre.target"},
                "Before": {"network-pre.target", "network.target"},
                "RestrictAddressFamilies": {"AF_NETLINK", "AF_UNIX"},
                "NoNewPrivileges": {"yes"}, "ProtectSystem": {"strict"}, "ProtectHome": {"yes"},
                "PrivateTmp": {"yes"}, "SystemCallArchitectures": {"native"},
                "CapabilityBoundingSet": {"CAP_NET_ADMIN", "CAP_SYS_ADMIN"},
                # MountAPIVFS= (implied) keeps /run writable; hidepid=invisible exempts root.
                "ReadOnlyPaths": {"/run"}, "ProtectProc": {"ptraceable"}}
    for key, values in expected.items():
        assert values <= settings.get(key, set()), key
    assert settings["ExecReload"] == {"/usr/local/bin/macvland", "reload", "--pid", "$MAINPID"}
    assert "WatchdogSec" in settings
    # Boot never waits on the network for us.
    assert not any("network-online" in v for vs in settings.values() for v in vs)


def test_catalog_explains_every_message_id(tmp_path: Path) -> None:
    """journalctl itself parses the catalog, in a root of the test's own."""
    catalogs = tmp_path / "usr" / "lib" / "systemd" / "catalog"
    catalogs.mkdir(parents=True)
    shutil.copy(ROOT / "systemd" / "macvland.catalog", catalogs)
    subprocess.run(["journalctl", f"--root={tmp_path}", "--update-catalog"], check=True)
    listed = subprocess.run(["journalctl", f"--root={tmp_path}", "--list-catalog"],
                            capture_output=True, text=True, check=True).stdout
    subjects = dict(line.split(" ", 1) for line in listed.splitlines())
    assert set(subjects) == set(MESSAGE_IDS.values())
    for event, message_id in MESSAGE_IDS.items():
        entry = subprocess.run(["journalctl", f"--root={tmp_path}", "--dump-catalog",
                                message_id], capture_output=True, text=True, check=True).stdout
        header, _, body = entry.partition("\n\n")
        assert "Subject: macvland " in header, event
        assert "Defined-By: macvland" in header, event
        # What happened, then (a second paragraph) why it matters and what to do.
        assert body.strip().count("\n\n") >= 1 or event == "spec-accepted", event


def test_make_install_keeps_an_existing_spec(tmp_path: Path) -> None:
    dirs = {"PREFIX": tmp_path / "usr", "LIBDIR": tmp_path / "opt", "SYSCONFDIR": tmp_path / "etc",
            "UNITDIR": tmp_path / "units", "CATALOGDIR": tmp_path / "catalog"}
    spec = dirs["SYSCONFDIR"] / "macvland" / "macvland.yaml"
    make = ["make", "-C", str(ROOT), "install", *(f"{k}={v}" for k, v in dirs.items())]

    subprocess.run(make, check=True, capture_output=True, timeout=600)
    fresh = spec.read_text()
    assert fresh.startswith("version: 1\ninterfaces: []\n")  # nothing created by surprise
    unit = (dirs["UNITDIR"] / "macvland.service").read_text()
    assert f"ExecStart={dirs['PREFIX']}/bin/macvland run" in unit
    assert f"ExecReload={dirs['PREFIX']}/bin/macvland reload --pid $MAINPID" in unit
    protos = (dirs["SYSCONFDIR"] / "iproute2" / "rt_protos.d" / "macvland.conf").read_text()
    assert f"\n{RTPROT_MACVLAND}\tmacvland\n" in protos  # `ip route` shows proto macvland
    catalog = (dirs["CATALOGDIR"] / "macvland.catalog").read_text()
    assert f"file://{dirs['PREFIX']}/share/doc/macvland/README.md" in catalog
    check = subprocess.run([str(dirs["PREFIX"] / "bin" / "macvland"), "validate", "-c",
                            str(spec)], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr

    spec.write_text("version: 1\ninterfaces: []\n# mine\n")
    subprocess.run(make, check=True, capture_output=True, timeout=600)
    assert spec.read_text().endswith("# mine\n")


class NotifySocket:
    """A datagram socket standing in for systemd's NOTIFY_SOCKET, recording every message."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.2)
        self.messages: list[tuple[float, dict[str, str]]] = []
        self._stop = False
        self._thread = threading.Thread(target=self._receive, daemon=True)
        self._thread.start()

    def _receive(self) -> None:
        while not self._stop:
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            fields = dict(line.split("=", 1) for line in data.decode().splitlines() if line)
            self.messages.append((time.monotonic(), fields))

    def having(self, key: str) -> list[dict[str, str]]:
        return [m for _, m in self.messages if key in m]

    def close(self) -> None:
        self._stop = True
        self._thread.join(timeout=2)
        self.sock.close()


@pytest.fixture
def notify(tmp_path: Path) -> Iterator[NotifySocket]:
    sock = NotifySocket(tmp_path / "notify")
    yield sock
    sock.close()


def write_spec(path: Path, lab: Lab, mode: str = "vepa") -> Path:
    path.write_text(f"""\
version: 1
interfaces:
  - name: mv-web
    parent: eth1
    mode: {mode}
  - name: mv-db
    parent: eth1
    netns: {lab.name("db")}
""")
    return path


def test_sd_notify_protocol(lab: Lab, daemon: Daemon, tmp_path: Path,
                            notify: NotifySocket) -> None:
    spec = write_spec(tmp_path / "macvland.yaml", lab)
    daemon.start(spec, env={"NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "300000"})
    ready = daemon.wait_for(lambda: notify.having("READY"), "READY=1")
    # READY only after the first pass: the interface exists by then.
    assert "mv-web" in lab.links()
    assert ready[0]["STATUS"] == f"1 in sync, 1 pending: mv-db waits for netns " \
                                 f"{lab.name('db')}"
    daemon.wait_for(lambda: len(notify.having("WATCHDOG")) >= 3, "watchdog pings")

    daemon.signal(signal.SIGHUP)
    reloading = daemon.wait_for(lambda: notify.having("RELOADING"), "RELOADING=1")[0]
    assert int(reloading["MONOTONIC_USEC"]) > 0
    daemon.wait_for(lambda: len(notify.having("READY")) == 2, "READY=1 after the reload")
    # A reload that finds a bad spec keeps the old one, and is over all the same.
    spec.write_text("version: 1\ninterfaces: [\n")
    daemon.signal(signal.SIGHUP)
    daemon.wait_for(lambda: len(notify.having("READY")) == 3, "READY=1 after a rejected reload")
    order = [k for _, m in notify.messages for k in m if k in ("READY", "RELOADING")]
    assert order == ["READY", "RELOADING", "READY", "RELOADING", "READY"]
    assert "mv-web" in lab.links()

    assert daemon.stop() == 0
    wait_for(lambda: notify.having("STOPPING"), "STOPPING=1")
    assert "mv-web" in lab.links()  # stopping leaves the interfaces in place


@pytest.mark.parametrize(("environ", "interval"), [
    pytest.param({"NOTIFY_SOCKET": "/run/n", "WATCHDOG_USEC": "300000"}, 0.15, id="half"),
    pytest.param({"WATCHDOG_USEC": "300000"}, None, id="no-socket-no-one-to-ping"),
    pytest.param({"NOTIFY_SOCKET": "/run/n"}, None, id="no-watchdog"),
    pytest.param({"NOTIFY_SOCKET": "/run/n", "WATCHDOG_USEC": "300000",
                  "WATCHDOG_PID": str(os.getpid() + 1)}, None, id="meant-for-another-process"),
])
def test_the_watchdog_is_pinged_only_when_someone_listens(
        environ: dict[str, str], interval: float | None) -> None:
    assert Notifier(environ).watchdog_interval == interval


def reload(pid: int, state_dir: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([MACVLAND, "reload", "--pid", str(pid), *args], capture_output=True,
                          text=True, timeout=120,
                          env={**os.environ, "MACVLAND_STATE_DIR": state_dir})


def test_reload_returns_once_the_spec_it_read_is_in_force(
        lab: Lab, daemon: Daemon, tmp_path: Path) -> None:
    spec = write_spec(tmp_path / "macvland.yaml", lab)
    # A long debounce: the pass comes seconds after the signal, so a reload that did not wait
    # for it would return while the kernel still has the old mode.
    daemon.start(spec, extra=["--debounce", "1500"])
    daemon.wait_for(lambda: "mv-web" in lab.links(), "mv-web")
    pid = daemon.pid
    for mode in ("private", "bridge"):
        write_spec(spec, lab, mode=mode)
        done = reload(pid, lab.state_dir)
        assert done.returncode == 0, done.stderr
        assert lab.links()["mv-web"]["linkinfo"]["info_data"]["mode"] == mode
        assert done.stdout.startswith("reloaded: spec "), done.stdout
        assert "1 in sync, 1 pending: mv-db waits for netns" in done.stdout

    write_spec(spec, lab, mode="vepa")
    # Overlapping reloads are all answered, by one pass or more.
    together = [subprocess.Popen([MACVLAND, "reload", "--pid", str(pid)],
                                 env={**os.environ, "MACVLAND_STATE_DIR": lab.state_dir},
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                for _ in range(4)]
    assert [p.wait(timeout=120) for p in together] == [0, 0, 0, 0]
    assert lab.links()["mv-web"]["linkinfo"]["info_data"]["mode"] == "vepa"

    spec.write_text("version: 1\ninterfaces:\n  - name: mv-web\n    mode: brige\n")
    refused = reload(pid, lab.state_dir)
    assert refused.returncode == 1
    assert "the spec was rejected (2 problem(s);" in refused.stderr
    assert "stays in force" in refused.stderr
    assert lab.links()["mv-web"]["linkinfo"]["info_data"]["mode"] == "vepa"
    assert "spec rejected" in daemon.log()
    assert daemon.stop() == 0


def _reaped_child(script: str) -> tuple[subprocess.Popen[str], int]:
    """A process whose parent (a shell) reaps it, as systemd reaps a main process."""
    shell = subprocess.Popen(["sh", "-c", f"{script} & echo $!; wait"], stdout=subprocess.PIPE,
                             text=True)
    assert shell.stdout is not None
    return shell, int(shell.stdout.readline())


def test_reload_of_a_process_that_exits_fails_clearly(tmp_path: Path) -> None:
    shell, pid = _reaped_child("sleep 60")  # SIGHUP ends it
    try:
        done = reload(pid, str(tmp_path))
        assert (done.returncode, done.stderr) == (
            1, f"macvland: process {pid} exited before finishing the reload\n")
    finally:
        shell.kill()
        shell.wait()


def test_reload_of_a_process_that_never_answers_fails_in_bounded_time(tmp_path: Path) -> None:
    armed = tmp_path / "armed"
    shell, pid = _reaped_child(
        f"{sys.executable} -c 'import signal, time; "
        f"signal.signal(signal.SIGHUP, signal.SIG_IGN); open(\"{armed}\", \"w\"); "
        "time.sleep(60)'")
    try:
        wait_for(armed.exists, "SIGHUP ignored")
        done = reload(pid, str(tmp_path), "--timeout", "0.5")
        assert done.returncode == 1
        assert done.stderr.startswith(
            f"macvland: process {pid} did not finish the reload within 0.5 s: no answer in "
            f"{tmp_path}/reload.json"), done.stderr
    finally:
        os.kill(pid, signal.SIGKILL)
        shell.wait()


def test_reload_of_no_process_fails_clearly(tmp_path: Path) -> None:
    done = reload(2**22 + 1, str(tmp_path))  # above pid_max's ceiling: never a process
    assert (done.returncode, done.stderr) == (1, f"macvland: no process {2**22 + 1} to reload\n")


class Journald(Process):
    """A private systemd-journald, in its own mount namespace, with volatile storage."""

    def __init__(self, tmp_path: Path) -> None:
        super().__init__("journald", tmp_path / "journald.log")
        self.root = tmp_path / "journald"
        self.journal_dir = self.root / "run-log" / "journal"

    def start(self) -> None:
        run_systemd, run_log = self.root / "run-systemd", self.root / "run-log"
        run_systemd.mkdir(parents=True)
        run_log.mkdir()
        conf = self.root / "journald.conf"
        conf.write_text("[Journal]\nStorage=volatile\nReadKMsg=no\nForwardToSyslog=no\n"
                        "ForwardToKMsg=no\nForwardToConsole=no\nForwardToWall=no\n"
                        "RateLimitIntervalSec=0\n")
        script = (f"mount -n --bind {run_systemd} /run/systemd && "
                  f"mount -n --bind {run_log} /run/log && "
                  f"mount -n --bind {conf} /etc/systemd/journald.conf && "
                  # With the audit capabilities journald would switch kernel auditing on.
                  "exec capsh --drop=cap_audit_control,cap_audit_read -- "
                  "-c 'exec /lib/systemd/systemd-journald'")
        self.spawn(["unshare", "--mount", "--propagation", "private", "sh", "-c", script])
        self.wait_for(lambda: (run_systemd / "journal" / "socket").exists(), "journald's socket")

    @property
    def mount_namespace(self) -> str:
        return f"/proc/{self.pid}/ns/mnt"

    def records(self) -> list[dict[str, Any]]:
        out = subprocess.run(["journalctl", "-D", str(self.journal_dir), "-o", "json",
                              "SYSLOG_IDENTIFIER=macvland"], capture_output=True, text=True)
        return [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]


@pytest.fixture
def journald(tmp_path: Path) -> Iterator[Journald]:
    if shutil.which("capsh") is None or not Path("/lib/systemd/systemd-journald").exists():
        pytest.fail("capsh and systemd-journald are needed (make test installs them)")
    journal = Journald(tmp_path)
    try:
        journal.start()
        yield journal
    finally:
        journal.kill()
        shutil.rmtree(journal.root, ignore_errors=True)


def test_journald_audit_trail(
        lab: Lab, daemon: Daemon, tmp_path: Path, journald: Journald) -> None:
    spec = write_spec(tmp_path / "macvland.yaml", lab)
    lab.add_netns("db")
    daemon.start(spec, extra=["--log", "journal"],
                 wrap=["nsenter", f"--mount={journald.mount_namespace}"])

    def record(message_id: str, **fields: str) -> dict[str, Any] | None:
        for r in journald.records():
            if r.get("MESSAGE_ID") == message_id and fields.items() <= r.items():
                return r
        return None

    created = daemon.wait_for(
        lambda: record(MESSAGE_IDS["create"], MACVLAND_INTERFACE="mv-web"), "a create record")
    assert created["MACVLAND_NETNS"] == "host"
    assert created["MACVLAND_PARENT"] == "eth1"
    assert created["MACVLAND_ACTION"] == "create"
    assert created["MACVLAND_TRIGGER"] == "startup"
    accepted = record(MESSAGE_IDS["spec-accepted"])
    assert accepted is not None
    assert created["MACVLAND_SPEC_SHA256"] == accepted["MACVLAND_SPEC_SHA256"]
    assert len(created["MACVLAND_SPEC_SHA256"]) == 64
    assert created["MESSAGE"] == "mv-web: create: macvlan vepa on eth1, up"

    write_spec(spec, lab, mode="private")
    changed = daemon.wait_for(
        lambda: record(MESSAGE_IDS["change"], MACVLAND_INTERFACE="mv-web"),
        "an in-place change record")
    assert (changed["MACVLAND_FIELD"], changed["MACVLAND_OLD"], changed["MACVLAND_NEW"]) \
        == ("mode", "vepa", "private")
    assert changed["MACVLAND_TRIGGER"] == "spec change"
    assert changed["MESSAGE"] == "mv-web: mode vepa -> private (in place)"

    lab.ip("link", "set", "mv-web", "type", "macvlan", "mode", "bridge")
    drift = daemon.wait_for(lambda: record(MESSAGE_IDS["drift-corrected"],
                                           MACVLAND_INTERFACE="mv-web"), "a drift correction")
    assert (drift["MACVLAND_FIELD"], drift["MACVLAND_OLD"], drift["MACVLAND_NEW"]) \
        == ("mode", "bridge", "private")
    assert drift["MACVLAND_TRIGGER"] == "drift"

    spec.write_text("version: 1\ninterfaces:\n  - name: mv-web\n    mode: brige\n")
    rejected = daemon.wait_for(lambda: record(MESSAGE_IDS["spec-rejected"]), "a rejected spec")
    assert rejected["PRIORITY"] == "3"
    assert f"{spec}:4:11: interfaces[0].mode: 'brige'" in rejected["MESSAGE"]
    assert "interfaces[0]: missing required key 'parent'" in rejected["MESSAGE"]
    assert rejected["MACVLAND_SPEC_SHA256"] != created["MACVLAND_SPEC_SHA256"]
    assert daemon.stop() == 0
