"""The audit trail: one log record per change, with structured fields.

Records go through the `macvland` logger with their fields in `extra["fields"]`; the handler
decides where they end up (stderr as readable lines here).
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from macvland.apply import Outcome
from macvland.errors import KernelError, SpecError
from macvland.model import DesiredState, netns_label
from macvland.ops import Change, Create, Delete, FieldChange, Move, show
from macvland.plan import Verdict

log = logging.getLogger("macvland")


def _emit(level: int, message: str, **fields: object) -> None:
    clean = {k: v for k, v in fields.items() if v is not None and v != ""}
    log.log(level, message, extra={"fields": clean})


def _changes(outcome: Outcome) -> tuple[FieldChange, ...]:
    op = outcome.operation
    if isinstance(op, Change):
        return op.changes
    if isinstance(op, Move):
        return (FieldChange("netns", netns_label(op.netns), netns_label(op.target)),)
    return ()


def action(outcome: Outcome) -> str:
    op = outcome.operation
    if isinstance(op, Delete | Create) and op.recreate:
        return "recreate"
    return op.kind


def operation(outcome: Outcome, trigger: str, spec_sha256: str) -> None:
    op = outcome.operation
    changes = _changes(outcome)
    fields: dict[str, Any] = {
        "MACVLAND_INTERFACE": op.name,
        "MACVLAND_NETNS": netns_label(op.netns),
        "MACVLAND_PARENT": getattr(op, "parent", None)
        or (op.spec.parent if isinstance(op, Create) else None),
        "MACVLAND_ACTION": action(outcome),
        "MACVLAND_FIELD": ",".join(c.field for c in changes),
        "MACVLAND_OLD": ",".join(show(c.old) for c in changes),
        "MACVLAND_NEW": ",".join(show(c.new) for c in changes),
        "MACVLAND_TRIGGER": trigger,
        "MACVLAND_SPEC_SHA256": spec_sha256,
    }
    if outcome.ok:
        _emit(logging.INFO, op.describe(), **fields)
    elif outcome.skipped:
        _emit(logging.WARNING, f"{op.describe()}: skipped, an earlier step failed", **fields)
    else:
        error = outcome.error
        if isinstance(error, KernelError):
            fields["ERRNO"] = error.errno
            fields["MACVLAND_KERNEL_MESSAGE"] = error.kernel_message
        _emit(logging.ERROR, f"{op.describe()}: failed: {error}", **fields)


def spec_accepted(desired: DesiredState, trigger: str) -> None:
    _emit(logging.INFO, f"spec accepted: {desired.source}, {len(desired.interfaces)} "
          f"interface(s)", MACVLAND_ACTION="spec-accepted", MACVLAND_TRIGGER=trigger,
          MACVLAND_SPEC_SHA256=desired.sha256)


def spec_rejected(error: SpecError, source: str, kept: str | None) -> None:
    keeping = f"keeping spec {kept[:12]}" if kept else "no spec in force yet"
    _emit(logging.ERROR, f"spec rejected: {source} ({keeping}):\n{error}",
          MACVLAND_ACTION="spec-rejected", MACVLAND_SPEC_SHA256=error.sha256)


def verdict(v: Verdict, spec_sha256: str) -> None:
    """A conflict, error or pending state, logged when it first appears."""
    level = logging.INFO if v.condition == "pending" else logging.WARNING
    _emit(level, f"{v.spec.name}{'' if v.spec.netns is None else ' in netns ' + v.spec.netns}:"
          f" {v.condition}: {v.detail}", MACVLAND_INTERFACE=v.spec.name,
          MACVLAND_NETNS=netns_label(v.spec.netns), MACVLAND_PARENT=v.spec.parent,
          MACVLAND_ACTION=str(v.condition), MACVLAND_SPEC_SHA256=spec_sha256)


def fight(name: str, netns: str | None, fields: str, seen: str, hold_seconds: float) -> None:
    _emit(logging.WARNING,
          f"{name} in netns {netns_label(netns)}: something keeps undoing macvland's changes "
          f"({fields}: kept seeing {seen}); not correcting it for {hold_seconds:.0f} s",
          MACVLAND_INTERFACE=name, MACVLAND_NETNS=netns_label(netns), MACVLAND_ACTION="fight",
          MACVLAND_FIELD=fields, MACVLAND_OLD=seen)


def info(message: str, **fields: object) -> None:
    _emit(logging.INFO, message, **fields)


class LineFormatter(logging.Formatter):
    """`LEVEL message [FIELD=value ...]`: readable, and still grep-able by field."""

    def format(self, record: logging.LogRecord) -> str:
        fields = getattr(record, "fields", {})
        tail = " ".join(f"{k}={v}" for k, v in fields.items())
        text = f"{record.levelname.lower()}: {record.getMessage()}"
        return f"{text} [{tail}]" if tail else text


def to_stderr(level: int = logging.INFO) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(LineFormatter())
    log.addHandler(handler)
    log.setLevel(level)
    log.propagate = False
