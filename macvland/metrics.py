"""The daemon's metrics, as a Prometheus text file for node_exporter's textfile collector.

The daemon tells this module what happened (a spec accepted or rejected, a pass and its
result); the module keeps the numbers in a registry of its own and writes them after each
pass, atomically (a temporary file in the same directory, then a rename), so the collector
never reads half a file. The file is rewritten only when its text changed: the daemon never
wakes up just to write metrics, and an idle daemon leaves the file's mtime alone (the last
pass's timestamp inside says how fresh it is).
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import time
from collections.abc import Callable, Collection, Set

from prometheus_client import CollectorRegistry, Counter, Gauge, Info, generate_latest
from prometheus_client.metrics import disable_created_metrics

from macvland.apply import Outcome
from macvland.audit import action, corrects_drift
from macvland.model import DesiredState, Key
from macvland.plan import Condition
from macvland.reconcile import PassResult

log = logging.getLogger("macvland")

HELD = "held"
"""An interface whose corrections kept being undone, left alone for a while (see FightGuard)."""
CONDITIONS = (*(c.replace(" ", "_") for c in Condition), HELD)


class Metrics:
    def __init__(self, path: str) -> None:
        self.path = path
        # `_created` series would double the file and say nothing a counter reset does not.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = registry = CollectorRegistry(auto_describe=True)
        self.interfaces = Gauge(
            "macvland_interfaces", "Spec interfaces by condition after the last pass",
            ["condition"], registry=registry)
        for condition in CONDITIONS:
            self.interfaces.labels(condition).set(0)
        self.operations = Counter(
            "macvland_operations", "Operations applied to the kernel, by action and result",
            ["action", "result"], registry=registry)
        self.drift_corrections = Counter(
            "macvland_drift_corrections",
            "Operations that put back a change made out of band (the journal's drift-corrected "
            "records)", registry=registry)
        self.spec_accepted = Counter(
            "macvland_spec_accepted", "Spec versions that took force", registry=registry)
        self.spec_rejected = Counter(
            "macvland_spec_rejected", "Spec versions refused (invalid or unreadable)",
            registry=registry)
        self.spec_latest_rejected = Gauge(
            "macvland_spec_latest_rejected",
            "1 while the spec last read was refused, so an older one (or none) is in force",
            registry=registry)
        self.spec = Info("macvland_spec", "The spec in force", registry=registry)
        self.pass_duration = Gauge(
            "macvland_last_pass_duration_seconds", "How long the last pass took",
            registry=registry)
        self.pass_timestamp = Gauge(
            "macvland_last_pass_timestamp_seconds", "When the last pass ended (Unix time)",
            registry=registry)
        self.passes = Counter("macvland_passes", "Reconcile passes run", registry=registry)
        self.resyncs = Counter(
            "macvland_resyncs", "Passes that read everything from the kernel again "
            "(the periodic resync)", registry=registry)
        self.overflows = Counter(
            "macvland_netlink_overflows",
            "Times a netlink event socket overflowed (ENOBUFS) and its namespace was read again",
            registry=registry)
        self._overflows_seen = 0
        self._written: bytes | None = None
        self._write_error: str | None = None

    # --- what the daemon reports ---

    def accepted(self, desired: DesiredState, new: bool) -> None:
        """A valid spec read; `new` when it differs from the one in force (not a return to
        it after a rejected one)."""
        if new:
            self.spec_accepted.inc()
        self.spec_latest_rejected.set(0)
        self.spec.info({"sha256": desired.sha256})

    def rejected(self) -> None:
        self.spec_rejected.inc()
        self.spec_latest_rejected.set(1)

    def passed(self, result: PassResult, trigger: Callable[[Outcome], str],
               triggers: Set[str],
               held: Collection[Key], seconds: float, overflows: int) -> None:
        counts = dict.fromkeys(CONDITIONS, 0)
        for v in result.remaining.verdicts:
            counts[HELD if v.spec.key in held else v.condition.replace(" ", "_")] += 1
        for condition, count in counts.items():
            self.interfaces.labels(condition).set(count)
        for outcome in result.outcomes:
            kind = action(outcome)
            result_label = "ok" if outcome.ok else "skipped" if outcome.skipped else "failed"
            self.operations.labels(kind, result_label).inc()
            if outcome.ok and corrects_drift(kind, trigger(outcome)):
                self.drift_corrections.inc()
        self.passes.inc()
        if "resync" in triggers:
            self.resyncs.inc()
        self.overflows.inc(max(0, overflows - self._overflows_seen))
        self._overflows_seen = overflows
        self.pass_duration.set(seconds)
        self.pass_timestamp.set(time.time())

    # --- the file ---

    def write(self) -> None:
        """Write the file if its text changed; a failure is logged (once), never raised."""
        text = generate_latest(self.registry)
        if text == self._written:
            return
        directory = os.path.dirname(os.path.abspath(self.path))
        try:
            # A name node_exporter skips (it reads only *.prom), in the same file system.
            fd, temporary = tempfile.mkstemp(dir=directory, prefix=".macvland-metrics.")
            try:
                with os.fdopen(fd, "wb") as file:
                    file.write(text)
                    os.fchmod(file.fileno(), 0o644)
                os.replace(temporary, self.path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(temporary)
                raise
        except OSError as error:
            message = f"cannot write the metrics file {self.path}: {error.strerror or error}"
            if message != self._write_error:
                log.warning(message)
                self._write_error = message
            return
        self._written, self._write_error = text, None
