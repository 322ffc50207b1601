"""End-to-end tests of the daemon's intake: half-written, hostile and unsafe specs never act,
and every record says truthfully why it was made.

Each test runs `macvland run` as a process in throwaway namespaces (tests/helpers.py's
Daemon), writes its spec from here in the way a slow or hostile writer would, and checks the
kernel with iproute2. Writers pause with sleeps, since a pause is what they are made of; every
wait for the daemon polls for a condition with a deadline.
"""

from __future__ import annotations

import os
import re
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import pytest

from tests.conftest import Lab
from tests.helpers import Daemon
from tests.test_daemon import Expect, all_there, ifindex_of, link, mode_of, spec_text
from tests.test_intake import HOSTILE

COUNT = 10
DRIFT_MESSAGE_ID = "MESSAGE_ID=153a19b7cd1e47e492ad9998112ace7b"


def ten(last_mode: str) -> str:
    """Ten interfaces; the last one's mode is what a rewrite changes."""
    return spec_text(*({"name": f"mv{i}", "parent": "eth1",
                        "mode": last_mode if i == COUNT - 1 else "bridge"}
                       for i in range(COUNT)))


BEFORE, AFTER = ten("vepa"), ten("private")


def started(lab: Lab, daemon: Daemon, config: Path, *extra: str) -> dict[str, int]:
    daemon.start(config, extra=extra)
    daemon.wait_for(lambda: all_there(lab, *(Expect(f"mv{i}", "eth1", "bridge")
                                             for i in range(COUNT - 1)))
                    and mode_of(lab, f"mv{COUNT - 1}") == "vepa", "the ten interfaces")
    return {f"mv{i}": ifindex_of(lab, f"mv{i}") for i in range(COUNT)}


def deletions(daemon: Daemon) -> list[str]:
    return [line for line in daemon.applied() if "MACVLAND_ACTION=delete" in line
            or "MACVLAND_ACTION=recreate" in line]


# --- 1. a spec rewritten in place, slowly ----------------------------------------------------


def pause() -> None:
    time.sleep(0.7)  # longer than the debounce and the quiet window: a writer thinking


def pause_on_a_line_boundary(file: IO[str], text: str) -> None:
    half = text.index("  - name: mv5")  # the first half is a valid spec of five interfaces
    file.write(text[:half])
    file.flush()
    pause()
    file.write(text[half:])


def pause_mid_line(file: IO[str], text: str) -> None:
    half = text.index("  - name: mv5") + 6
    file.write(text[:half])
    file.flush()
    pause()
    file.write(text[half:])


def truncate_then_write_slowly(file: IO[str], text: str) -> None:
    file.flush()  # opened with "w": empty now
    pause()
    for line in text.splitlines(keepends=True):
        file.write(line)
        file.flush()
        time.sleep(0.02)


def many_small_writes(file: IO[str], text: str) -> None:
    for start in range(0, len(text), 7):
        file.write(text[start:start + 7])
        file.flush()
        time.sleep(0.005)


