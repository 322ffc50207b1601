"""End-to-end tests of `macvland run`: the daemon as a real process in a throwaway namespace.

Each test starts its own daemon (`ip netns exec <home> macvland run`), with its log on a file,
drives the spec file and the kernel from outside, and checks the kernel with an independent
read (`ip -d -j link show`). Waiting is always polling for a condition with a deadline; the
only fixed windows are the ones that assert the absence of activity.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from macvland.model import OWNER_ALIAS
from tests.conftest import Lab, macvlan_info
from tests.helpers import QUIET_WINDOW, Daemon

EVENT_TRIGGERS = ("MACVLAND_TRIGGER=drift", "MACVLAND_TRIGGER=namespace appeared")
"""How a correction caused by a kernel event is labelled. A pass is named after its most
telling trigger, and any namespace coming or going on this machine (other tests' too) wakes
the daemon, so a drift's correction may carry the namespace label."""


def spec_text(*interfaces: dict[str, Any]) -> str:
    """A spec document, one `key: value` line per setting, in the order given.

    Line 1 is `version`, line 2 `interfaces:`, and each interface's lines follow, so a
    setting's line number is easy to count in tests that check error places.
    """
    lines = ["version: 1", "interfaces:" if interfaces else "interfaces: []"]
    for item in interfaces:
        for i, (key, value) in enumerate(item.items()):
            if isinstance(value, list | tuple):
                value = "[" + ", ".join(str(v) for v in value) + "]"
            lines.append(f"{'  - ' if i == 0 else '    '}{key}: {value}")
    return "\n".join(lines) + "\n"


# --- independent reads ---------------------------------------------------------------------


def link(lab: Lab, name: str, netns: str | None = None) -> dict[str, Any] | None:
    """The link as iproute2 sees it; None when it (or its namespace) does not exist."""
    try:
        return lab.links(netns).get(name)
    except subprocess.CalledProcessError:
        return None


def mode_of(lab: Lab, name: str, netns: str | None = None) -> str | None:
    found = link(lab, name, netns)
    return None if found is None else str(macvlan_info(found).get("mode"))


def ifindex_of(lab: Lab, name: str, netns: str | None = None) -> int:
    found = link(lab, name, netns)
    assert found is not None, f"{name} exists in {netns or 'home'}"
    return int(found["ifindex"])


def is_managed_macvlan(lab: Lab, found: dict[str, Any] | None, parent: str, mode: str) -> bool:
    if found is None:
        return False
    if "link_netnsid" in found:  # the parent is in another namespace: known by index only
        home = link(lab, parent)
        on_parent = home is not None and found.get("link_index") == home["ifindex"]
    else:
        on_parent = found.get("link") == parent
    return (on_parent and found.get("linkinfo", {}).get("info_kind") == "macvlan"
            and macvlan_info(found).get("mode") == mode and found.get("ifalias") == OWNER_ALIAS
            and "UP" in found["flags"])


@dataclass(frozen=True)
class Expect:
    name: str
    parent: str
    mode: str
    netns: str | None = None


def all_there(lab: Lab, *expected: Expect) -> bool:
    return all(is_managed_macvlan(lab, link(lab, e.name, e.netns), e.parent, e.mode)
               for e in expected)


# --- 1. start-up ---------------------------------------------------------------------------


def test_start_creates_every_interface_across_namespaces(
        lab: Lab, daemon: Daemon, spec_dir: Path) -> None:
    red, blue = lab.add_netns("red"), lab.add_netns("blue")
    config = spec_dir / "macvland.yaml"
    config.write_text(spec_text(
        {"name": "mv-a", "parent": "eth1", "mode": "bridge"},
        {"name": "mv-b", "parent": "eth2", "mode": "vepa"},
        {"name": "mv-c", "parent": "eth1", "mode": "private", "netns": red},
        {"name": "mv-s", "parent": "eth2", "mode": "source", "netns": red,
         "source_macs": ["02:00:00:00:00:01"]},
        {"name": "mv-d", "parent": "eth1", "mode": "vepa", "netns": blue},
        {"name": "mv-e", "parent": "eth2", "mode": "bridge", "netns": blue},
    ))
    expected = (Expect("mv-a", "eth1", "bridge"), Expect("mv-b", "eth2", "vepa"),
                Expect("mv-c", "eth1", "private", red), Expect("mv-s", "eth2", "source", red),
                Expect("mv-d", "eth1", "vepa", blue), Expect("mv-e", "eth2", "bridge", blue))

    daemon.start(config)

    daemon.wait_for(lambda: all_there(lab, *expected), "every interface with its mode")
    source = link(lab, "mv-s", red)
    assert source is not None
    assert macvlan_info(source)["macaddr_data"] == ["02:00:00:00:00:01"]
    assert set(lab.links(red)) == {"lo", "mv-c", "mv-s"}  # nothing else was made there
    assert set(lab.links(blue)) == {"lo", "mv-d", "mv-e"}
    assert f"spec accepted: {config}, 6 interface(s)" in daemon.log()
    assert daemon.running()


# --- 2. ways a spec is delivered -----------------------------------------------------------

BEFORE = spec_text({"name": "mv-a", "parent": "eth1", "mode": "vepa"},
                   {"name": "mv-b", "parent": "eth2", "mode": "bridge"})
AFTER = BEFORE.replace("mode: vepa", "mode: private")


def install_plain(directory: Path, text: str) -> Path:
    path = directory / "macvland.yaml"
    path.write_text(text)
    return path


def edit_in_place(directory: Path, text: str) -> None:
    with open(directory / "macvland.yaml", "w") as file:  # truncate, then write
        file.write(text)


def rename_over(directory: Path, text: str) -> None:
    temporary = directory / ".macvland.yaml.tmp"
    temporary.write_text(text)
    os.rename(temporary, directory / "macvland.yaml")


def install_configmap(directory: Path, text: str) -> Path:
    """The layout kubelet makes for a ConfigMap volume: two levels of symlinks."""
    (directory / "..2026_01").mkdir()
    (directory / "..2026_01" / "macvland.yaml").write_text(text)
    os.symlink("..2026_01", directory / "..data")
    os.symlink("..data/macvland.yaml", directory / "macvland.yaml")
    return directory / "macvland.yaml"


def swap_configmap(directory: Path, text: str) -> None:
    (directory / "..2026_02").mkdir()
    (directory / "..2026_02" / "macvland.yaml").write_text(text)
    os.symlink("..2026_02", directory / "..data_tmp")
    os.rename(directory / "..data_tmp", directory / "..data")
    shutil.rmtree(directory / "..2026_01")


@pytest.mark.parametrize(("install", "update"), [
    pytest.param(install_plain, edit_in_place, id="edit-in-place"),
    pytest.param(install_plain, rename_over, id="temp-file-renamed-over"),
    pytest.param(install_configmap, swap_configmap, id="configmap-data-symlink-swap"),
])
def test_spec_update_converges_however_it_is_delivered(
        lab: Lab, daemon: Daemon, spec_dir: Path,
        install: Callable[[Path, str], Path], update: Callable[[Path, str], None]) -> None:
    config = install(spec_dir, BEFORE)
    daemon.start(config)
    daemon.wait_for(lambda: all_there(lab, Expect("mv-a", "eth1", "vepa"),
                                      Expect("mv-b", "eth2", "bridge")), "the first spec")
    a, b = ifindex_of(lab, "mv-a"), ifindex_of(lab, "mv-b")

    update(spec_dir, AFTER)

    daemon.wait_for(lambda: mode_of(lab, "mv-a") == "private", "mv-a in private mode")
    assert (ifindex_of(lab, "mv-a"), ifindex_of(lab, "mv-b")) == (a, b)
    assert mode_of(lab, "mv-b") == "bridge"
    daemon.wait_for_log("mv-a: mode vepa -> private (in place)")
    changed = daemon.applied()[-1]
    assert "MACVLAND_TRIGGER=spec change" in changed, changed


def test_deleted_spec_keeps_interfaces_until_it_is_recreated(
        lab: Lab, daemon: Daemon, spec_dir: Path) -> None:
    config = install_plain(spec_dir, BEFORE)
    daemon.start(config)
    daemon.wait_for(lambda: all_there(lab, Expect("mv-a", "eth1", "vepa"),
                                      Expect("mv-b", "eth2", "bridge")), "the first spec")
    a, b = ifindex_of(lab, "mv-a"), ifindex_of(lab, "mv-b")

    config.unlink()

    daemon.wait_for_log("cannot read")
    assert f"spec rejected: {config} (keeping spec" in daemon.log()
    assert all_there(lab, Expect("mv-a", "eth1", "vepa"), Expect("mv-b", "eth2", "bridge"))
    assert (ifindex_of(lab, "mv-a"), ifindex_of(lab, "mv-b")) == (a, b)

    config.write_text(AFTER)

    daemon.wait_for(lambda: mode_of(lab, "mv-a") == "private", "mv-a in private mode")
    assert (ifindex_of(lab, "mv-a"), ifindex_of(lab, "mv-b")) == (a, b)


def test_directory_of_fragments_follows_added_and_removed_fragments(
        lab: Lab, daemon: Daemon, spec_dir: Path) -> None:
    red = lab.add_netns("red")
    (spec_dir / "10-a.yaml").write_text(
        spec_text({"name": "mv-a", "parent": "eth1", "mode": "bridge"}))
    (spec_dir / "20-b.yaml").write_text(
        spec_text({"name": "mv-b", "parent": "eth2", "mode": "vepa"}))
    daemon.start(spec_dir)
    daemon.wait_for(lambda: all_there(lab, Expect("mv-a", "eth1", "bridge"),
                                      Expect("mv-b", "eth2", "vepa")), "both fragments")
    a = ifindex_of(lab, "mv-a")

    rename_fragment = spec_dir / ".30-c.yaml.tmp"  # not a *.yaml fragment while written
    rename_fragment.write_text(
        spec_text({"name": "mv-c", "parent": "eth1", "mode": "private", "netns": red}))
    os.rename(rename_fragment, spec_dir / "30-c.yaml")

    daemon.wait_for(lambda: all_there(lab, Expect("mv-c", "eth1", "private", red)),
                    "the added fragment's interface")

    (spec_dir / "20-b.yaml").unlink()

    daemon.wait_for(lambda: link(lab, "mv-b") is None, "the removed fragment's interface gone")
    assert all_there(lab, Expect("mv-a", "eth1", "bridge"), Expect("mv-c", "eth1", "private", red))
    assert ifindex_of(lab, "mv-a") == a


# --- 3. drift ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Drift:
    settings: dict[str, Any]
    """The spec's entry for mv0 (name and parent are added)."""
    command: tuple[str, ...]
    """What someone else runs: `ip <command>` in mv0's namespace."""
    corrected: Callable[[dict[str, Any]], bool]
    """True once the independent read shows mv0 as the spec wants it again."""
    line: str
    """The applied-change log line that says what was corrected."""
    in_netns: bool = False


def _info(key: str) -> Callable[[dict[str, Any]], Any]:
    return lambda found: macvlan_info(found).get(key)


DRIFTS = {
    "mode": Drift({"mode": "bridge"}, ("link", "set", "mv0", "type", "macvlan", "mode", "private"),
                  lambda f: _info("mode")(f) == "bridge",
                  "mode private -> bridge (in place)"),
    "mode-in-another-netns": Drift(
        {"mode": "vepa"}, ("link", "set", "mv0", "type", "macvlan", "mode", "bridge"),
        lambda f: _info("mode")(f) == "vepa", "mode bridge -> vepa (in place)",
        in_netns=True),
    "mtu": Drift({"mode": "bridge", "mtu": 1400}, ("link", "set", "mv0", "mtu", "1300"),
                 lambda f: f["mtu"] == 1400, "mtu 1300 -> 1400 (in place)"),
    "mac": Drift({"mode": "bridge", "mac": "02:00:00:00:aa:01"},
                 ("link", "set", "mv0", "address", "02:00:00:00:aa:99"),
                 lambda f: f["address"] == "02:00:00:00:aa:01",
                 "mac 02:00:00:00:aa:99 -> 02:00:00:00:aa:01 (in place)"),
    "down": Drift({"mode": "bridge"}, ("link", "set", "mv0", "down"),
                  lambda f: "UP" in f["flags"], "state down -> up (in place)"),
    "source-mac-added": Drift(
        {"mode": "source", "source_macs": ["02:00:00:00:00:01"]},
        ("link", "set", "mv0", "type", "macvlan", "macaddr", "add", "02:00:00:00:00:99"),
        lambda f: _info("macaddr_data")(f) == ["02:00:00:00:00:01"],
        "source MAC - 02:00:00:00:00:99 (in place)"),
    "source-mac-removed": Drift(
        {"mode": "source", "source_macs": ["02:00:00:00:00:01", "02:00:00:00:00:02"]},
        ("link", "set", "mv0", "type", "macvlan", "macaddr", "del", "02:00:00:00:00:02"),
        lambda f: sorted(_info("macaddr_data")(f) or []) == ["02:00:00:00:00:01",
                                                             "02:00:00:00:00:02"],
        "source MAC + 02:00:00:00:00:02 (in place)"),
    "nodst-set": Drift(
        {"mode": "source", "source_macs": ["02:00:00:00:00:01"]},
        ("link", "set", "mv0", "type", "macvlan", "mode", "source", "flag", "nodst"),
        lambda f: not _info("nodst")(f), "flags nodst -> none (in place)"),
    "nodst-cleared": Drift(
        {"mode": "source", "source_macs": ["02:00:00:00:00:01"], "flags": ["nodst"]},
        ("link", "set", "mv0", "type", "macvlan", "mode", "source", "flag", "null"),
        lambda f: _info("nodst")(f) is True, "flags none -> nodst (in place)"),
}


@pytest.mark.parametrize("drift", DRIFTS.values(), ids=DRIFTS.keys())
def test_out_of_band_change_is_corrected_in_place(
        lab: Lab, daemon: Daemon, spec_dir: Path, drift: Drift) -> None:
    netns = lab.add_netns("red") if drift.in_netns else None
    entry = {"name": "mv0", "parent": "eth1", **drift.settings}
    if netns:
        entry["netns"] = netns
    config = install_plain(spec_dir, spec_text(entry))
    daemon.start(config)
    daemon.wait_for(lambda: (f := link(lab, "mv0", netns)) and drift.corrected(f)
                    and f.get("ifalias") == OWNER_ALIAS, "mv0 as specified")
    ifindex = ifindex_of(lab, "mv0", netns)
    applied = daemon.wait_for_applied(1)

    lab.ip(*drift.command, netns=netns)  # the daemon may well correct it before we look

    daemon.wait_for(lambda: (f := link(lab, "mv0", netns)) and drift.corrected(f),
                    "mv0 corrected")
    assert ifindex_of(lab, "mv0", netns) == ifindex
    daemon.wait_for(lambda: len(daemon.applied()) > applied, "the correction's log line")
    correction = daemon.applied()[applied]
    assert correction.startswith("info: mv0") and f": {drift.line} [" in correction, correction
    assert any(t in correction for t in EVENT_TRIGGERS), correction


def test_out_of_band_delete_is_undone(lab: Lab, daemon: Daemon, spec_dir: Path) -> None:
    red = lab.add_netns("red")
    config = install_plain(spec_dir, spec_text(
        {"name": "mv0", "parent": "eth1", "mode": "private"},
        {"name": "mv1", "parent": "eth2", "mode": "vepa", "netns": red}))
    daemon.start(config)
    expected = (Expect("mv0", "eth1", "private"), Expect("mv1", "eth2", "vepa", red))
    daemon.wait_for(lambda: all_there(lab, *expected), "both interfaces")
    before = {e.name: ifindex_of(lab, e.name, e.netns) for e in expected}

    lab.ip("link", "del", "mv0")
    lab.ip("link", "del", "mv1", netns=red)

    daemon.wait_for(lambda: all_there(lab, *expected), "both interfaces back")
    after = {e.name: ifindex_of(lab, e.name, e.netns) for e in expected}
    assert after["mv0"] != before["mv0"] and after["mv1"] != before["mv1"]  # new links
    daemon.wait_for_applied(4)
    recreated = [line for line in daemon.applied() if ": create: " in line][2:]
    assert len(recreated) == 2, daemon.log()
    assert all(any(t in line for t in EVENT_TRIGGERS) for line in recreated), recreated


# --- 4. namespaces and parents that come and go ----------------------------------------------


def test_namespace_added_after_start_receives_its_interface(
        lab: Lab, daemon: Daemon, spec_dir: Path) -> None:
    red = lab.name("red")
    config = install_plain(spec_dir, spec_text(
        {"name": "mv-a", "parent": "eth1", "mode": "bridge"},
        {"name": "mv-r", "parent": "eth1", "mode": "vepa", "netns": red}))
    daemon.start(config)
    daemon.wait_for(lambda: all_there(lab, Expect("mv-a", "eth1", "bridge")), "mv-a")
    daemon.wait_for_log(f"mv-r in netns {red}: pending")

    lab.add_netns("red")

    daemon.wait_for(lambda: all_there(lab, Expect("mv-r", "eth1", "vepa", red)),
                    "mv-r in the new namespace")


def test_recreated_namespace_receives_its_interface_again(
        lab: Lab, daemon: Daemon, spec_dir: Path) -> None:
    red = lab.add_netns("red")
    config = install_plain(spec_dir, spec_text(
        {"name": "mv-a", "parent": "eth1", "mode": "bridge"},
        {"name": "mv-r", "parent": "eth2", "mode": "private", "netns": red}))
    daemon.start(config)
    daemon.wait_for(lambda: all_there(lab, Expect("mv-r", "eth2", "private", red)), "mv-r")
    a = ifindex_of(lab, "mv-a")

    lab.del_netns(red)
    daemon.wait_for_log(f"mv-r in netns {red}: pending")
    lab.add_netns("red")

    daemon.wait_for(lambda: all_there(lab, Expect("mv-r", "eth2", "private", red)),
                    "mv-r in the re-created namespace")
    assert ifindex_of(lab, "mv-a") == a

    # Once more without giving the daemon time to notice the gap.
    lab.del_netns(red)
    lab.add_netns("red")

    daemon.wait_for(lambda: all_there(lab, Expect("mv-r", "eth2", "private", red)),
                    "mv-r after a quick delete and re-create")


def test_recreated_parent_gets_its_children_back(
        lab: Lab, daemon: Daemon, spec_dir: Path) -> None:
    red = lab.add_netns("red")
    config = install_plain(spec_dir, spec_text(
        {"name": "mv-a", "parent": "eth1", "mode": "bridge"},
        {"name": "mv-b", "parent": "eth2", "mode": "vepa"},
        {"name": "mv-c", "parent": "eth2", "mode": "private", "netns": red}))
    daemon.start(config)
    children = (Expect("mv-b", "eth2", "vepa"), Expect("mv-c", "eth2", "private", red))
    daemon.wait_for(lambda: all_there(lab, Expect("mv-a", "eth1", "bridge"), *children),
                    "every interface")
    a, old_eth2 = ifindex_of(lab, "mv-a"), ifindex_of(lab, "eth2")

    lab.ip("link", "del", "eth2")
    assert link(lab, "mv-b") is None and link(lab, "mv-c", red) is None  # the kernel's doing
    daemon.wait_for_log("mv-b: pending")
    lab.add_veth("eth2")

    daemon.wait_for(lambda: all_there(lab, *children), "the children back on the new eth2")
    assert ifindex_of(lab, "eth2") != old_eth2
    assert ifindex_of(lab, "mv-a") == a


# --- 5. a bad spec -------------------------------------------------------------------------


def test_invalid_spec_changes_nothing_until_fixed(
        lab: Lab, daemon: Daemon, spec_dir: Path) -> None:
    config = install_plain(spec_dir, BEFORE)
    daemon.start(config)
    expected = (Expect("mv-a", "eth1", "vepa"), Expect("mv-b", "eth2", "bridge"))
    daemon.wait_for(lambda: all_there(lab, *expected), "the first spec")
    before = {e.name: ifindex_of(lab, e.name) for e in expected}
    applied = daemon.wait_for_applied(2)
    # mv-a's mode is misspelt (line 5, column 11); mv-b's change is valid but must wait too.
    bad = spec_text({"name": "mv-a", "parent": "eth1", "mode": "brige"},
                    {"name": "mv-b", "parent": "eth2", "mode": "private"},
                    {"name": "mv-new", "parent": "eth1"})

    config.write_text(bad)

    daemon.wait_for_log(f"{config}:5:11: interfaces[0].mode: 'brige' is not one of")
    log = daemon.log()
    assert f"error: spec rejected: {config} (keeping spec " in log
    assert "did you mean 'bridge'" in log
    assert all_there(lab, *expected)
    assert {e.name: ifindex_of(lab, e.name) for e in expected} == before
    assert link(lab, "mv-new") is None
    assert len(daemon.applied()) == applied

    config.write_text(bad.replace("brige", "bridge"))

    daemon.wait_for(lambda: all_there(lab, Expect("mv-a", "eth1", "bridge"),
                                      Expect("mv-b", "eth2", "private"),
                                      Expect("mv-new", "eth1", "bridge")), "the fixed spec")
    assert {e.name: ifindex_of(lab, e.name) for e in expected} == before


# --- 6. what is not ours -------------------------------------------------------------------


def test_unowned_macvlan_on_a_managed_parent_is_left_alone(
        lab: Lab, daemon: Daemon, spec_dir: Path) -> None:
    config = install_plain(spec_dir, spec_text(
        {"name": "mv-a", "parent": "eth1", "mode": "bridge"}))
    daemon.start(config)
    daemon.wait_for(lambda: all_there(lab, Expect("mv-a", "eth1", "bridge")), "mv-a")
    applied = daemon.wait_for_applied(1)

    lab.ip("link", "add", "other", "link", "eth1", "type", "macvlan", "mode", "private")
    other = ifindex_of(lab, "other")
    lab.ip("link", "set", "other", "type", "macvlan", "mode", "vepa")
    lab.ip("link", "set", "other", "alias", "someone-else")
    lab.ip("link", "set", "other", "mtu", "1300")
    lab.ip("link", "set", "other", "up")
    lab.ip("link", "set", "other", "down")
    # A positive signal that the daemon has read past the events above: a drift of its own
    # interface, on the same socket, after them, gets corrected.
    lab.ip("link", "set", "mv-a", "type", "macvlan", "mode", "private")
    daemon.wait_for(lambda: mode_of(lab, "mv-a") == "bridge", "mv-a corrected")
    daemon.wait_for(lambda: len(daemon.applied()) > applied, "the correction's log line")
    daemon.assert_quiet()

    found = link(lab, "other")
    assert found is not None
    assert (found["ifindex"], macvlan_info(found)["mode"], found["ifalias"], found["mtu"]) == (
        other, "vepa", "someone-else", 1300)
    assert "UP" not in found["flags"]
    assert "other" not in daemon.log()
    assert [line.split(" [")[0] for line in daemon.applied()[applied:]] == [
        "info: mv-a: mode private -> bridge (in place)"]

    # A spec change makes a full pass: still not touched.
    config.write_text(config.read_text().replace("bridge", "vepa"))
    daemon.wait_for(lambda: mode_of(lab, "mv-a") == "vepa", "mv-a in vepa mode")
    found = link(lab, "other")
    assert found is not None
    assert (found["ifindex"], macvlan_info(found)["mode"], found["ifalias"]) == (
        other, "vepa", "someone-else")
    assert "other" not in daemon.log()


# --- 7. signals ----------------------------------------------------------------------------


def test_sigterm_exits_zero_and_leaves_interfaces(
        lab: Lab, daemon: Daemon, spec_dir: Path) -> None:
    red = lab.add_netns("red")
    config = install_plain(spec_dir, spec_text(
        {"name": "mv-a", "parent": "eth1", "mode": "bridge"},
        {"name": "mv-r", "parent": "eth2", "mode": "vepa", "netns": red}))
    daemon.start(config)
    expected = (Expect("mv-a", "eth1", "bridge"), Expect("mv-r", "eth2", "vepa", red))
    daemon.wait_for(lambda: all_there(lab, *expected), "both interfaces")
    before = {e.name: ifindex_of(lab, e.name, e.netns) for e in expected}

    assert daemon.stop() == 0

    assert "stopping; interfaces are left in place" in daemon.log()
    assert all_there(lab, *expected)
    assert {e.name: ifindex_of(lab, e.name, e.netns) for e in expected} == before


def test_sighup_rereads_the_spec(lab: Lab, daemon: Daemon, spec_dir: Path) -> None:
    config = install_plain(spec_dir, BEFORE)
    daemon.start(config)
    daemon.wait_for(lambda: mode_of(lab, "mv-a") == "vepa", "the first spec")
    bad = BEFORE.replace("mode: vepa", "mode: brige")
    config.write_text(bad)
    rejected = f"spec rejected: {config}"
    daemon.wait_for_log(rejected)

    # The same bad file, unchanged: only a re-read on SIGHUP can report it again.
    daemon.signal(signal.SIGHUP)

    daemon.wait_for_log(rejected, count=2)
    assert daemon.running()
    assert mode_of(lab, "mv-a") == "vepa"

    config.write_text(AFTER)
    daemon.wait_for_log("mv-a: mode vepa -> private (in place)")
    applied = len(daemon.applied())
    daemon.signal(signal.SIGHUP)  # a good spec re-read changes nothing and keeps running
    daemon.assert_quiet()
    assert daemon.running() and len(daemon.applied()) == applied


# --- 8. no feedback loop -------------------------------------------------------------------


def test_daemon_goes_quiet_after_converging(lab: Lab, daemon: Daemon, spec_dir: Path) -> None:
    red = lab.add_netns("red")
    config = install_plain(spec_dir, spec_text(
        {"name": "mv-a", "parent": "eth1", "mode": "bridge", "mtu": 1400,
         "mac": "02:00:00:00:aa:01"},
        {"name": "mv-s", "parent": "eth2", "mode": "source", "flags": ["nodst"],
         "source_macs": ["02:00:00:00:00:01", "02:00:00:00:00:02"], "netns": red},
        {"name": "mv-d", "parent": "eth2", "mode": "vepa", "state": "down"}))
    daemon.start(config)
    daemon.wait_for(lambda: all_there(lab, Expect("mv-a", "eth1", "bridge"),
                                      Expect("mv-s", "eth2", "source", red))
                    and mode_of(lab, "mv-d") == "vepa", "every interface")
    lines = daemon.wait_for_applied(3)

    daemon.assert_quiet()
    assert lines == 3, daemon.log()  # one create each: the creations' own events did no more

    lab.ip("link", "set", "mv-a", "mtu", "1300")
    daemon.wait_for(lambda: len(daemon.applied()) > lines, "the correction")
    daemon.assert_quiet()
    assert len(daemon.applied()) == lines + 1


# --- lost events and symlinked specs -------------------------------------------------------


def test_resync_rereads_a_spec_change_no_event_announced(
        lab: Lab, daemon: Daemon, spec_dir: Path, tmp_path: Path) -> None:
    config = install_plain(spec_dir, BEFORE)
    daemon.start(config, resync=1)
    daemon.wait_for(lambda: mode_of(lab, "mv-a") == "vepa", "the first spec")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "macvland.yaml").write_text(AFTER)

    # A bind mount inside the daemon's own mount namespace (`ip netns exec` made it): the
    # file it reads changes, and no inotify event says so.
    subprocess.run(["nsenter", "-t", str(daemon.pid), "-m", "mount", "--bind",
                    str(elsewhere / "macvland.yaml"), str(config)], check=True)

    daemon.wait_for(lambda: mode_of(lab, "mv-a") == "private", "the new spec", timeout=5)


