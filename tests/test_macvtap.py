"""macvtap against the real kernel: made, changed in place, recreated where it must be, in any
namespace; checked with `ip -d -j link show`."""

from __future__ import annotations

import os
import pwd
import secrets
import stat
import subprocess
import sys
from typing import Any

import pytest

from macvland.model import OWNER_ALIAS, Flag, Kind, MacvlanSpec, Mode, TapAccess
from macvland.ops import Create
from tests.conftest import Lab, macvlan_info


def tap(name: str = "mvt0", parent: str = "eth1", **settings: Any) -> MacvlanSpec:
    return MacvlanSpec(name=name, parent=parent, kind=Kind.MACVTAP, **settings)


def converge(lab: Lab, *specs: MacvlanSpec) -> Any:
    result = lab.reconcile(*specs)
    failures = [(o.operation.describe(), str(o.error)) for o in result.outcomes if not o.ok]
    assert not failures
    assert result.converged, (result.remaining.operations, result.remaining.verdicts)
    return result


def kind_of(link: dict[str, Any]) -> str:
    kind: str = link["linkinfo"]["info_kind"]
    return kind


@pytest.mark.parametrize("where", ["home", "netns"])
def test_a_macvtap_is_made_with_its_settings_and_queues(lab: Lab, where: str) -> None:
    netns = lab.add_netns("vm") if where == "netns" else None
    want = tap(netns=netns, mode=Mode.SOURCE, flags=frozenset({Flag.NODST}),
               source_macs=frozenset({"02:00:00:00:00:01"}), bcqueuelen=64,
               numtxqueues=4, numrxqueues=2, mtu=1400)
    converge(lab, want)

    link = lab.links(netns)["mvt0"] if netns else lab.links()["mvt0"]
    assert kind_of(link) == "macvtap"
    info = macvlan_info(link)
    assert (info["mode"], info["nodst"], info["bcqueuelen"]) == ("source", True, 64)
    assert info["macaddr_data"] == ["02:00:00:00:00:01"]
    assert (link["num_tx_queues"], link["num_rx_queues"], link["mtu"]) == (4, 2, 1400)
    assert link["ifalias"] == OWNER_ALIAS
    assert lab.reconcile(want).plan.operations == ()


def test_macvtaps_and_macvlans_made_together_all_come_in_one_pass(lab: Lab) -> None:
    """A macvtap is made with a number chosen for its /dev/tapN, the lowest free one; the
    kernel numbers a macvlan made in the same batch with its next one, which in a namespace
    that never lost a link is the same. The macvtaps go first, so the kernel passes over
    their numbers (before, the first macvtap's create failed with EEXIST)."""
    lab.add_veth("eth3")
    specs = [MacvlanSpec(name=f"mv{n}", parent="eth1") for n in range(4)]
    taps = [tap(f"tap{n}", parent="eth3" if n else "eth2") for n in range(2)]
    result = converge(lab, *specs, *taps)
    assert not [o for o in result.outcomes if not o.ok]
    chosen = {op.name: op.ifindex for op in result.plan.operations
              if isinstance(op, Create) and op.ifindex is not None}
    assert chosen.keys() == {"tap0", "tap1"}
    links = lab.links()
    assert {name: links[name]["ifindex"] for name in chosen} == chosen


def test_a_macvtap_changes_mode_and_source_macs_in_place(lab: Lab) -> None:
    converge(lab, tap(mode=Mode.BRIDGE))
    before = lab.links()["mvt0"]["ifindex"]
    result = converge(lab, tap(mode=Mode.SOURCE, source_macs=frozenset({"02:00:00:00:00:07"})))
    assert [op.kind for op in result.plan.operations] == ["change", "add-source-mac"]
    link = lab.links()["mvt0"]
    assert link["ifindex"] == before
    assert macvlan_info(link)["mode"] == "source"
    assert macvlan_info(link)["macaddr_data"] == ["02:00:00:00:00:07"]


@pytest.mark.parametrize(("have", "want", "why"), [
    pytest.param(MacvlanSpec(name="mvt0", parent="eth1"), tap(), "kind macvlan -> macvtap",
                 id="macvlan->macvtap"),
    pytest.param(tap(), MacvlanSpec(name="mvt0", parent="eth1"), "kind macvtap -> macvlan",
                 id="macvtap->macvlan"),
    pytest.param(tap(numtxqueues=1), tap(numtxqueues=3), "numtxqueues 1 -> 3", id="txqueues"),
    pytest.param(tap(numrxqueues=2), tap(numrxqueues=1), "numrxqueues 2 -> 1", id="rxqueues"),
])
def test_what_is_fixed_at_creation_recreates_and_the_plan_says_why(
        lab: Lab, have: MacvlanSpec, want: MacvlanSpec, why: str) -> None:
    converge(lab, have)
    result = converge(lab, want)
    assert [(op.kind, getattr(op, "recreate", None)) for op in result.plan.operations] == [
        ("delete", True), ("create", why)]
    link = lab.links()["mvt0"]
    assert kind_of(link) == want.kind
    for key, attribute in (("numtxqueues", "num_tx_queues"), ("numrxqueues", "num_rx_queues")):
        if getattr(want, key) is not None:
            assert link[attribute] == getattr(want, key)


