"""The kept parse (parsed.py): taken only for the same bytes and from a private place."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from macvland import parsed
from macvland.errors import SpecError
from macvland.intake import load_spec, read_spec
from macvland.spec import parse_source

SPEC = "version: 1\ninterfaces:\n  - {name: mv0, parent: eth1, mode: vepa}\n"


@pytest.fixture
def spec(tmp_path: Path) -> Path:
    path = tmp_path / "macvland.yaml"
    path.write_text(SPEC)
    path.chmod(0o600)
    return path


@pytest.fixture
def state(tmp_path: Path) -> Path:
    path = tmp_path / "state"
    path.mkdir(mode=0o700)
    return path


def test_the_same_bytes_are_taken_from_the_kept_parse(spec: Path, state: Path) -> None:
    first = load_spec(str(spec), state_dir=str(state))
    assert (state / parsed.FILE).stat().st_mode & 0o777 == 0o600
    kept = parsed.load(read_spec(str(spec)), str(state))
    assert kept == first == parse_source(read_spec(str(spec)))
    assert kept is not None and kept.interfaces[0].origin == f"{spec}:3"


EVERY_SETTING = """version: 1
interfaces:
  - {name: mv0, parent: eth1, mode: source, source_macs: ["02:00:00:00:00:01"],
     flags: [nodst], mac: "02:00:00:00:00:02", mtu: 1400, bcqueuelen: 100, bc_cutoff: 2,
     netns: blue, addresses: [192.0.2.10/24, "2001:db8::10/64"],
     routes: [{to: default, via: 192.0.2.1}, {to: "2001:db8:1::/48", metric: 5, table: 100}]}
  - {name: tap0, parent: eth2, kind: macvtap, mode: passthru, flags: [nopromisc],
     tap: {owner: root, group: root, mode: "0660"}, numtxqueues: 2, numrxqueues: 2}
  - {name: mv9, parent: eth1, state: absent}
"""


def test_every_kind_of_setting_comes_back_equal(spec: Path, state: Path) -> None:
    """The kept form (each interface as its constructor's arguments) loses nothing: enums,
    sets, addresses, routes and the tap record come back equal."""
    spec.write_text(EVERY_SETTING)
    first = load_spec(str(spec), state_dir=str(state))
    kept = parsed.load(read_spec(str(spec)), str(state))
    assert kept is not None and kept == first and len(kept.interfaces) == 3
    assert kept.interfaces[1].tap == first.interfaces[1].tap is not None


@pytest.mark.parametrize("change", [
    lambda spec: spec.write_text(SPEC.replace("vepa", "bridge")),  # other bytes
    lambda spec: spec.write_text(SPEC + "\n"),  # one byte more, same meaning
])
def test_other_bytes_are_parsed_again(spec: Path, state: Path,
                                      change: Callable[[Path], object]) -> None:
    load_spec(str(spec), state_dir=str(state))
    change(spec)
    assert parsed.load(read_spec(str(spec)), str(state)) is None
    again = load_spec(str(spec), state_dir=str(state))
    assert again == parse_source(read_spec(str(spec)))


def test_a_missing_state_directory_is_made_private(spec: Path, tmp_path: Path) -> None:
    """Where the daemon never ran, the first one-shot command makes the directory, so that
    the next one finds the parse."""
    state = tmp_path / "run" / "macvland"
    load_spec(str(spec), state_dir=str(state))
    assert state.stat().st_mode & 0o777 == 0o700
    assert parsed.load(read_spec(str(spec)), str(state)) == parse_source(read_spec(str(spec)))


def test_the_same_bytes_under_another_name_are_parsed_again(
        spec: Path, state: Path, tmp_path: Path) -> None:
    load_spec(str(spec), state_dir=str(state))
    other = tmp_path / "other.yaml"
    other.write_text(SPEC)
    other.chmod(0o600)
    assert parsed.load(read_spec(str(other)), str(state)) is None  # its origins differ


@pytest.mark.parametrize("where, mode", [("file", 0o620), ("file", 0o602),
                                         ("directory", 0o770), ("directory", 0o707)])
def test_a_kept_parse_others_could_write_is_not_loaded(
        spec: Path, state: Path, where: str, mode: int) -> None:
    load_spec(str(spec), state_dir=str(state))
    (state / parsed.FILE if where == "file" else state).chmod(mode)
    assert parsed.load(read_spec(str(spec)), str(state)) is None


def test_a_damaged_kept_parse_is_ignored(spec: Path, state: Path) -> None:
    load_spec(str(spec), state_dir=str(state))
    kept = state / parsed.FILE
    kept.write_bytes(kept.read_bytes()[:100])
    assert parsed.load(read_spec(str(spec)), str(state)) is None
    assert load_spec(str(spec), state_dir=str(state)) == parse_source(read_spec(str(spec)))


def test_a_spec_with_problems_is_never_kept(spec: Path, state: Path) -> None:
    spec.write_text(SPEC.replace("vepa", "vepaa"))
    with pytest.raises(SpecError):
        load_spec(str(spec), state_dir=str(state))
    assert not (state / parsed.FILE).exists()


def test_nothing_is_kept_in_a_directory_others_can_write(spec: Path, state: Path) -> None:
    state.chmod(0o777)
    load_spec(str(spec), state_dir=str(state))
    assert os.listdir(state) == []


def test_a_kept_parse_loads_without_the_parser_or_yaml(spec: Path, state: Path) -> None:
    """Importing the parser and YAML is most of what a kept parse saves a one-shot command."""
    probe = ("import sys; from macvland.intake import load_spec; "
             "d = load_spec(sys.argv[1], state_dir=sys.argv[2]); "
             "print(len(d.interfaces), 'yaml' in sys.modules, 'macvland.spec' in sys.modules)")

    def run() -> str:
        return subprocess.run([sys.executable, "-c", probe, str(spec), str(state)], text=True,
                              capture_output=True, timeout=60, check=True).stdout.strip()

    assert run() == "1 True True"  # parsed, and kept
    assert run() == "1 False False"  # taken as kept
