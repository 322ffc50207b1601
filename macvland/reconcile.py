"""One reconcile pass: observe, plan, apply, then observe again to verify.

Shared by `macvland apply` and the daemon. Verifying against the kernel's own account (a dump,
or in the daemon the link tables its events keep), not against what was sent, is what catches
the kernel silently ignoring a request.
"""

from __future__ import annotations

from collections.abc import Callable, Collection

from macvland.apply import Outcome, apply
from macvland.frozen import frozen
from macvland.ledger import Ledger
from macvland.model import DesiredState, Key, ObservedState
from macvland.netns import Namespaces
from macvland.observe import observe
from macvland.ops import Create, Move, Operation
from macvland.plan import Condition, Plan, PlanMemo, plan

TYPE_CHECKING = False  # importing typing costs 5 ms of start-up; only mypy needs it
if TYPE_CHECKING:
    from macvland.observe import DeviceEvents, LinkCache


@frozen
class PassResult:
    plan: Plan
    """What the pass set out to do (held interfaces' operations included, but not run)."""
    outcomes: tuple[Outcome, ...]
    remaining: Plan
    """The plan computed from the kernel after applying: empty when everything converged."""
    observed: ObservedState
    """The kernel as last read, after applying."""

    @property
    def converged(self) -> bool:
        return not self.remaining.operations and all(
            v.condition is Condition.IN_SYNC for v in self.remaining.verdicts)


def observe_for(desired: DesiredState, namespaces: Namespaces, ledger: Ledger,
                cache: LinkCache | None = None,
                devices: DeviceEvents | None = None) -> ObservedState:
    """Observe every namespace the spec names or that may still hold owned interfaces, the
    addresses and routes where the spec manages some, and /dev's taps if it has macvtaps."""
    return observe(namespaces, desired.namespaces() | ledger.namespaces(), cache,
                   desired.layered_namespaces(), desired.has_macvtaps(), devices)


def reconcile(desired: DesiredState, namespaces: Namespaces, ledger: Ledger,
              report: Callable[[Outcome], None] | None = None,
              hold: Collection[Key] = frozenset(),
              stop: Callable[[], bool] = lambda: False,
              cache: LinkCache | None = None, memo: PlanMemo | None = None,
              devices: DeviceEvents | None = None) -> PassResult:
    """One pass; operations on the interfaces in `hold` are planned but not run.

    `cache` and `memo` carry link tables and decisions from pass to pass (see LinkCache and
    PlanMemo); neither changes the result. `devices` are the daemon's /dev events, read
    before each read of /dev (see observe).
    """
    observed = observe_for(desired, namespaces, ledger, cache, devices)
    first = plan(desired, observed, memo)
    runnable = tuple(op for op in first.operations if not _touches(op, hold))
    if not runnable:
        _remember(ledger, observed, first)
        return PassResult(first, (), first, observed)
    # Written ahead, so that a crash mid-apply still leaves a trail to every namespace used.
    ledger.record(ledger.namespaces() | _targets(first))
    outcomes = tuple(apply(runnable, namespaces, report, stop))
    after = observe_for(desired, namespaces, ledger, cache, devices)
    remaining = plan(desired, after, memo)
    _remember(ledger, after, remaining)
    return PassResult(first, outcomes, remaining, after)


def _touches(op: Operation, keys: Collection[Key]) -> bool:
    return (op.netns, op.name) in keys or (isinstance(op, Move) and (op.target, op.name) in keys)


def _targets(p: Plan) -> set[str]:
    targets = set()
    for op in p.operations:
        if isinstance(op, Create) and op.netns is not None:
            targets.add(op.netns)
        elif isinstance(op, Move) and op.target is not None:
            targets.add(op.target)
    return targets


def _remember(ledger: Ledger, observed: ObservedState, p: Plan) -> None:
    holding = {link.netns for link in observed.owned() if link.netns is not None}
    # What could not be read this time may still hold owned interfaces.
    unseen = {ns for ns in ledger.namespaces() if ns in observed.unreadable}
    ledger.record(holding | unseen | _targets(p))
