"""The spec reader in-process: it waits for a writer, and never parses the same bytes twice.

The writer is this test (a lease sees any process's open-for-writing, ours included). The
reader's own events come from the test calling `changed()`, as the file watcher would.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import macvland.reader
from macvland.reader import SpecReader

SPEC = "version: 1\ninterfaces:\n" + "".join(
    f"  - name: mv{i}\n    parent: eth1\n" for i in range(6))
OBSERVE = 0.6
"""How long the reader must stay silent to count as "it waited" (an absence is observed)."""


@pytest.fixture
def spec(tmp_path: Path) -> Path:
    path = tmp_path / "macvland.yaml"
    path.write_text(SPEC)
    return path


@pytest.fixture
def reader(spec: Path) -> Iterator[tuple[SpecReader, threading.Event]]:
    delivered = threading.Event()
    reader = SpecReader(str(spec), 1 << 20, delivered.set, settle=30)
    reader.read_now()  # what is in force
    reader.start()
    try:
        yield reader, delivered
    finally:
        reader.stop()


def test_nothing_is_read_while_a_writer_has_the_spec_open(
        spec: Path, reader: tuple[SpecReader, threading.Event]) -> None:
    spec_reader, delivered = reader
    new = SPEC.replace("mv5", "mv9")
    with open(spec, "w") as file:
        file.write(new[:len(new) // 2])  # half a spec, valid up to a line
        file.flush()
        spec_reader.changed()
        assert not delivered.wait(OBSERVE)
        file.write(new[len(new) // 2:])
    spec_reader.changed()
    assert delivered.wait(15)
    intake = spec_reader.take()
    assert intake is not None and intake.desired is not None
    assert [s.name for s in intake.desired.interfaces][-1] == "mv9"


def test_unchanged_bytes_are_neither_handed_over_nor_parsed_again(
        spec: Path, reader: tuple[SpecReader, threading.Event]) -> None:
    spec_reader, delivered = reader
    spec.write_text(SPEC)  # the same bytes, written again
    spec_reader.changed()
    spec_reader.request()
    assert not delivered.wait(OBSERVE)
    assert spec_reader.take() is None


def test_a_reload_of_unchanged_bytes_answers_from_the_last_parse(
        spec: Path, reader: tuple[SpecReader, threading.Event]) -> None:
    spec_reader, delivered = reader
    first = spec_reader.read_now(forced=True)
    spec_reader.request(forced=True)
    assert delivered.wait(15)
    again = spec_reader.take()
    assert first is not None and again is not None and again.forced
    assert again.desired is first.desired  # the same object: not parsed again


def test_a_reload_gives_up_on_a_writer_that_keeps_writing(spec: Path) -> None:
    delivered = threading.Event()
    spec_reader = SpecReader(str(spec), 1 << 20, delivered.set, settle=0.5)
    spec_reader.read_now()
    spec_reader.start()
    try:
        with open(spec, "a") as file:
            spec_reader.request(forced=True)
            deadline = time.monotonic() + 15
            while not delivered.is_set() and time.monotonic() < deadline:
                file.write("#")
                file.flush()
                time.sleep(0.05)
        intake = spec_reader.take()
        assert intake is not None and intake.forced
        assert intake.desired is None and intake.error is None  # nothing read
    finally:
        spec_reader.stop()


@contextlib.contextmanager
def _window(spec: Path, monkeypatch: pytest.MonkeyPatch,
            quiet: float) -> Iterator[tuple[SpecReader, threading.Event]]:
    """A started reader whose quiet window is `quiet` seconds, the spec in force read."""
    monkeypatch.setattr(macvland.reader, "QUIET", quiet)
    delivered = threading.Event()
    spec_reader = SpecReader(str(spec), 1 << 20, delivered.set, settle=60)
    spec_reader.read_now()
    spec_reader.start()
    try:
        yield spec_reader, delivered
    finally:
        spec_reader.stop()


def _rename_in(spec: Path, text: str, mode: int) -> None:
    """An atomic save: a closed file of `mode`, renamed over the spec."""
    staged = spec.with_name("macvland.yaml.new")
    staged.write_text(text)
    staged.chmod(mode)
    staged.rename(spec)


def test_the_quiet_window_is_spent_parsing_and_the_bytes_are_parsed_once(
        spec: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="macvland")
    # A window long enough to look inside.
    with _window(spec, monkeypatch, 2.0) as (spec_reader, delivered):
        caplog.clear()
        spec.write_text(SPEC.replace("mv5", "mv9"))
        spec_reader.changed()
        deadline = time.monotonic() + 15
        while not _parses(caplog) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert _parses(caplog) == 1
        assert not delivered.is_set()  # parsed, but the window is not over
        assert delivered.wait(15)
        intake = spec_reader.take()
        assert intake is not None and intake.desired is not None
        assert [s.name for s in intake.desired.interfaces][-1] == "mv9"
        assert _parses(caplog) == 1  # the read at the window's end found it parsed


def _parses(caplog: pytest.LogCaptureFixture) -> int:
    return sum(r.getMessage().startswith("spec parsed") for r in caplog.records)


def test_a_save_renamed_into_place_needs_no_quiet_window(
        spec: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A window of a minute: only the rename can explain a read.
    with _window(spec, monkeypatch, 60.0) as (spec_reader, delivered):
        _rename_in(spec, SPEC.replace("mv5", "mv9"), 0o600)
        spec_reader.changed()
        assert delivered.wait(15)
        intake = spec_reader.take()
        assert intake is not None and intake.desired is not None
        assert [s.name for s in intake.desired.interfaces][-1] == "mv9"
        # Rewritten in place, the same file waits out its window again.
        delivered.clear()
        spec.write_text(SPEC)
        spec_reader.changed()
        assert not delivered.wait(OBSERVE)


def test_a_renamed_save_that_is_not_yet_safe_waits_for_its_window(
        spec: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # An editor renames first and sets the mode after: the rename alone is not the save.
    with _window(spec, monkeypatch, 60.0) as (spec_reader, delivered):
        _rename_in(spec, SPEC.replace("mv5", "mv9"), 0o666)
        spec_reader.changed()
        assert not delivered.wait(OBSERVE)  # no rejection reported in the meantime
        assert spec_reader.take() is None
