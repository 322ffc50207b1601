"""The ledger of namespaces holding owned interfaces: a damaged file forgets, never crashes."""

from __future__ import annotations

from pathlib import Path

import pytest

from macvland.ledger import Ledger


@pytest.mark.parametrize(("content", "names"), [
    pytest.param('["blue", "red"]', {"blue", "red"}, id="list"),
    pytest.param('["blue", 5, null]', {"blue"}, id="stray-values"),
    pytest.param("5", set(), id="a-number"),
    pytest.param('{"blue": 1}', set(), id="an-object"),
    pytest.param('["blue"', set(), id="truncated"),
    pytest.param(None, set(), id="missing"),
])
def test_what_the_ledger_remembers(tmp_path: Path, content: str | None, names: set[str]) -> None:
    if content is not None:
        (tmp_path / "namespaces.json").write_text(content)
    assert Ledger(str(tmp_path)).namespaces() == names


def test_recorded_namespaces_are_read_back(tmp_path: Path) -> None:
    ledger = Ledger(str(tmp_path))
    ledger.record(["red", "blue", "red"])
    assert Ledger(str(tmp_path)).namespaces() == {"blue", "red"}