def test_an_unowned_macvtap_on_the_wanted_parent_is_adopted(lab: Lab) -> None:
    lab.ip("link", "add", "mvt0", "link", "eth1", "type", "macvtap", "mode", "vepa")
    result = converge(lab, tap(mode=Mode.VEPA))
    assert [op.describe() for op in result.plan.operations] == [
        "mvt0: adopt existing macvtap on eth1", "mvt0: state down -> up (in place)"]
    assert lab.links()["mvt0"]["ifalias"] == OWNER_ALIAS


def test_drift_of_a_macvtap_is_put_back(lab: Lab) -> None:
    converge(lab, tap(mode=Mode.PRIVATE))
    lab.ip("link", "set", "mvt0", "type", "macvtap", "mode", "bridge")
    result = converge(lab, tap(mode=Mode.PRIVATE))
    assert [op.describe() for op in result.plan.operations] == [
        "mvt0: mode bridge -> private (in place)"]
    assert macvlan_info(lab.links()["mvt0"])["mode"] == "private"


# --- /dev/tapN: owner, group, mode ----------------------------------------------------------

NOBODY = pwd.getpwnam("nobody")
ACCESS = TapAccess(owner="nobody", group=NOBODY.pw_gid, mode=0o660)


def device(lab: Lab, name: str = "mvt0", netns: str | None = None) -> tuple[str, os.stat_result]:
    """/dev/tapN of a macvtap, N read independently (`ip -j`), and its stat."""
    ifindex = (lab.links(netns) if netns else lab.links())[name]["ifindex"]
    path = f"/dev/tap{ifindex}"
    return path, os.stat(path)


def opens_as_nobody(path: str) -> bool:
    """Whether the user nobody can open `path` for reading and writing (a VM's hypervisor
    does just that)."""
    script = (f"import os, sys\nos.setgroups([])\nos.setgid({NOBODY.pw_gid})\n"
              f"os.setuid({NOBODY.pw_uid})\n"
              "try:\n    os.close(os.open(sys.argv[1], os.O_RDWR))\nexcept PermissionError:\n"
              "    sys.exit(3)\n")
    result = subprocess.run([sys.executable, "-c", script, path], capture_output=True,
                            text=True, check=False)
    assert result.returncode in (0, 3), result.stderr
    return result.returncode == 0


@pytest.mark.parametrize("where", ["home", "netns"])
def test_tap_access_is_applied_when_the_device_appears(lab: Lab, where: str) -> None:
    netns = lab.add_netns("vm") if where == "netns" else None
    result = converge(lab, tap(netns=netns, tap=ACCESS))
    kinds = [op.kind for op in result.plan.operations]
    assert kinds == ["create", "change-tap"]

    path, st = device(lab, netns=netns)
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (NOBODY.pw_uid, NOBODY.pw_gid,
                                                                0o660)
    assert stat.S_ISCHR(st.st_mode)
    assert opens_as_nobody(path)
    assert lab.reconcile(tap(netns=netns, tap=ACCESS)).plan.operations == ()


def test_without_tap_access_nobody_cannot_open_the_device(lab: Lab) -> None:
    converge(lab, tap())
    path, st = device(lab)
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (0, 0o600)
    assert not opens_as_nobody(path)


def test_tap_access_drift_is_put_back(lab: Lab) -> None:
    converge(lab, tap(tap=ACCESS))
    path, _ = device(lab)
    os.chown(path, 0, 0)
    os.chmod(path, 0o600)
    result = converge(lab, tap(tap=ACCESS))
    number = path.removeprefix("/dev/tap")
    assert [op.describe() for op in result.plan.operations] == [
        f"mvt0: /dev/tap{number}: tap.owner root -> nobody, tap.group root -> {NOBODY.pw_gid}, "
        "tap.mode 0600 -> 0660"]
    st = os.stat(path)
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (NOBODY.pw_uid, NOBODY.pw_gid,
                                                                0o660)


def test_a_macvtap_whose_number_names_another_device_is_renumbered(lab: Lab) -> None:
    # A macvtap in another namespace holds /dev/tapN; one of ours with the same ifindex has no
    # device at all, so no VM could open it: it is recreated with a number of its own.
    other = lab.add_netns("other")
    lab.ip("link", "add", "up0", "type", "veth", "peer", "name", "up0-peer", netns=other)
    number = 40000 + secrets.randbelow(20000)
    while os.path.exists(f"/dev/tap{number}"):
        number += 1
    lab.ip("link", "add", "index", str(number), "squat", "link", "up0", "type", "macvtap",
           netns=other)
    lab.ip("link", "add", "index", str(number), "mvt0", "link", "eth1", "type", "macvtap")
    held = os.stat(f"/dev/tap{number}").st_rdev
    assert os.readlink(f"/sys/dev/char/{os.major(held)}:{os.minor(held)}").split(
        "/")[-3] == "squat"

    result = converge(lab, tap(tap=ACCESS))
    assert [(op.kind, getattr(op, "recreate", None)) for op in result.plan.operations][:2] == [
        ("delete", True),
        ("create", f"its /dev/tap{number} is the device of squat, a macvtap of the same "
                   "ifindex in another namespace")]
    path, st = device(lab)
    assert path != f"/dev/tap{number}"
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (NOBODY.pw_uid, 0o660)
    assert os.readlink(f"/sys/dev/char/{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}").split(
        "/")[-3] == "mvt0"
    # The other namespace's device is untouched.
    squatter = os.stat(f"/dev/tap{number}")
    assert (squatter.st_uid, stat.S_IMODE(squatter.st_mode)) == (0, 0o600)
