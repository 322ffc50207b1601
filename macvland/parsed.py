"""The last good parse of a spec, kept in the state directory for the next one-shot command.

A parse depends on the spec's bytes, the names of its files and macvland's own parser, and
on nothing else (no lookups of users, namespaces or links). So, like Python's .pyc files, the
result is kept with a key made of exactly those, and a command that reads the same bytes with
the same code takes the result instead of parsing again: `macvland plan` of an unchanged spec
of 1,000 interfaces loads it in about 4 ms instead of parsing in 25 ms. Only valid specs are
kept; a spec with problems is parsed every time, so its report is always fresh.

The file is a pickle, which runs code when loaded, so it is loaded only from a file owned by
this user and writable by nobody else, in a directory nobody else can write to (the state
directory is root's own, /run/macvland by default); anything else is ignored and the spec
parsed. A file that fails to load is ignored the same way. Nothing here is ever an error.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pickle
import stat

from macvland.model import DesiredState, SpecSource

FILE = "parsed.pickle"
_MAX_BYTES = 64 << 20
"""Larger is not ours: 10,000 interfaces with every setting pickle to about 10 MB."""

def load(source: SpecSource, state_dir: str) -> DesiredState | None:
    """The kept parse of exactly these bytes, by this code; None when there is none."""
    path = os.path.join(state_dir, FILE)
    try:
        if not _private(os.stat(state_dir)):
            return None
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        if not _private(info) or not stat.S_ISREG(info.st_mode) or info.st_size > _MAX_BYTES:
            return None
        with os.fdopen(fd, "rb", closefd=False) as file:
            key, desired = pickle.load(file)
    except Exception:  # any damage at all means "parse it"
        return None
    finally:
        os.close(fd)
    if key != _key(source) or not isinstance(desired, DesiredState):
        return None
    return desired


def store(source: SpecSource, desired: DesiredState, state_dir: str) -> None:
    """Keep `desired` as the parse of `source`; quietly nothing where that cannot be done."""
    path = os.path.join(state_dir, FILE)
    staged = f"{path}.{os.getpid()}"
    try:
        # Made here when missing: on a host where the daemon has never run, /run/macvland
        # does not exist, and without it no one-shot command would ever find a kept parse.
        os.makedirs(state_dir, mode=0o700, exist_ok=True)
        if not _private(os.stat(state_dir)):
            return
        fd = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except OSError:
        return
    try:
        with os.fdopen(fd, "wb") as file:
            pickle.dump((_key(source), desired), file, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(staged, path)
    except (OSError, pickle.PickleError):
        with contextlib.suppress(OSError):
            os.unlink(staged)


def _private(info: os.stat_result) -> bool:
    return info.st_uid == os.geteuid() and not info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


def _key(source: SpecSource) -> str:
    """The spec's place, its files' names and bytes, and the parser's code, in one hash."""
    digest = hashlib.sha256(source.sha256.encode())
    digest.update(repr((source.path, [name for name, _ in source.files])).encode())
    digest.update(_code_identity().encode())
    return digest.hexdigest()


def _code_identity() -> str:
    """Every module of the package by file, size and modification time: what Python itself
    compares before it trusts a .pyc (the parser is several of them; all are cheap to stat)."""
    here = os.path.dirname(os.path.abspath(__file__))
    parts = []
    for name in sorted(os.listdir(here)):
        if name.endswith(".py"):
            info = os.stat(os.path.join(here, name))
            parts.append(f"{name}:{info.st_size}:{info.st_mtime_ns}")
    return f"{here};" + ";".join(parts)
