"""The unit under a booted systemd: Debian 12 in systemd-nspawn, driven with systemctl.

PID 1 here is not systemd, so a Debian 12 (systemd 252) root, built with mmdebstrap and cached
outside the checkout keyed by its package list, boots in systemd-nspawn with its own network
namespace (the host's interfaces are never touched), its own cgroups, and a private mount
namespace with a tmpfs over /run/systemd (nspawn keeps bookkeeping there). The checkout is
installed inside with `make install` from a wheelhouse built on the host (the container has
no network). Every command runs inside through nsenter into the container's PID 1.

The tests share one container and run in order: each step is what an operator does next.
`-m "not booted"` leaves them out while developing; `make test` runs them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import tomllib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from macvland.audit import MESSAGE_IDS
from tests.helpers import built_once, exposure, stated_exposure, wait_for

pytestmark = pytest.mark.booted

ROOT = Path(__file__).parent.parent
CACHE = Path("/var/cache/macvland-systest")
SUITE = "bookworm"
# What the unit needs to run and `make install` to build (the Makefile's DEBS join these).
PACKAGES = ["systemd", "systemd-sysv", "dbus", "iproute2", "python3-venv", "python3-dev",
            "libsystemd-dev", "pkg-config", "gcc", "make", "bpftool"]
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
WATCHDOG_SEC = 3
SLOW = 60.0
"""How long a wait inside the container may take: each look is an nsenter and a systemctl."""
SPEC = """\
version: 1
interfaces:
  - name: mv-web
    parent: eth1
    mode: {mode}
  - name: mv-db
    parent: eth1
    netns: db
"""
# A parent for the interfaces at every boot, before macvland starts.
PARENT_UNIT = """\
[Unit]
DefaultDependencies=no
Before=macvland.service

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/sbin/ip link add eth1 type veth peer name eth1-peer
ExecStart=/usr/sbin/ip link set eth1 up

[Install]
WantedBy=multi-user.target
"""


def _makefile_debs() -> list[str]:
    found = re.search(r"^DEBS := (.*)$", (ROOT / "Makefile").read_text(), re.M)
    assert found, "the Makefile's DEBS"
    return found[1].split()


def _key(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:16]


def debian_root() -> Path:
    """The Debian 12 root, built once per package list (about 30 s) and then reused."""
    packages = sorted(set(PACKAGES + _makefile_debs()))
    return built_once(
        CACHE / f"root-{SUITE}-{_key(SUITE, packages)}",
        lambda building: subprocess.run(["mmdebstrap", "--quiet", "--variant=apt",
                                         f"--include={','.join(packages)}", SUITE,
                                         str(building)], check=True, timeout=900),
        lock=CACHE / ".lock")


def wheelhouse() -> Path:
    """The project's dependencies (and build requirements) as files pip installs offline."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    requirements = sorted([*project["project"]["dependencies"],
                           *project["build-system"]["requires"]])

    def download(building: Path) -> None:
        # The container's python is Debian 12's 3.11, whatever runs the tests here.
        binary = [r for r in requirements if not r.startswith("systemd-python")]
        source = [r for r in requirements if r.startswith("systemd-python")]
        pip = [sys.executable, "-m", "pip", "download", "--quiet", "--dest", str(building),
               "--disable-pip-version-check"]
        subprocess.run([*pip, "--only-binary=:all:", "--python-version", "3.11",
                        "--implementation", "cp", "--abi", "cp311", "--abi", "abi3",
                        "--abi", "none", "--platform", "manylinux_2_28_x86_64",
                        "--platform", "manylinux_2_17_x86_64",
                        "--platform", "manylinux2014_x86_64", *binary],
                       check=True, timeout=600)
        subprocess.run([*pip, "--no-deps", "--no-binary=:all:", *source], check=True,
                       timeout=600)

    return built_once(CACHE / f"wheels-{_key(requirements)}", download, lock=CACHE / ".lock")


def _cgroup_roots() -> list[Path]:
    """Where the container's cgroups go: both trees of a hybrid host, or the one v2 tree."""
    base = Path("/sys/fs/cgroup")
    if (base / "cgroup.controllers").exists():
        return [base]
    return [p for p in (base / "unified", base / "systemd") if p.is_dir()]


def _pids(cgroup: Path) -> list[int]:
    pids = []
    for procs in cgroup.rglob("cgroup.procs"):
        with contextlib.suppress(OSError):
            pids += [int(p) for p in procs.read_text().split()]
    return pids


