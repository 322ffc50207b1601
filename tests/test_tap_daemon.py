"""A macvtap's /dev/tapN through the command line and the daemon, on the real kernel and the
host's /dev: status shows the node and says when it is missing; the daemon puts back its
owner, group and mode when they are changed out of band, woken by the change itself (inotify
on /dev), and stops fighting something that keeps changing them."""

from __future__ import annotations

import json
import os
import pwd
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from macvland.audit import MESSAGE_IDS
from tests.conftest import Lab
from tests.helpers import Daemon
from tests.test_cli import run

NOBODY = pwd.getpwnam("nobody")
WANTED = (NOBODY.pw_uid, NOBODY.pw_gid, 0o660)
SPEC = f"""\
version: 1
interfaces:
  - name: mvt0
    parent: eth1
    kind: macvtap
    tap: {{owner: nobody, group: {NOBODY.pw_gid}, mode: "0660"}}
"""
HOUR = 3600.0
"""The resync interval of these daemons: no repair here can be the resync's."""


def node_of(lab: Lab, netns: str | None = None) -> str:
    """/dev/tapN of mvt0, N read independently (`ip -j`)."""
    return f"/dev/tap{lab.links(netns)['mvt0']['ifindex']}"


def access(path: str) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)


@pytest.fixture
def where() -> str:
    """Where mvt0 lives: macvland's own namespace ("home") unless a test says "netns"."""
    return "home"


@pytest.fixture
def netns(lab: Lab, where: str) -> str | None:
    return lab.add_netns("vm") if where == "netns" else None


@pytest.fixture
def config(tmp_path: Path, netns: str | None) -> Path:
    path = tmp_path / "macvland.yaml"
    path.write_text(SPEC + (f"    netns: {netns}\n" if netns else ""))
    return path


@pytest.fixture
def daemon(lab: Lab, tmp_path: Path, config: Path, netns: str | None) -> Iterator[Daemon]:
    d = Daemon(lab, tmp_path / "daemon.log")
    try:
        d.start(config, resync=HOUR, extra=("-v",))  # -v: a line per pass
        d.wait_for(lambda: access(node_of(lab, netns)) == WANTED,
                   "/dev/tapN made and given access")
        yield d
    finally:
        d.kill()


def test_status_shows_the_device_and_a_missing_one_as_pending(lab: Lab, config: Path) -> None:
    applied = run(lab, "apply", config=config)
    assert applied.returncode == 0, applied.stderr
    path = node_of(lab)
    assert access(path) == WANTED

    status = run(lab, "status", config=config)
    assert status.returncode == 0, status.stdout + status.stderr
    assert "mvt0: in sync" in status.stdout
    report = json.loads(run(lab, "status", "--json", config=config).stdout)
    [child] = [c for lower in report["tree"] for c in lower["children"] if c["name"] == "mvt0"]
    assert child["tap"] == {"path": path, "present": True, "owner": "nobody",
                            "group": child["tap"]["group"], "uid": NOBODY.pw_uid,
                            "gid": NOBODY.pw_gid, "mode": "0660"}
    assert f"    {path} nobody:{child['tap']['group']} 0660" in status.stdout.splitlines()

    os.unlink(path)  # the kernel does not make it again
    status = run(lab, "status", config=config)
    assert status.returncode == 1
    assert f"mvt0: pending: waits for {path}: there is none (removed" in status.stdout
    assert f"    {path} missing" in status.stdout.splitlines()
    report = json.loads(run(lab, "status", "--json", config=config).stdout)
    [verdict] = report["interfaces"]
    assert (verdict["condition"], verdict["detail"].split(":")[0]) == (
        "pending", f"waits for {path}")
    ready = run(lab, "status", "--ready", config=config)
    assert (ready.returncode, ready.stdout.split(":")[0]) == (0, "1 pending")
    plan = run(lab, "plan", config=config)
    assert plan.returncode == 0  # nothing it could do
    assert f"mvt0: pending: waits for {path}" in plan.stderr


@pytest.mark.parametrize("where", ["home", "netns"])
def test_the_daemon_puts_back_tap_access_changed_out_of_band(
        lab: Lab, daemon: Daemon, netns: str | None) -> None:
    path = node_of(lab, netns)
    before = len(daemon.applied())
    os.chown(path, 0, 0)
    os.chmod(path, 0o600)

    daemon.wait_for(lambda: access(path) == WANTED, f"{path} put back (an hour before a resync)")
    daemon.wait_for_applied(before + 1)
    [line] = [line for line in daemon.applied()[before:] if "MACVLAND_ACTION=change-tap" in line]
    number = path.removeprefix("/dev/tap")
    label = f"mvt0 in netns {netns}" if netns else "mvt0"
    assert f"{label}: /dev/tap{number}: tap.owner root -> nobody" in line
    assert "MACVLAND_TRIGGER=drift" in line
    assert f"MESSAGE_ID={MESSAGE_IDS['drift-corrected']}" in line
    assert "MACVLAND_FIELD=tap.owner,tap.group,tap.mode" in line
    assert "MACVLAND_OLD=root,root,0600" in line


def test_the_daemon_stops_fighting_over_a_device_someone_keeps_chmodding(
        lab: Lab, daemon: Daemon) -> None:
    path = node_of(lab)
    # The guard tolerates 3 corrections of one interface a minute; the 4th holds it.
    for round_ in range(1, 5):
        os.chmod(path, 0o666)
        daemon.wait_for(lambda: access(path) == WANTED, f"correction {round_}")
    daemon.wait_for_log("MACVLAND_ACTION=fight")
    [fight] = [line for line in daemon.log().splitlines() if "MACVLAND_ACTION=fight" in line]
    assert "mvt0: something keeps undoing macvland's changes (tap.mode: kept seeing " \
           "tap.mode=0666)" in fight
    assert "MACVLAND_FIELD=tap.mode" in fight


def test_the_daemon_says_a_removed_device_is_pending(lab: Lab, daemon: Daemon) -> None:
    path = node_of(lab)
    os.unlink(path)
    # The deletion wakes it (inotify): it reports the interface pending, once.
    daemon.wait_for_log(f"mvt0: pending: waits for {path}: there is none")
    assert f"MESSAGE_ID={MESSAGE_IDS['pending']}" in next(
        line for line in daemon.log().splitlines() if "mvt0: pending:" in line)


def test_a_pass_woken_for_nothing_does_nothing(lab: Lab, daemon: Daemon) -> None:
    # Neither the events of its own chown and chmod nor another macvtap's node start a pass.
    path = node_of(lab)
    daemon.assert_quiet()  # start-up is over
    passes = daemon.log().count("pass (")
    os.chmod(path, 0o666)
    daemon.wait_for(lambda: access(path) == WANTED, "the correction")
    daemon.wait_for_log("pass (drift): 1 operation(s)")
    daemon.assert_quiet()
    assert daemon.log().count("pass (") == passes + 1, daemon.log()

    lab.ip("link", "add", "other0", "link", "eth2", "type", "macvtap")
    other = f"/dev/tap{lab.links()['other0']['ifindex']}"
    daemon.assert_quiet()
    os.chmod(other, 0o666)
    daemon.assert_quiet()
    assert daemon.log().count("pass (") == passes + 1, daemon.log()
