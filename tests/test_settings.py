"""The settings table is the one source: its derived copies are current and it matches the
model it describes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from macvland import schema
from macvland.cli import main
from macvland.frozen import fields
from macvland.model import Link, MacvlanSpec
from macvland.settings import SETTINGS, Setting

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


_LINK_FIELDS = {f.name for f in fields(Link)}


@pytest.mark.parametrize("setting", [s for s in SETTINGS if s.observed or s.key in _LINK_FIELDS],
                         ids=lambda s: s.key)
def test_a_settings_accessors_read_what_its_methods_read(setting: Setting) -> None:
    """The planner's loops use the plain functions; they must agree with the methods (the
    layers, which a Link does not hold, are planned on their own)."""
    spec = MacvlanSpec("mv0", "eth1", mac="02:00:00:00:00:09", mtu=1400)
    link = Link(None, "mv0", 7, "macvlan", False, 1500, "02:00:00:00:00:08")
    wanted, read = setting.accessors()
    assert wanted(spec) == setting.wanted(spec)
    assert read(link) == setting.read(link)
