"""The audit trail: one log record per change, with structured fields.

Records go through the `macvland` logger with their fields in `extra["fields"]`; the handler
decides where they end up: journald natively (systemd.JournalHandler), or stderr as readable
lines (LineFormatter here).
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from macvland.apply import Outcome
from macvland.errors import KernelError, SpecError
from macvland.model import DesiredState, interface_label, netns_label
from macvland.ops import (
    AddSourceMac,
    Change,
    ChangeTap,
    Create,
    Delete,
    FieldChange,
    Move,
    RemoveSourceMac,
    show,
)
from macvland.plan import Verdict

log = logging.getLogger("macvland")

MESSAGE_IDS = {
    "create": "161d0c7d5dce4e768663a8c5d352091d",
    "delete": "925dd5719efc46838613b4b021af93b6",
    "recreate": "af0824404a664e868d8b3f9ec37b29b2",
    "change": "c2924e3458d644e0a988402d8a4bf74e",
    "move": "bc9ac18c8a1d41d388a5382f7ff56cd0",
    "adopt": "2a9cc1371fbc431cbc4449d1c1801788",
    "drift-corrected": "153a19b7cd1e47e492ad9998112ace7b",
    "conflict": "2cbe961e1e74443c9031cd4a802e7547",
    "pending": "aca88eb9bb26474288e40af7de06e40e",
    "failure": "0fccf8eb1d1e485d92f1d4cdc0bf9ab4",
    "fight": "f993eec1110c4785ae05d3391aed7c32",
    "spec-accepted": "b5a4b99d2aa14756b4b787d41e8ae01b",
    "spec-rejected": "507ab4b37b0c4bc7bd75bece4a5d0a41",
}
"""A stable journald MESSAGE_ID per kind of event (`journalctl MESSAGE_ID=...`)."""

# What a record of a correction says it was for (loop.Daemon._why): the interface was in sync
# with an unchanged spec, and the kernel drifted from it.
_DRIFT_TRIGGERS = frozenset({"drift", "resync"})
_CORRECTIONS = frozenset({"create", "recreate", "change", "move", "add-source-mac",
                          "remove-source-mac", "add-address", "remove-address", "add-route",
                          "remove-route", "change-route", "change-tap"})


def _emit(level: int, event: str, message: str, **fields: object) -> None:
    clean = {k: v for k, v in fields.items() if v is not None and v != ""}
    log.log(level, message, extra={"fields": {"MESSAGE_ID": MESSAGE_IDS[event], **clean}})


def _changes(outcome: Outcome) -> tuple[FieldChange, ...]:
    op = outcome.operation
    if isinstance(op, Change | ChangeTap):
        return op.changes
    if isinstance(op, Move):
        return (FieldChange("netns", netns_label(op.netns), netns_label(op.target)),)
    if isinstance(op, AddSourceMac):
        return (FieldChange("source_macs", None, f"+{op.mac}"),)
    if isinstance(op, RemoveSourceMac):
        return (FieldChange("source_macs", op.mac, f"-{op.mac}"),)
    return ()


def action(outcome: Outcome) -> str:
    op = outcome.operation
    if isinstance(op, Delete | Create) and op.recreate:
        return "recreate"
    return op.kind


def corrects_drift(action: str, trigger: str) -> bool:
    """Whether an applied operation put back a change made out of band."""
    return trigger in _DRIFT_TRIGGERS and action in _CORRECTIONS


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
        kind = str(fields["MACVLAND_ACTION"])
        event = "drift-corrected" if corrects_drift(kind, trigger) else kind
        _emit(logging.INFO, event if event in MESSAGE_IDS else "change", op.describe(),
              **fields)
    elif outcome.skipped:
        _emit(logging.WARNING, "failure", f"{op.describe()}: skipped, an earlier step failed",
              **fields)
    else:
        error = outcome.error
        if isinstance(error, KernelError):
            fields["ERRNO"] = error.errno
            fields["MACVLAND_KERNEL_MESSAGE"] = error.kernel_message
        _emit(logging.ERROR, "failure", f"{op.describe()}: failed: {error}", **fields)


def spec_accepted(desired: DesiredState, trigger: str) -> None:
    count = len(desired.interfaces)
    _emit(logging.INFO, "spec-accepted",
          f"spec accepted: {desired.source}, {count} interface(s)",
          MACVLAND_ACTION="spec-accepted", MACVLAND_TRIGGER=trigger,
          MACVLAND_SPEC_SHA256=desired.sha256)


def spec_rejected(error: SpecError, source: str, kept: str | None) -> None:
    keeping = f"keeping spec {kept[:12]}" if kept else "no spec in force yet"
    # The message holds the first problems (errors.PROBLEM_LIMIT) and says how many more.
    _emit(logging.ERROR, "spec-rejected", f"spec rejected: {source} ({keeping}):\n{error}",
          MACVLAND_ACTION="spec-rejected", MACVLAND_SPEC_SHA256=error.sha256,
          MACVLAND_PROBLEMS=len(error.problems) + error.omitted)


def verdict(v: Verdict, spec_sha256: str) -> None:
    """A conflict, error or pending state, logged when it first appears."""
    pending = v.condition == "pending"
    event = "pending" if pending else "conflict" if v.condition == "conflict" else "failure"
    _emit(logging.INFO if pending else logging.WARNING, event,
          f"{interface_label(v.spec.name, v.spec.netns)}: {v.condition}: {v.detail}",
          MACVLAND_INTERFACE=v.spec.name,
          MACVLAND_NETNS=netns_label(v.spec.netns), MACVLAND_PARENT=v.spec.parent,
          MACVLAND_ACTION=str(v.condition), MACVLAND_SPEC_SHA256=spec_sha256)


def fight(name: str, netns: str | None, fields: str, seen: str, hold_seconds: float) -> None:
    _emit(logging.WARNING, "fight",
          f"{interface_label(name, netns)}: something keeps undoing macvland's changes "
          f"({fields}: kept seeing {seen}); not correcting it for {hold_seconds:.0f} s",
          MACVLAND_INTERFACE=name, MACVLAND_NETNS=netns_label(netns), MACVLAND_ACTION="fight",
          MACVLAND_FIELD=fields, MACVLAND_OLD=seen)


def info(message: str) -> None:
    log.info(message)


def warning(message: str) -> None:
    log.warning(message)


def spec_parsed(interfaces: int, seconds: float) -> None:
    """Debug-level: how long parsing the spec took (the daemon logs each parse)."""
    if log.isEnabledFor(logging.DEBUG):
        log.debug(f"spec parsed: {interfaces} interface(s) in {seconds * 1000:.1f} ms",
                  extra={"fields": {"MACVLAND_PARSE_MS": round(seconds * 1000, 1)}})


def pass_done(triggers: list[str], operations: int, writes: int, seconds: float) -> None:
    """Debug-level accounting of one pass (for `run --verbose` and the benchmark)."""
    if log.isEnabledFor(logging.DEBUG):
        log.debug(f"pass ({', '.join(triggers)}): {operations} operation(s), {writes} netlink "
                  f"write(s), {seconds * 1000:.1f} ms", extra={"fields": {
                      "MACVLAND_OPERATIONS": operations, "MACVLAND_WRITES": writes,
                      "MACVLAND_PASS_MS": round(seconds * 1000, 1)}})


class LineFormatter(logging.Formatter):
    """`LEVEL message [FIELD=value ...]`: readable, and still grep-able by field."""

    def format(self, record: logging.LogRecord) -> str:
        fields = getattr(record, "fields", {})
        tail = " ".join(f"{k}={v}" for k, v in fields.items())
        text = f"{record.levelname.lower()}: {record.getMessage()}"
        return f"{text} [{tail}]" if tail else text


def to_handler(handler: logging.Handler | None, level: int = logging.INFO) -> None:
    """Route the audit trail to `handler` (None: stderr, as readable lines)."""
    if handler is None:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(LineFormatter())
    log.addHandler(handler)
    log.setLevel(level)
    log.propagate = False
