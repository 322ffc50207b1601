"""The settings table is the one source: its derived copies are current and it matches the
model it describes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from macvland import schema
from macvland.cli import main
from macvland.frozen import fields
from macvland.model import MacvlanSpec
from macvland.settings import SETTINGS

ROOT = Path(__file__).resolve().parent.parent


def test_the_checked_in_schema_is_what_the_table_makes() -> None:
    checked_in = (ROOT / schema.SCHEMA_PATH).read_text()
    assert checked_in == schema.schema_text(), "run `make generated`"


def test_the_readme_table_is_what_the_table_makes() -> None:
    readme = (ROOT / schema.README_PATH).read_text()
    assert readme == schema.readme_with_table(readme), "run `make generated`"
    assert readme.count(schema.TABLE_START) == 1


def test_macvland_schema_prints_the_schema(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema"]) == 0
    assert json.loads(capsys.readouterr().out) == schema.json_schema()


def test_every_spec_field_is_a_setting_and_every_setting_a_spec_field() -> None:
    spec_fields = [f.name for f in fields(MacvlanSpec)
                   if f.name != "origin"]
    assert sorted(spec_fields) == sorted(s.key for s in SETTINGS)


def test_keys_are_unique() -> None:
    keys = [s.key for s in SETTINGS]
    assert len(keys) == len(set(keys))