def test_spec_symlinked_from_another_directory_is_followed(
        lab: Lab, daemon: Daemon, spec_dir: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "srv"
    elsewhere.mkdir()
    target = install_plain(elsewhere, BEFORE)
    config = spec_dir / "macvland.yaml"
    os.symlink(target, config)
    daemon.start(config)
    daemon.wait_for(lambda: mode_of(lab, "mv-a") == "vepa", "the first spec")

    rename_over(elsewhere, AFTER)

    daemon.wait_for(lambda: mode_of(lab, "mv-a") == "private", "the new spec", timeout=5)



def test_replaced_spec_directory_is_watched_again(
        lab: Lab, daemon: Daemon, spec_dir: Path, tmp_path: Path) -> None:
    # Replacing the watched directory kills its inotify watch silently; it must be re-armed.
    config = install_plain(spec_dir, BEFORE)
    daemon.start(config)
    daemon.wait_for(lambda: mode_of(lab, "mv-a") == "vepa", "the first spec")
    staged = tmp_path / "etc.new"
    staged.mkdir()
    install_plain(staged, AFTER)
    old = tmp_path / "etc.old"
    os.rename(spec_dir, old)
    os.rename(staged, spec_dir)
    daemon.wait_for(lambda: mode_of(lab, "mv-a") == "private", "the replaced directory's spec")

    # And the new directory is watched in turn.
    rename_over(spec_dir, BEFORE)
    daemon.wait_for(lambda: mode_of(lab, "mv-a") == "vepa", "an edit in the new directory")


def test_stops_fighting_whoever_keeps_undoing_a_correction(
        lab: Lab, daemon: Daemon, spec_dir: Path) -> None:
    config = install_plain(spec_dir, BEFORE)
    daemon.start(config)
    daemon.wait_for(lambda: mode_of(lab, "mv-a") == "vepa", "the first spec")

    for round_ in range(4):
        lab.ip("link", "set", "mv-a", "type", "macvlan", "mode", "private")
        if round_ < 3:
            daemon.wait_for(lambda: mode_of(lab, "mv-a") == "vepa", f"correction {round_ + 1}")
    daemon.wait_for_log("something keeps undoing macvland's changes")

    fight = next(line for line in daemon.log().splitlines() if "keeps undoing" in line)
    assert "mv-a" in fight and "mode" in fight and "private" in fight
    lab.ip("link", "set", "mv-a", "type", "macvlan", "mode", "bridge")
    daemon.assert_quiet()  # held: no more corrections for a while
    assert mode_of(lab, "mv-a") == "bridge"


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_resyncs_without_a_valid_spec_do_not_spin(
        lab: Lab, daemon: Daemon, spec_dir: Path) -> None:
    # With nothing valid to enforce, each resync finds no pass to run; the next resync must
    # still be a resync interval away, not due at once forever.
    config = install_plain(spec_dir, "version: 1\ninterfaces:\n  - name: mv-a\n")
    daemon.start(config, resync=0.2)
    daemon.wait_for_log("spec rejected")
    before = _cpu_seconds(daemon.pid)
    time.sleep(QUIET_WINDOW)  # an observation window: a spinning loop burns all of it
    assert _cpu_seconds(daemon.pid) - before < QUIET_WINDOW / 3
    assert daemon.running()
