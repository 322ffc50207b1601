"""Where macvland has put interfaces, remembered across runs.

An interface that leaves the spec must be deleted even when the spec no longer names its
namespace, so the namespaces that hold (or are about to hold) owned interfaces are kept in a
small file. It lives under /run by default: namespaces do not outlive a reboot either.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable

from macvland.errors import MacvlandError

DEFAULT_STATE_DIR = "/run/macvland"


def state_directory(state_dir: str | None = None) -> str:
    """Where macvland keeps its state: the argument, else $MACVLAND_STATE_DIR, else /run."""
    return state_dir or os.environ.get("MACVLAND_STATE_DIR") or DEFAULT_STATE_DIR


class Ledger:
    def __init__(self, state_dir: str | None = None) -> None:
        self.directory = state_directory(state_dir)
        self.path = os.path.join(self.directory, "namespaces.json")

    def namespaces(self) -> frozenset[str]:
        try:
            with open(self.path, encoding="utf-8") as file:
                names = json.load(file)
        except (OSError, ValueError):
            # Missing, or damaged: that only costs the memory of far-away orphans.
            return frozenset()
        if not isinstance(names, list):
            return frozenset()
        return frozenset(n for n in names if isinstance(n, str))

    def record(self, namespaces: Iterable[str]) -> None:
        """Replace the remembered set, atomically (write a temporary file, then rename)."""
        names = sorted(set(namespaces))
        if names == sorted(self.namespaces()):
            return
        temporary = f"{self.path}.tmp"
        try:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            with open(temporary, "w", encoding="utf-8") as file:
                json.dump(names, file)
            os.replace(temporary, self.path)
        except OSError as error:
            raise MacvlandError(
                f"cannot record where interfaces were put in {self.path}: "
                f"{error.strerror or error} (MACVLAND_STATE_DIR chooses the directory)"
            ) from error
