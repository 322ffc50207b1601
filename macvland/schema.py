"""What is derived from the settings table for people and editors: the JSON Schema of a spec
and the README's reference table.

Both are checked in (etc/macvland/macvland.schema.json, README.md) and regenerated with
`make generated` (`python -m macvland.schema --write`); tests/test_settings.py fails when a
checked-in copy differs from what this module makes. `macvland schema` prints the schema.

A JSON Schema judges one document at a time, so what needs the whole spec (one definition per
name and namespace, a passthru interface alone on its parent, siblings agreeing on bc_cutoff,
MACs unique per parent) is the parser's alone; so are byte lengths of non-ASCII names and the
YAML spellings the parser refuses or takes as written (tests/test_schema.py lists them).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from macvland.model import Kind, Mode
from macvland.settings import SETTINGS, SetOf, Setting, Update, jsonable

SCHEMA_PATH = "etc/macvland/macvland.schema.json"
README_PATH = "README.md"
TABLE_START = "<!-- settings table: generated from macvland/settings.py by `make generated` -->"
TABLE_END = "<!-- end of settings table -->"

_MODE_DEFAULT = Mode.BRIDGE


def json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a spec document."""
    interface = {
        "type": "object",
        "description": "One macvlan interface, as it should be.",
        "properties": {s.key: _property(s) for s in SETTINGS},
        "required": [s.key for s in SETTINGS if s.required],
        "additionalProperties": False,
        "allOf": [rule for s in SETTINGS for rule in (*_mode_rules(s), *_kind_rules(s))],
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "macvland spec",
        "description": "The macvlan interfaces macvland keeps in place "
                       "(/etc/macvland/macvland.yaml).",
        "type": "object",
        "properties": {
            "version": {"const": 1, "description": "The spec format; 1 is the only one."},
            "interfaces": {"type": "array", "items": {"$ref": "#/$defs/interface"},
                           "description": "Every interface macvland manages; [] means none "
                                          "(and deletes every interface it owns)."},
        },
        "required": ["version", "interfaces"],
        "additionalProperties": False,
        "$defs": {"interface": interface},
    }


def _property(setting: Setting) -> dict[str, Any]:
    schema = {**setting.type.schema(), "description": _plain(setting.doc)}
    if setting.default is not None and setting.default != frozenset():
        schema["default"] = jsonable(setting.default)
    return schema


def _mode_is_not(modes: Sequence[Mode]) -> dict[str, Any]:
    """A condition on an interface: its mode (absent: bridge) is none of `modes`."""
    condition: dict[str, Any] = {"properties": {"mode": {"not": {"enum": [str(m) for m in modes]}}}}
    if _MODE_DEFAULT in modes:
        condition["required"] = ["mode"]  # an absent mode is bridge, which is allowed
    return condition


def _mode_rules(setting: Setting) -> list[dict[str, Any]]:
    rules = []
    if set(setting.modes) != set(Mode):
        allowed = [m for m in Mode if m in setting.modes]
        # An empty list asks for nothing, so it is fine in any mode.
        forbidden = ({"properties": {setting.key: {"maxItems": 0}}}
                     if isinstance(setting.type, SetOf) else {"not": {"required": [setting.key]}})
        rules.append({"if": _mode_is_not(allowed), "then": forbidden})
    for value, mode in (setting.item_modes or {}).items():
        rules.append({"if": _mode_is_not([mode]), "then": {
            "properties": {setting.key: {"not": {"contains": {"const": str(value)}}}}}})
    return rules


def _kind_rules(setting: Setting) -> list[dict[str, Any]]:
    if set(setting.kinds) == set(Kind):
        return []
    allowed = [str(k) for k in Kind if k in setting.kinds]
    condition: dict[str, Any] = {"properties": {"kind": {"not": {"enum": allowed}}}}
    if Kind.MACVLAN in setting.kinds:
        condition["required"] = ["kind"]
    return [{"if": condition, "then": {"not": {"required": [setting.key]}}}]


def _plain(doc: str) -> str:
    return doc.replace("`", "")


def schema_text() -> str:
    return json.dumps(json_schema(), indent=2) + "\n"


# --- the README's reference table ---------------------------------------------------------


def reference_table() -> str:
    """The README's table of settings, markers included."""
    rows = [TABLE_START,
            "| key | value | default | applies to | a new value is applied | meaning |",
            "| --- | --- | --- | --- | --- | --- |"]
    for s in SETTINGS:
        default = "required" if s.required else (
            s.absent_means if s.default is None else f"`{_yaml(s.default)}`")
        rows.append(f"| `{s.key}` | {s.type.summary()} | {default} | {_where(s)} | "
                    f"{_how(s)} | {s.doc} |")
    rows.append(TABLE_END)
    return "\n".join(rows)


def _yaml(value: object) -> str:
    plain = jsonable(value)
    return "[]" if plain == [] else str(plain)


def _where(setting: Setting) -> str:
    if set(setting.kinds) != set(Kind):
        return "kind " + " ".join(str(k) for k in Kind if k in setting.kinds)
    if setting.item_modes:
        return "; ".join(f"`{v}`: {m}" for v, m in setting.item_modes.items())
    if set(setting.modes) == set(Mode):
        return "every mode"
    return " ".join(f"{m}" for m in Mode if m in setting.modes) if len(setting.modes) == 1 \
        else "every mode but " + ", ".join(str(m) for m in Mode if m not in setting.modes)


def _how(setting: Setting) -> str:
    if setting.applied:
        return setting.applied
    return "another interface" if setting.update is Update.IDENTITY else str(setting.update)


def readme_with_table(readme: str) -> str:
    """`readme` with its settings table replaced by the current one."""
    start, end = readme.index(TABLE_START), readme.index(TABLE_END) + len(TABLE_END)
    return readme[:start] + reference_table() + readme[end:]


def write(root: str = ".") -> None:
    """Regenerate the checked-in copies under `root`."""
    with open(os.path.join(root, SCHEMA_PATH), "w", encoding="utf-8") as file:
        file.write(schema_text())
    path = os.path.join(root, README_PATH)
    with open(path, encoding="utf-8") as file:
        readme = file.read()
    with open(path, "w", encoding="utf-8") as file:
        file.write(readme_with_table(readme))


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit("usage: python -m macvland.schema --write")
    write()