def keep_open_for_seconds(file: IO[str], text: str) -> None:
    file.write(text[:len(text) // 2])
    file.flush()
    pause()
    file.write(text[len(text) // 2:])
    file.flush()
    time.sleep(2.5)  # done writing, not yet closed


WRITERS = {
    "pause-on-a-line-boundary": pause_on_a_line_boundary,
    "pause-mid-line": pause_mid_line,
    "truncate-then-slow-write": truncate_then_write_slowly,
    "many-small-writes": many_small_writes,
    "writer-keeps-it-open-for-seconds": keep_open_for_seconds,
}


@pytest.mark.parametrize("write", WRITERS.values(), ids=WRITERS.keys())
def test_a_spec_rewritten_in_place_slowly_acts_only_once_written(
        lab: Lab, daemon: Daemon, spec_dir: Path,
        write: Callable[[IO[str], str], None]) -> None:
    config = spec_dir / "macvland.yaml"
    config.write_text(BEFORE)
    before = started(lab, daemon, config)

    with open(config, "w") as file:  # in place: truncated, then written
        write(file, AFTER)

    daemon.wait_for(lambda: mode_of(lab, f"mv{COUNT - 1}") == "private", "the final spec")
    assert {name: ifindex_of(lab, name) for name in before} == before
    assert deletions(daemon) == []
    assert "spec rejected" not in daemon.log()


def test_a_writer_that_never_closes_is_read_once_it_settles(
        lab: Lab, daemon: Daemon, spec_dir: Path) -> None:
    config = spec_dir / "macvland.yaml"
    config.write_text(BEFORE)
    before = started(lab, daemon, config, "--settle", "1")

    with open(config, "w") as file:
        file.write(AFTER)
        file.flush()
        daemon.wait_for(lambda: mode_of(lab, f"mv{COUNT - 1}") == "private",
                        "the final spec, while its writer still holds it open")
    assert {name: ifindex_of(lab, name) for name in before} == before
    assert f"reading {config} although a writer still has it open" in daemon.log()


def test_fragments_written_one_after_another_make_one_pass(
        lab: Lab, daemon: Daemon, spec_dir: Path) -> None:
    (spec_dir / "00-first.yaml").write_text(spec_text(
        {"name": "mv0", "parent": "eth1", "mode": "bridge"}))
    daemon.start(spec_dir)
    daemon.wait_for(lambda: all_there(lab, Expect("mv0", "eth1", "bridge")), "mv0")
    daemon.wait_for_log("spec accepted")

    for i in range(1, 4):  # one tool's run: a fragment, a moment's work, the next fragment
        (spec_dir / f"{i:02d}-more.yaml").write_text(spec_text(
            {"name": f"mv{i}", "parent": "eth1", "mode": "vepa"}))
        time.sleep(0.2)

    daemon.wait_for(lambda: all_there(lab, *(Expect(f"mv{i}", "eth1", "vepa")
                                             for i in range(1, 4))), "every fragment")
    accepted = re.findall(r"spec accepted: .*?, (\d+) interface", daemon.log())
    assert accepted == ["1", "4"], daemon.log()


def test_a_reload_while_the_spec_is_being_written_keeps_the_spec_in_force(
        lab: Lab, daemon: Daemon, spec_dir: Path) -> None:
    config = spec_dir / "macvland.yaml"
    config.write_text(BEFORE)
    before = started(lab, daemon, config, "--settle", "1")

    with open(config, "w") as file:
        half = AFTER.index("  - name: mv5")
        file.write(AFTER[:half])
        file.flush()
        daemon.signal(signal.SIGHUP)
        # Still writing, a byte at a time, for longer than the reload waits.
        rest = iter(AFTER[half:half + 60])
        deadline = time.monotonic() + 15
        while "reload: not read" not in daemon.log() and time.monotonic() < deadline:
            file.write(next(rest, "#"))
            file.flush()
            time.sleep(0.1)
        daemon.wait_for_log(f"reload: not read, {config} is still being written")
        assert {name: ifindex_of(lab, name) for name in before} == before
        file.seek(0)
        file.truncate()
        file.write(AFTER)

    daemon.wait_for(lambda: mode_of(lab, f"mv{COUNT - 1}") == "private", "the final spec")
    assert {name: ifindex_of(lab, name) for name in before} == before
    assert deletions(daemon) == []


def test_a_symlink_pointed_at_the_same_bytes_elsewhere_is_followed(
        lab: Lab, daemon: Daemon, spec_dir: Path, tmp_path: Path) -> None:
    first, second = tmp_path / "srv-a", tmp_path / "srv-b"
    for directory in (first, second):
        directory.mkdir()
        (directory / "macvland.yaml").write_text(BEFORE)
    config = spec_dir / "macvland.yaml"
    config.symlink_to(first / "macvland.yaml")
    before = started(lab, daemon, config)
    reads = daemon.log().count("spec accepted")

    staged = spec_dir / ".link"
    staged.symlink_to(second / "macvland.yaml")
    os.rename(staged, config)  # the same bytes: nothing to parse, but a new place to watch
    daemon.assert_quiet()
    (second / "macvland.yaml").write_text(AFTER)

    daemon.wait_for(lambda: mode_of(lab, f"mv{COUNT - 1}") == "private",
                    "the edit in the directory the link points at now", timeout=5)
    assert {name: ifindex_of(lab, name) for name in before} == before
    assert daemon.log().count("spec accepted") == reads + 1


# --- 2. hostile files ---------------------------------------------------------------------------


def peak_rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"^VmHWM:\s+(\d+) kB", status, re.MULTILINE)
    assert match, status
    return int(match.group(1)) / 1024


@pytest.mark.parametrize("make", [make for make, _ in HOSTILE.values()], ids=HOSTILE.keys())
def test_a_hostile_spec_keeps_the_last_good_one_and_the_daemon_repairing(
        lab: Lab, daemon: Daemon, spec_dir: Path, tmp_path: Path,
        make: Callable[[Path], None]) -> None:
    config = spec_dir / "macvland.yaml"
    config.write_text(BEFORE)
    before = started(lab, daemon, config)
    staged = spec_dir / ".staged"
    make(staged)

    if staged.is_dir():
        config.unlink()
    os.rename(staged, config)
    lab.ip("link", "del", "mv3")  # during the episode

    daemon.wait_for_log("spec rejected")
    daemon.wait_for(lambda: link(lab, "mv3") is not None, "mv3 repaired")
    assert "Traceback" not in daemon.log()
    assert "MACVLAND_PROBLEMS=" in daemon.log()
    assert len(daemon.log()) < 50_000  # problems are capped in the record too
    assert daemon.running()
    assert {n: ifindex_of(lab, n) for n in before if n != "mv3"} == {
        n: i for n, i in before.items() if n != "mv3"}
    assert mode_of(lab, f"mv{COUNT - 1}") == "vepa"  # the last good spec stays in force
    assert peak_rss_mb(daemon.pid) < 300


def test_the_daemon_repairs_while_a_large_spec_is_parsed(
        lab: Lab, daemon: Daemon, spec_dir: Path) -> None:
    config = spec_dir / "macvland.yaml"
    config.write_text(BEFORE)
    before = started(lab, daemon, config)
    # The same ten, and 40,000 more that must not exist: seconds of parsing, little to do.
    large = AFTER + "".join(f"  - name: gone{i}\n    parent: eth1\n    state: absent\n"
                            for i in range(40_000))
    staged = spec_dir / ".staged"
    staged.write_text(large)

    os.rename(staged, config)
    lab.ip("link", "del", "mv3")

    daemon.wait_for(lambda: link(lab, "mv3") is not None, "mv3 repaired")
    daemon.wait_for_log("spec accepted: ", count=2)
    log = daemon.log()
    repaired = log.index("info: mv3: create")
    accepted = log.index(f"spec accepted: {config}, 40010 interface(s)")
    # The repair took a pass (tens of ms); the parse, seconds: the loop did not wait for it.
    assert repaired < accepted, log
    daemon.wait_for(lambda: mode_of(lab, f"mv{COUNT - 1}") == "private", "the large spec")
    assert {n: ifindex_of(lab, n) for n in before if n != "mv3"} == {
        n: i for n, i in before.items() if n != "mv3"}


def test_a_spec_made_unsafe_is_refused_and_the_last_good_one_kept(
        lab: Lab, daemon: Daemon, spec_dir: Path) -> None:
    config = spec_dir / "macvland.yaml"
    config.write_text(BEFORE)
    before = started(lab, daemon, config)

    config.chmod(0o666)
    config.write_text(AFTER)
    daemon.wait_for_log(f"{config}: the spec is writable by group root (gid 0) and everyone")
    assert f"fix: chmod go-w {config}" in daemon.log()
    assert mode_of(lab, f"mv{COUNT - 1}") == "vepa"

    config.chmod(0o644)
    daemon.signal(signal.SIGHUP)  # a mode change is not an inotify write: tell it
    daemon.wait_for(lambda: mode_of(lab, f"mv{COUNT - 1}") == "private", "the fixed spec")
    assert {name: ifindex_of(lab, name) for name in before} == before


# --- 4. truthful records ------------------------------------------------------------------------


@pytest.fixture
def unrelated_writes(spec_dir: Path) -> Iterator[threading.Event]:
    """An editor's swap file and a log in the spec's directory, written all the time."""
    stop = threading.Event()

    def scribble() -> None:
        n = 0
        while not stop.is_set():
            (spec_dir / ".macvland.yaml.swp").write_text(f"swap {n}\n")
            with open(spec_dir / "notes.log", "a") as notes:
                notes.write(f"note {n}\n")
            n += 1
            time.sleep(0.01)

    thread = threading.Thread(target=scribble, daemon=True)
    thread.start()
    try:
        yield stop
    finally:
        stop.set()
        thread.join()


def test_a_delete_amid_unrelated_writes_is_recorded_as_drift(
        lab: Lab, daemon: Daemon, spec_dir: Path, unrelated_writes: threading.Event) -> None:
    config = spec_dir / "macvland.yaml"
    config.write_text(BEFORE)
    started(lab, daemon, config)
    applied = daemon.wait_for_applied(COUNT)

    lab.ip("link", "del", "mv3")

    daemon.wait_for(lambda: link(lab, "mv3") is not None, "mv3 repaired")
    daemon.wait_for(lambda: len(daemon.applied()) > applied, "the repair's record")
    (record,) = daemon.applied()[applied:]
    assert record.startswith("info: mv3: create"), record
    assert DRIFT_MESSAGE_ID in record, record
    assert "MACVLAND_TRIGGER=spec change" not in record, record
    assert daemon.log().count("spec accepted") == 1


def test_a_spec_edit_amid_unrelated_writes_is_read_without_waiting_them_out(
        lab: Lab, daemon: Daemon, spec_dir: Path, unrelated_writes: threading.Event) -> None:
    config = spec_dir / "macvland.yaml"
    config.write_text(BEFORE)
    # A settle time longer than the deadline: only "the spec's files are quiet" can read it.
    before = started(lab, daemon, config, "--settle", "60")

    config.write_text(AFTER)

    daemon.wait_for(lambda: mode_of(lab, f"mv{COUNT - 1}") == "private", "the new spec")
    assert {name: ifindex_of(lab, name) for name in before} == before
    (change,) = [line for line in daemon.applied() if line.startswith(f"info: mv{COUNT - 1}")
                 and "vepa -> private" in line]
    assert "MACVLAND_TRIGGER=spec change" in change, change


@pytest.mark.parametrize("with_writes", [False, True], ids=["quiet-directory", "busy-directory"])
def test_the_fight_guard_decides_the_same_whatever_else_is_written(
        lab: Lab, daemon: Daemon, spec_dir: Path, request: pytest.FixtureRequest,
        with_writes: bool) -> None:
    if with_writes:
        request.getfixturevalue("unrelated_writes")
    config = spec_dir / "macvland.yaml"
    config.write_text(BEFORE)
    started(lab, daemon, config)
    last = f"mv{COUNT - 1}"

    for round_ in range(4):
        lab.ip("link", "set", last, "type", "macvlan", "mode", "private")
        if round_ < 3:
            daemon.wait_for(lambda: mode_of(lab, last) == "vepa", f"correction {round_ + 1}")
    daemon.wait_for_log("something keeps undoing macvland's changes")
    # Corrected three times and a fourth, which made it a fight; the next undo stays.
    corrections = [line for line in daemon.applied() if line.startswith(f"info: {last}: mode")]
    assert len(corrections) == 4, corrections
    assert all(DRIFT_MESSAGE_ID in c and "MACVLAND_TRIGGER=drift" in c for c in corrections)
    lab.ip("link", "set", last, "type", "macvlan", "mode", "bridge")
    daemon.assert_quiet()
    assert mode_of(lab, last) == "bridge"
