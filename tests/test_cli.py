"""End-to-end tests of the command line, run as a process inside a throwaway namespace."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from macvland.cli import parser
from tests.conftest import Lab, macvlan_info
from tests.helpers import MACVLAND


def run(lab: Lab, *args: str, config: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MACVLAND_STATE_DIR": lab.state_dir}
    if config is not None:
        env["MACVLAND_CONFIG"] = str(config)
    return subprocess.run(["ip", "netns", "exec", lab.home, MACVLAND, *args],
                          capture_output=True, text=True, env=env, timeout=60)


@pytest.fixture
def spec_file(tmp_path: Path, lab: Lab) -> Path:
    path = tmp_path / "macvland.yaml"
    path.write_text(f"""\
version: 1
interfaces:
  - name: mv-web
    parent: eth1
    mode: vepa
    mtu: 1400
  - name: mv-src
    parent: eth1
    mode: source
    source_macs: [02:00:00:00:00:01]
    netns: {lab.name("web")}
  - name: mv-db
    parent: eth2
    netns: {lab.name("db")}
""")
    return path


def test_validate_reports_every_error_with_its_place(lab: Lab, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\ninterfaces:\n  - name: mv0\n    parent: eth1\n"
                   "    mode: brige\n    mtu: 20\n")
    result = run(lab, "validate", "-c", str(bad))
    assert result.returncode == 1
    assert f"{bad}:5:11: interfaces[0].mode: 'brige' is not one of" in result.stderr
    assert "did you mean 'bridge'" in result.stderr
    assert f"{bad}:6:10: interfaces[0].mtu:" in result.stderr


def test_validate_accepts_the_shipped_example(lab: Lab) -> None:
    example = Path(__file__).parent.parent / "etc" / "macvland" / "macvland.yaml"
    result = run(lab, "validate", "-c", str(example))
    assert result.returncode == 0, result.stderr


def test_plan_apply_status_round_trip(lab: Lab, spec_file: Path) -> None:
    lab.add_netns("web")

    plan = run(lab, "plan", config=spec_file)
    assert plan.returncode == 2, plan.stderr
    assert "mv-web: create: macvlan vepa on eth1, mtu 1400, up" in plan.stdout
    assert "mv-db" in plan.stderr and "pending" in plan.stderr
    assert "mv-web" not in lab.links()  # plan is a dry run

    applied = run(lab, "apply", config=spec_file)
    assert applied.returncode == 1  # mv-db waits for its namespace
    assert macvlan_info(lab.links()["mv-web"])["mode"] == "vepa"

    lab.add_netns("db")
    assert run(lab, "apply", config=spec_file).returncode == 0
    assert run(lab, "plan", config=spec_file).returncode == 0

    status = run(lab, "status", "--json", config=spec_file)
    assert status.returncode == 0, status.stderr
    report = json.loads(status.stdout)
    assert {i["name"]: i["condition"] for i in report["interfaces"]} == {
        "mv-web": "in sync", "mv-src": "in sync", "mv-db": "in sync"}
    tree = {node["lower"]: {(c["name"], c["netns"]) for c in node["children"]}
            for node in report["tree"]}
    assert tree["eth1"] == {("mv-web", None), ("mv-src", lab.name("web"))}
    assert tree["eth2"] == {("mv-db", lab.name("db"))}
    # The raw view it was resolved from, as iproute2 reads it: name@ifN and the link-netnsid.
    raw = lab.links(lab.name("web"))["mv-src"]
    shown = {c["name"]: c["shown_as"] for node in report["tree"] for c in node["children"]}
    assert shown["mv-src"] == f"mv-src@if{raw['link_index']} link-netnsid {raw['link_netnsid']}"
    assert shown["mv-web"] == "mv-web@eth1"


def test_plan_describes_in_place_changes_and_json(lab: Lab, spec_file: Path) -> None:
    lab.add_netns("web")
    lab.add_netns("db")
    assert run(lab, "apply", config=spec_file).returncode == 0
    spec_file.write_text(spec_file.read_text().replace("mode: vepa", "mode: private"))

    plan = run(lab, "plan", config=spec_file)
    assert plan.returncode == 2
    assert plan.stdout.strip() == "mv-web: mode vepa -> private (in place)"

    as_json = json.loads(run(lab, "plan", "--json", config=spec_file).stdout)
    assert as_json["operations"] == [{
        "op": "change", "netns": None, "name": "mv-web",
        "ifindex": lab.links()["mv-web"]["ifindex"],
        "changes": [{"field": "mode", "old": "vepa", "new": "private"}]}]


def test_status_shows_drift_and_conflict(lab: Lab, spec_file: Path) -> None:
    lab.add_netns("web")
    lab.add_netns("db")
    assert run(lab, "apply", config=spec_file).returncode == 0
    lab.ip("link", "set", "mv-web", "mtu", "1300")
    lab.ip("link", "del", "mv-db", netns=lab.name("db"))  # the owned one went, a veth came
    lab.ip("link", "add", "mv-db", "type", "veth", "peer", "name", "y", netns=lab.name("db"))

    status = run(lab, "status", config=spec_file)

    assert status.returncode == 1
    assert "mv-web: drifted: mv-web: mtu 1300 -> 1400 (in place)" in status.stdout
    assert "conflict: mv-db already exists as a veth" in status.stdout


def test_status_ready_accepts_in_sync_and_pending_only(lab: Lab, spec_file: Path) -> None:
    lab.add_netns("web")  # mv-db's namespace is missing: pending
    assert run(lab, "apply", config=spec_file).returncode == 1

    ready = run(lab, "status", "--ready", config=spec_file)
    assert (ready.returncode, ready.stdout.strip()) == (
        0, f"2 in sync, 1 pending: mv-db waits for netns {lab.name('db')}"), ready.stderr

    lab.ip("link", "set", "mv-web", "mtu", "1300")
    drifted = run(lab, "status", "--ready", config=spec_file)
    assert (drifted.returncode, drifted.stdout.strip()) == (
        1, f"1 in sync, 1 pending, 1 failing: mv-db waits for netns {lab.name('db')}")

    spec_file.write_text(spec_file.read_text().replace("mode: vepa", "mode: vepx"))
    invalid = run(lab, "status", "--ready", config=spec_file)
    assert invalid.returncode == 1
    assert "interfaces[0].mode: 'vepx' is not one of" in invalid.stderr


def test_status_ready_and_json_exclude_each_other(lab: Lab, spec_file: Path) -> None:
    both = run(lab, "status", "--ready", "--json", config=spec_file)
    assert both.returncode == 2
    assert "not allowed with argument" in both.stderr


def test_missing_spec_file_is_an_error(lab: Lab, tmp_path: Path) -> None:
    result = run(lab, "apply", "-c", str(tmp_path / "nope.yaml"))
    assert result.returncode == 1
    assert "nope.yaml" in result.stderr and "No such file" in result.stderr


def test_an_unwritable_state_directory_is_a_clear_error(lab: Lab, spec_file: Path) -> None:
    lab.add_netns("web")  # interfaces in other namespaces must be remembered
    lab.add_netns("db")
    env_dir = "/proc/macvland-cannot-be-here"
    result = subprocess.run(
        ["ip", "netns", "exec", lab.home, MACVLAND, "apply", "-c", str(spec_file)],
        capture_output=True, text=True, timeout=60,
        env={**os.environ, "MACVLAND_STATE_DIR": env_dir})
    assert result.returncode == 1
    assert f"macvland: cannot record where interfaces were put in {env_dir}" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(("value", "message"), [
    ("nan", "must be a positive number, got nan"),
    ("inf", "must be a positive number, got inf"),
    ("0", "must be a positive number, got 0"),
    ("-1", "must be a positive number, got -1"),
    ("abc", "not a number: 'abc'"),
])
def test_run_refuses_intervals_the_loop_cannot_wait_for(
        value: str, message: str, capsys: pytest.CaptureFixture[str]) -> None:
    # nan made the loop spin, inf crashed it after the first pass.
    for option in ("--resync", "--debounce"):
        with pytest.raises(SystemExit) as exit_:
            parser().parse_args(["run", option, value])
        assert exit_.value.code == 2
        assert f"{option}: {message}" in capsys.readouterr().err
    assert parser().parse_args(["run", "--resync", "0.5"]).resync == 0.5


@pytest.mark.parametrize("command", ["validate", "plan", "apply", "status", "schema", "run"])
def test_every_command_has_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        parser().parse_args([command, "--help"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: macvland {command}")


def test_validate_imports_neither_netlink_nor_the_daemon_nor_typing(tmp_path: Path) -> None:
    """Start-up is most of a one-shot command's time: each command imports what it uses."""
    spec = tmp_path / "macvland.yaml"
    spec.write_text("version: 1\ninterfaces: []\n")
    probe = ("import sys; from macvland.cli import main; main(['validate', '-c', sys.argv[1]]); "
             "print(' '.join(sys.modules))")
    result = subprocess.run([sys.executable, "-c", probe, str(spec)], capture_output=True,
                            text=True, timeout=60, check=True)
    loaded = set(result.stdout.split("\n")[-2].split())
    unneeded = {"macvland.rtnl", "macvland.netns", "macvland.apply", "macvland.plan",
                "macvland.loop", "macvland.watch", "macvland.systemd", "macvland.audit",
                "watchdog", "json", "logging", "shutil",
                # Each costs several milliseconds of a 60 ms budget (macvland/frozen.py).
                "dataclasses", "inspect", "typing"}
    assert "macvland.spec" in loaded
    assert loaded & unneeded == set()


def test_a_one_shot_command_flushes_its_whole_output_before_it_leaves() -> None:
    """One-shot commands leave by os._exit (cli.entry): what they print must be out first,
    through a pipe as well as to a terminal."""
    result = subprocess.run([MACVLAND, "schema"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["title"]
    assert result.stderr == ""


def test_a_one_shot_command_whose_reader_is_gone_exits_quietly(tmp_path: Path) -> None:
    """`macvland plan | head -1`: a closed pipe is not an error, and no traceback shows."""
    read, write = os.pipe()
    os.close(read)  # the reader is gone before anything is written
    try:
        result = subprocess.run([MACVLAND, "schema"], stdout=write, stderr=subprocess.PIPE,
                                text=True, timeout=60)
    finally:
        os.close(write)
    assert result.returncode == 0
    assert result.stderr == ""


def test_a_one_shot_exit_code_survives_the_quick_exit(tmp_path: Path) -> None:
    spec = tmp_path / "macvland.yaml"
    spec.write_text("version: 1\ninterfaces: [{name: mv0}]\n")
    result = subprocess.run([MACVLAND, "validate", "-c", str(spec)], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 1
    assert "missing required key 'parent'" in result.stderr
