"""A macvtap's /dev/tapN through the command line and the daemon, on the real kernel and the
host's /dev: status shows the node and says when it is missing; the daemon puts back its
owner, group and mode when they are changed out of band, woken by the change itself (inotify
on /dev), and stops fighting something that keeps changing them."""

from __future__ import annotations

import json
import os
import pwd
import stat
from pathlib import Path

import pytest

from tests.conftest import Lab
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


def node_of(lab: Lab) -> str:
    """/dev/tapN of mvt0, N read independently (`ip -j`)."""
    return f"/dev/tap{lab.links()['mvt0']['ifindex']}"


def access(path: str) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "macvland.yaml"
    path.write_text(SPEC)
    return path


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