class Container:
    """One Debian 12 root in systemd-nspawn over a throwaway overlay of the cached root."""

    def __init__(self, root: Path, wheels: Path, scratch: Path) -> None:
        self.root, self.wheels, self.scratch = root, wheels, scratch
        self.name = f"macvland-systest-{uuid.uuid4().hex[:8]}"
        self.upper, self.work, self.merged = (scratch / d for d in ("upper", "work", "merged"))
        for directory in (self.upper, self.work, self.merged):
            directory.mkdir(parents=True)
        self.cgroups = [base / self.name for base in _cgroup_roots()]
        self.nspawn: subprocess.Popen[bytes] | None = None
        self.log = scratch / "console.log"
        self.pid = 0

    def put(self, path: str, source: Path) -> None:
        """Copy a tree into the root, before boot (written to the overlay's upper layer)."""
        target = self.upper / path.lstrip("/")
        shutil.copytree(source, target, symlinks=True, ignore=shutil.ignore_patterns(
            ".git", ".venv", "__pycache__", ".*_cache", "*.egg-info", "build"))

    def boot(self) -> None:
        for cgroup in self.cgroups:
            cgroup.mkdir(exist_ok=True)
        procs = " ".join(str(c / "cgroup.procs") for c in self.cgroups)
        script = f"""set -e
for procs in {procs}; do echo $$ > "$procs"; done
mkdir -p /run/systemd
mount -t tmpfs -o mode=0755 tmpfs /run/systemd
mount -t overlay overlay -o lowerdir={self.root},upperdir={self.upper},workdir={self.work} \\
    {self.merged}
exec systemd-nspawn --quiet --boot --directory={self.merged} --machine={self.name} \\
    --register=no --keep-unit --private-network --system-call-filter=bpf \\
    --bind-ro={self.wheels}:/wheelhouse --console=passive
"""
        with open(self.log, "ab") as log:
            self.nspawn = subprocess.Popen(
                ["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env={**os.environ, "SYSTEMD_NSPAWN_UNIFIED_HIERARCHY": "1"})
        self.pid = wait_for(self._init_pid, "the container's systemd", timeout=SLOW,
                            explain=self.console)
        state = wait_for(self._system_state, "the container's boot", timeout=2 * SLOW,
                         explain=self.console)
        failed = self.run("systemctl", "--failed", "--plain", "--no-legend").stdout
        assert state == "running", f"{state}: {failed}\n{self.console()}"

    def _init_pid(self) -> int | None:
        assert self.nspawn is not None
        if self.nspawn.poll() is not None:
            raise AssertionError(f"systemd-nspawn exited:\n{self.console()}")
        try:
            children = Path(f"/proc/{self.nspawn.pid}/task/{self.nspawn.pid}/children")
            for pid in children.read_text().split():
                if Path(f"/proc/{pid}/comm").read_text().strip() == "systemd":
                    return int(pid)
        except OSError:
            pass
        return None

    def _system_state(self) -> str | None:
        done = self.run("systemctl", "is-system-running", check=False)
        state = done.stdout.strip()
        return state if state in ("running", "degraded") else None

    def console(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    def run(self, *command: str, check: bool = True, input: str | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """A command inside, as root in every namespace of the container's PID 1."""
        done = subprocess.run(
            ["nsenter", f"--target={self.pid}", "--mount", "--uts", "--ipc", "--net", "--pid",
             "--cgroup", "--", "env", "-i", f"PATH={PATH}", "LANG=C.UTF-8", "HOME=/root",
             "SYSTEMD_PAGER=", "SYSTEMD_COLORS=0", *command],
            input=input, capture_output=True, text=True, timeout=timeout)
        if check and done.returncode != 0:
            raise AssertionError(f"{' '.join(command)}: exit {done.returncode}\n"
                                 f"{done.stdout}{done.stderr}")
        return done

    def sh(self, script: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run("sh", "-ec", script, check=check)

    def write(self, path: str, text: str) -> None:
        self.run("sh", "-c", f"mkdir -p $(dirname {path}) && cat > {path}", input=text)

    def show(self, unit: str, prop: str) -> str:
        return self.run("systemctl", "show", "-P", prop, unit).stdout.strip()

    def poweroff(self) -> None:
        assert self.nspawn is not None
        self.run("systemctl", "--no-block", "poweroff")
        self.nspawn.wait(timeout=120)
        self.nspawn = None
        self.pid = 0

    def destroy(self) -> None:
        """Everything this container made goes, whatever state it is in."""
        if self.nspawn is not None and self.nspawn.poll() is None:
            self.nspawn.send_signal(signal.SIGTERM)  # nspawn asks the container to halt
            try:
                self.nspawn.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.nspawn.kill()
        for cgroup in self.cgroups:
            if cgroup.is_dir():
                for _ in range(100):
                    pids = _pids(cgroup)
                    if not pids:
                        break
                    for pid in pids:
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(pid, signal.SIGKILL)
                    time.sleep(0.1)
                for directory in sorted((p for p in cgroup.rglob("*") if p.is_dir()),
                                        key=lambda p: len(p.parts), reverse=True):
                    directory.rmdir()
                cgroup.rmdir()
        if self.nspawn is not None:
            self.nspawn.wait(timeout=30)
        shutil.rmtree(self.scratch, ignore_errors=True)


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Container]:
    missing = [t for t in ("mmdebstrap", "systemd-nspawn", "nsenter", "unshare")
               if shutil.which(t) is None]
    if missing:
        pytest.fail(f"{', '.join(missing)} needed (make test installs them)")
    started = time.monotonic()
    container = Container(debian_root(), wheelhouse(), tmp_path_factory.mktemp("nspawn"))
    try:
        container.put("/usr/src/macvland", ROOT)
        container.boot()
        container.sh("cd /usr/src/macvland && PIP_NO_INDEX=1 PIP_FIND_LINKS=/wheelhouse "
                     "PIP_DISABLE_PIP_VERSION_CHECK=1 make install")
        container.write("/etc/systemd/system/systest-parent.service", PARENT_UNIT)
        # The watchdog's behaviour, in seconds instead of the unit's half minute.
        container.write("/etc/systemd/system/macvland.service.d/watchdog.conf",
                        f"[Service]\nWatchdogSec={WATCHDOG_SEC}s\nTimeoutAbortSec=2s\n")
        container.sh("systemctl daemon-reload && systemctl enable --now systest-parent")
        print(f"container ready in {time.monotonic() - started:.0f} s", file=sys.stderr)
        yield container
    finally:
        container.destroy()
        assert not container.scratch.exists()


def links(box: Container, netns: str | None = None) -> dict[str, dict[str, Any]]:
    command = ["ip", *(["-n", netns] if netns else []), "-d", "-j", "link", "show"]
    return {link["ifname"]: link for link in json.loads(box.run(*command).stdout)}


def mode(box: Container) -> str:
    return str(links(box)["mv-web"]["linkinfo"]["info_data"]["mode"])


def journal(box: Container, *matches: str) -> list[dict[str, Any]]:
    out = box.run("journalctl", "-u", "macvland", "-o", "json", "--no-pager", *matches).stdout
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def test_start_returns_after_the_first_pass(box: Container) -> None:
    box.write("/etc/macvland/macvland.yaml", SPEC.format(mode="vepa"))
    box.run("systemctl", "start", "macvland")
    # Type=notify: READY=1 comes after the first pass, so the interface is there already.
    assert mode(box) == "vepa"
    assert links(box)["mv-web"]["ifalias"] == "managed-by=macvland"
    assert box.show("macvland", "StatusText") == "1 in sync, 1 pending: mv-db waits for netns db"
    assert box.show("macvland", "ActiveState") == "active"


def test_a_namespace_added_later_reaches_the_daemon(box: Container) -> None:
    box.run("ip", "netns", "add", "db")
    wait_for(lambda: "mv-db" in links(box, "db"), "mv-db in netns db", timeout=SLOW)
    wait_for(lambda: box.show("macvland", "StatusText") == "2 in sync", "STATUS=2 in sync",
             timeout=SLOW)


def test_reload_returns_when_the_new_spec_is_in_force(box: Container) -> None:
    main_pid = box.show("macvland", "MainPID")
    for wanted in ("private", "bridge", "vepa"):
        box.write("/etc/macvland/macvland.yaml", SPEC.format(mode=wanted))
        box.run("systemctl", "reload", "macvland")
        assert mode(box) == wanted  # no waiting: the reload is over only when it is applied
    assert box.show("macvland", "MainPID") == main_pid


def test_a_rejected_spec_fails_the_reload_and_is_explained(box: Container) -> None:
    box.write("/etc/macvland/macvland.yaml", SPEC.format(mode="brige"))
    refused = box.run("systemctl", "reload", "macvland", check=False)
    assert refused.returncode != 0
    assert "failed" in refused.stderr
    assert box.show("macvland", "ActiveState") == "active"
    assert mode(box) == "vepa"  # the last good spec stays in force
    explained = box.run("journalctl", "-x", "-u", "macvland", "--no-pager",
                        f"MESSAGE_ID={MESSAGE_IDS['spec-rejected']}").stdout
    assert "interfaces[0].mode: 'brige' is not one of" in explained
    assert "Subject: macvland rejected the spec; the last good one stays in force" in explained
    assert "the last spec that validated stays in force" in explained
    box.write("/etc/macvland/macvland.yaml", SPEC.format(mode="vepa"))
    box.run("systemctl", "reload", "macvland")


def test_drift_is_repaired_and_explained(box: Container) -> None:
    drift_id = MESSAGE_IDS["drift-corrected"]
    web = ("MACVLAND_INTERFACE=mv-web", f"MESSAGE_ID={drift_id}")
    # mv-web's changes so far were the operator's (spec and reload): none of it is drift.
    assert journal(box, *web) == []
    box.run("ip", "link", "set", "mv-web", "type", "macvlan", "mode", "bridge")
    record = wait_for(lambda: journal(box, *web), "a drift record", timeout=SLOW)[-1]
    assert mode(box) == "vepa"
    accepted = journal(box, f"MESSAGE_ID={MESSAGE_IDS['spec-accepted']}")[-1]
    assert {k: record[k] for k in record if k.startswith("MACVLAND_")} == {
        "MACVLAND_INTERFACE": "mv-web", "MACVLAND_NETNS": "host", "MACVLAND_ACTION": "change",
        "MACVLAND_FIELD": "mode", "MACVLAND_OLD": "bridge", "MACVLAND_NEW": "vepa",
        "MACVLAND_TRIGGER": "drift",
        "MACVLAND_SPEC_SHA256": accepted["MACVLAND_SPEC_SHA256"]}
    assert record["_SYSTEMD_UNIT"] == "macvland.service"
    assert record["PRIORITY"] == "6"
    explained = box.run("journalctl", "-x", "-u", "macvland", "--no-pager", *web).stdout
    assert "Subject: macvland put back mode of mv-web (drift corrected)" in explained
    assert "mode was bridge, the spec in force" in explained


def test_proc_pid_ns_net_paths_work_as_documented(box: Container) -> None:
    """ProtectProc=ptraceable: a process macvland may ptrace (same user, no capabilities
    beyond its own) shows, and its namespace works; one with more capabilities is hidden, so
    its path is pending until CAP_SYS_PTRACE is added in a drop-in."""
    holders = {"bare": ["--property=CapabilityBoundingSet="], "full": []}
    pids = {}
    for name, confinement in holders.items():
        unit = f"systest-{name}"
        box.run("systemd-run", "--quiet", f"--unit={unit}", "--property=PrivateNetwork=yes",
                *confinement, "sleep", "infinity")
        pids[name] = box.show(unit, "MainPID")
        assert pids[name] != "0", unit
    extra = "".join(f"  - name: mv-{name}\n    parent: eth1\n    netns: /proc/{pid}/ns/net\n"
                    for name, pid in pids.items())
    try:
        box.write("/etc/macvland/macvland.yaml", SPEC.format(mode="vepa") + extra)
        box.run("systemctl", "reload", "macvland")
        inside = box.run("nsenter", f"--target={pids['bare']}", "--net", "--", "ip", "-br",
                         "link").stdout
        assert "mv-bare@" in inside
        assert box.show("macvland", "StatusText") == \
            f"3 in sync, 1 pending: mv-full waits for netns /proc/{pids['full']}/ns/net"

        box.write("/etc/systemd/system/macvland.service.d/ptrace.conf",
                  "[Service]\nCapabilityBoundingSet=CAP_SYS_PTRACE\n")
        box.run("systemctl", "daemon-reload")
        box.run("systemctl", "restart", "macvland")
        assert box.show("macvland", "StatusText") == "4 in sync"
    finally:
        box.run("rm", "-f", "/etc/systemd/system/macvland.service.d/ptrace.conf")
        box.run("systemctl", "daemon-reload")
        box.write("/etc/macvland/macvland.yaml", SPEC.format(mode="vepa"))
        box.run("systemctl", "restart", "macvland")
        box.run("systemctl", "stop", "systest-bare", "systest-full")
    assert box.show("macvland", "StatusText") == "2 in sync"


def _probe(box: Container) -> dict[str, Any]:
    """tests/booted_probe.py as a transient unit confined like the installed macvland."""
    unit = box.run("systemctl", "cat", "macvland.service").stdout
    service = unit.split("[Service]", 1)[1].split("[Install]", 1)[0]
    keep = [line for line in service.splitlines() if "=" in line and not line.startswith("#")
            and line.split("=", 1)[0] not in {
                "Type", "NotifyAccess", "ExecStart", "ExecReload", "Restart", "RestartSec",
                "WatchdogSec", "KillMode", "TimeoutStopSec", "TimeoutAbortSec",
                "RuntimeDirectory", "RuntimeDirectoryPreserve"}]
    properties = [f"--property={line}" for line in keep]
    done = box.run("systemd-run", "--quiet", "--wait", "--pipe", "--collect",
                   "--property=RuntimeDirectory=macvland-probe", *properties,
                   "/usr/bin/python3", "/usr/src/macvland/tests/booted_probe.py")
    return dict(json.loads(done.stdout))


def _status(box: Container, pid: str) -> dict[str, str]:
    lines = box.run("cat", f"/proc/{pid}/status").stdout.splitlines()
    return {k: v.strip() for k, _, v in (line.partition(":") for line in lines)}


def test_the_hardening_is_in_force(box: Container) -> None:
    main_pid = box.show("macvland", "MainPID")
    status = _status(box, main_pid)
    # Exactly the unit's CapabilityBoundingSet=, effective and bounding, whatever it lists.
    promised = set(box.show("macvland", "CapabilityBoundingSet").split())
    assert {"cap_net_admin", "cap_sys_admin"} <= promised
    for key in ("CapEff", "CapBnd"):
        decoded = box.run("capsh", f"--decode={status[key]}").stdout.strip()
        assert set(decoded.split("=", 1)[1].split(",")) == promised, (key, decoded)
    assert (status["NoNewPrivs"], status["Seccomp"]) == ("1", "2")

    # The running daemon's own mount namespace: what is read-only for it.
    def touch(path: str) -> str:
        done = box.run("nsenter", f"--target={main_pid}", "--mount", "--", "touch", path,
                       check=False)
        return "ok" if done.returncode == 0 else done.stderr.rsplit(": ", 1)[-1].strip()

    assert touch("/run/macvland/probe") == "ok"
    box.run("nsenter", f"--target={main_pid}", "--mount", "--", "rm", "/run/macvland/probe")
    assert {p: touch(p) for p in ("/run/probe", "/etc/probe", "/usr/probe", "/var/probe")} \
        == dict.fromkeys(("/run/probe", "/etc/probe", "/usr/probe", "/var/probe"),
                         "Read-only file system")
    namespaces = box.run("readlink", "/proc/1/ns/mnt", f"/proc/{main_pid}/ns/mnt").stdout
    assert len(set(namespaces.split())) == 2  # PrivateMounts=: a mount table of its own
    mounts = box.run("nsenter", f"--target={main_pid}", "--mount", "--", "findmnt", "-n",
                     "-o", "OPTIONS", "/proc").stdout
    assert "hidepid=ptraceable" in mounts and "subset=pid" in mounts

    probe = _probe(box)
    # The same confinement as the daemon's: the same capabilities and seccomp filters.
    assert probe["status"] == {k: status[k] for k in probe["status"]}
    assert probe["attempts"] == {
        "write /run": "EROFS", "write /etc": "EROFS", "write /usr": "EROFS",
        "write /var": "EROFS", "write /sys": "EROFS", "write /sys/fs/cgroup": "EROFS",
        "write the runtime directory": "ok",
        "list /root": "EACCES", "list /home": "EACCES",
        "read /proc/sys": "ENOENT", "read /proc/kmsg": "ENOENT", "open /dev/kmsg": "ENOENT",
        # DevicePolicy=closed: a pseudo-device opens, nspawn's /dev/net/tun (which the
        # container's root opens, below) does not; changing a node's owner and mode through
        # an O_PATH descriptor, as for a macvtap's /dev/tapN, is no device access.
        "open /dev/null": "ok", "open /dev/net/tun": "EPERM",
        "chown and chmod /dev/net/tun": "ok",
        "socket AF_INET": "EAFNOSUPPORT", "socket AF_INET6": "EAFNOSUPPORT",
        "socket AF_PACKET": "EAFNOSUPPORT", "socket AF_NETLINK": "ok", "socket AF_UNIX": "ok",
        "unshare a network namespace": "ok", "unshare a mount namespace": "EPERM",
        "unshare a user namespace": "EPERM", "unshare a UTS namespace": "EPERM",
        "mount": "EPERM", "sethostname": "EPERM", "set the clock": "EPERM",
        "realtime scheduling": "EPERM", "writable and executable memory": "EPERM",
        "personality": "EPERM", "a setuid file": "EPERM", "load a kernel module": "EPERM"}
    box.run("python3", "-c", "import os; os.close(os.open('/dev/net/tun', os.O_RDWR))")
    assert probe["new file mode"] == "0o600"  # UMask=0077
    host_tmp = box.run("stat", "-c", "%d %i", "/tmp").stdout.split()
    assert probe["tmp"] != [int(n) for n in host_tmp]  # PrivateTmp=
    # hidepid=ptraceable: PID 1, journald, the console... all hidden; at most the daemon
    # (same user, no wider capabilities) shows besides the probe itself.
    assert probe["pid"] in probe["visible"]
    assert set(probe["visible"]) <= {probe["pid"], int(main_pid)}, probe["visible"]
    assert not set(probe["devices"]) - {"null", "zero", "full", "random", "urandom", "tty",
                                         "ptmx"}, probe["devices"]

    # DevicePolicy= and IPAddressDeny= are BPF programs on the service's cgroup.
    attached = box.run("bpftool", "cgroup", "show",
                       "/sys/fs/cgroup/system.slice/macvland.service").stdout
    programs = {tuple(line.split()[1:4:2]) for line in attached.splitlines()[1:] if line}
    assert {("cgroup_device", "sd_devices"), ("cgroup_inet_ingress", "sd_fw_ingress"),
            ("cgroup_inet_egress", "sd_fw_egress")} <= programs, attached


def test_the_unit_is_as_exposed_as_the_readme_says_at_most(box: Container) -> None:
    """The installed unit, loaded by the systemd it runs under (drop-ins and all), analysed
    online: the README's number is a promise, not a note."""
    analysis = box.run("systemd-analyze", "security", "macvland.service").stdout
    assert exposure(analysis) <= stated_exposure(), analysis


def test_the_watchdog_restarts_a_hung_daemon(box: Container) -> None:
    main_pid = box.show("macvland", "MainPID")
    assert box.show("macvland", "WatchdogUSec") == f"{WATCHDOG_SEC}s"
    # Idle, the daemon still pings: three watchdog intervals pass without a restart.
    idle_until = time.monotonic() + 3 * WATCHDOG_SEC
    while time.monotonic() < idle_until:
        assert box.show("macvland", "MainPID") == main_pid
        time.sleep(0.5)
    assert box.show("macvland", "NRestarts") == "0"

    box.run("systemctl", "kill", "--kill-who=main", "--signal=SIGSTOP", "macvland")
    wait_for(lambda: box.show("macvland", "NRestarts") == "1"
             and box.show("macvland", "ActiveState") == "active"
             and box.show("macvland", "MainPID") not in ("0", main_pid), "a restart",
             timeout=SLOW)
    said = box.run("journalctl", "-u", "macvland", "--no-pager", "-o", "cat").stdout
    assert "Watchdog timeout" in said
    assert mode(box) == "vepa"


def test_stop_leaves_the_interfaces(box: Container) -> None:
    box.run("systemctl", "stop", "macvland")
    assert box.show("macvland", "ActiveState") == "inactive"
    assert "mv-web" in links(box)
    assert "mv-db" in links(box, "db")


def test_enabled_it_starts_at_boot_before_network_pre(box: Container) -> None:
    box.run("systemctl", "enable", "macvland")
    box.poweroff()
    box.boot()
    assert box.show("macvland", "ActiveState") == "active"
    assert mode(box) == "vepa"  # a new network namespace: created at boot
    ready = int(box.show("macvland", "ActiveEnterTimestampMonotonic"))
    network_pre = int(box.show("network-pre.target", "ActiveEnterTimestampMonotonic"))
    assert 0 < ready <= network_pre
    assert box.show("macvland", "StatusText") == "1 in sync, 1 pending: mv-db waits for netns db"
