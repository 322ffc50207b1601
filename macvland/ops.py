"""Operations: the steps of a plan, each small, frozen and able to describe itself.

A plan runs in phases, each operation's `phase`: deletes (0) free names and MACs, moves (1),
in-place changes and adoptions (2), creates (3) so a passthru interface finds its parent
free; then the layers above the link: addresses (4), and routes (5), which may need an
address to reach their gateway.

An operation names its interface by (netns, name) and, where the planner saw it, by ifindex:
apply addresses the kernel by ifindex so that a link replaced behind our back is never hit by
mistake. An ifindex of None means "the link this same plan just moved there", which apply looks
up by name and checks before touching it.
"""

from __future__ import annotations

from macvland.frozen import frozen
from macvland.model import (
    IPInterface,
    MacvlanSpec,
    Netns,
    Route,
    TapAccess,
    interface_label,
    netns_label,
)
from macvland.settings import SETTINGS, Update, show
from macvland.settings import jsonable as _jsonable

TYPE_CHECKING = False  # importing typing costs 5 ms of start-up; only mypy needs it
if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "AddAddress", "AddRoute", "AddSourceMac", "Adopt", "Change", "ChangeRoute", "ChangeTap",
    "Create",
    "Delete", "FieldChange", "LayerOperation", "Move", "Operation", "RemoveAddress",
    "RemoveRoute", "RemoveSourceMac", "show",
]


@frozen
class FieldChange:
    field: str
    old: object
    new: object

    def __str__(self) -> str:
        return f"{self.field} {show(self.old)} -> {show(self.new)}"

    def to_dict(self) -> dict[str, Any]:
        return {"field": self.field, "old": _jsonable(self.old), "new": _jsonable(self.new)}


@frozen
class Create:
    spec: MacvlanSpec
    parent_ifindex: int
    recreate: str | None = None
    """Why an existing interface is being replaced, when it is."""
    ifindex: int | None = None
    """The ifindex to make it with (a macvtap's, chosen so its /dev/tapN is free); None: the
    kernel's choice."""

    kind = "create"
    phase = 3

    @property
    def netns(self) -> Netns:
        return self.spec.netns

    @property
    def name(self) -> str:
        return self.spec.name

    def describe(self) -> str:
        s = self.spec
        settings = [f"{s.kind} {s.mode} on {s.parent}"]
        settings += [part for setting in _CREATE_LINE if (part := setting.in_create(s))]
        verb = f"recreate ({self.recreate})" if self.recreate else "create"
        return f"{interface_label(s.name, s.netns)}: {verb}: {', '.join(settings)}"

    def to_dict(self) -> dict[str, Any]:
        s = self.spec
        return {"op": "create", "netns": s.netns, "name": s.name, "recreate": self.recreate,
                "ifindex": self.ifindex,
                **{setting.key: _jsonable(setting.wanted(s)) for setting in SETTINGS}}


_CREATE_LINE = tuple(s for s in SETTINGS if s.update not in (Update.IDENTITY, Update.LAYER)
                     and s.key not in ("parent", "mode", "kind"))
"""The settings a create line lists after its head ("macvlan bridge on eth1"); addresses and
routes follow as operations of their own."""


@frozen
class Delete:
    netns: Netns
    name: str
    ifindex: int
    parent: str | None
    reason: str
    recreate: bool = False

    kind = "delete"
    phase = 0

    def describe(self) -> str:
        how = "delete to recreate" if self.recreate else "delete"
        return f"{interface_label(self.name, self.netns)}: {how} ({self.reason})"

    def to_dict(self) -> dict[str, Any]:
        return {"op": "delete", "netns": self.netns, "name": self.name, "ifindex": self.ifindex,
                "reason": self.reason, "recreate": self.recreate}


@frozen
class Move:
    """Move a link to another namespace; the kernel keeps its settings but takes it down."""

    netns: Netns
    """Where the link is now."""
    name: str
    ifindex: int
    target: Netns

    kind = "move"
    phase = 1

    def describe(self) -> str:
        return (f"{self.name}: netns {netns_label(self.netns)} -> {netns_label(self.target)}"
                " (in place)")

    def to_dict(self) -> dict[str, Any]:
        return {"op": "move", "netns": self.netns, "name": self.name, "ifindex": self.ifindex,
                "target": self.target}


@frozen
class Adopt:
    """Mark an existing macvlan that the spec names as macvland's own."""

    netns: Netns
    name: str
    ifindex: int
    parent: str
    link_kind: str = "macvlan"

    kind = "adopt"
    phase = 2

    def describe(self) -> str:
        return (f"{interface_label(self.name, self.netns)}: adopt existing {self.link_kind} "
                f"on {self.parent}")

    def to_dict(self) -> dict[str, Any]:
        return {"op": "adopt", "netns": self.netns, "name": self.name, "ifindex": self.ifindex}


@frozen
class Change:
    """Change link and macvlan settings in place, in one request."""

    netns: Netns
    name: str
    ifindex: int | None
    changes: tuple[FieldChange, ...]
    link_kind: str = "macvlan"
    """The link's IFLA_INFO_KIND, which a change of its macvlan settings must name."""

    kind = "change"
    phase = 2

    def new(self, field: str) -> object:
        for change in self.changes:
            if change.field == field:
                return change.new
        raise KeyError(field)

    def fields(self) -> frozenset[str]:
        return frozenset(c.field for c in self.changes)

    def describe(self) -> str:
        changes = ", ".join(map(str, self.changes))
        return f"{interface_label(self.name, self.netns)}: {changes} (in place)"

    def to_dict(self) -> dict[str, Any]:
        return {"op": "change", "netns": self.netns, "name": self.name, "ifindex": self.ifindex,
                "changes": [c.to_dict() for c in self.changes]}


@frozen
class _Item:
    """One item added to, or removed from, a set the interface carries (a source MAC, an
    address, a route): the shape of every such operation, named by `noun` and `sign`."""

    netns: Netns
    name: str
    ifindex: int | None

    kind = ""
    phase = 0
    noun = ""
    """How the item is named in its plan line."""
    field = ""
    """Its key in to_dict, which is also the operation's attribute that holds it."""
    sign = ""
    suffix = ""

    def describe(self) -> str:
        return (f"{interface_label(self.name, self.netns)}: {self.noun} {self.sign} "
                f"{getattr(self, self.field)}{self.suffix}")

    def to_dict(self) -> dict[str, Any]:
        return {"op": self.kind, "netns": self.netns, "name": self.name,
                "ifindex": self.ifindex, self.field: self.item_dict()}

    def item_dict(self) -> object:
        return str(getattr(self, self.field))


@frozen
class _SourceMac(_Item):
    mac: str
    link_kind: str = "macvlan"

    phase = 2
    noun = "source MAC"
    field = "mac"
    suffix = " (in place)"


@frozen
class AddSourceMac(_SourceMac):
    kind = "add-source-mac"
    sign = "+"


@frozen
class RemoveSourceMac(_SourceMac):
    kind = "remove-source-mac"
    sign = "-"


@frozen
class _Address(_Item):
    address: IPInterface

    phase = 4
    noun = field = "address"


@frozen
class AddAddress(_Address):
    kind = "add-address"
    sign = "+"


@frozen
class RemoveAddress(_Address):
    """Remove a static address the spec does not list (never one the kernel made)."""

    kind = "remove-address"
    sign = "-"


def _route_dict(route: Route) -> dict[str, Any]:
    return {"to": str(route.to), "via": None if route.via is None else str(route.via),
            "metric": route.metric, "table": route.table}


@frozen
class _Route(_Item):
    route: Route

    phase = 5
    noun = field = "route"

    def item_dict(self) -> object:
        return _route_dict(self.route)


@frozen
class AddRoute(_Route):
    kind = "add-route"
    sign = "+"


@frozen
class RemoveRoute(_Route):
    """Remove one of macvland's routes (only ever one that carries its protocol number)."""

    kind = "remove-route"
    sign = "-"


@frozen
class ChangeRoute:
    """Give one of macvland's routes a new gateway, in one request (no moment without it)."""

    netns: Netns
    name: str
    ifindex: int | None
    old: Route
    new: Route

    kind = "change-route"
    phase = 5

    def describe(self) -> str:
        via = [show(r.via) for r in (self.old, self.new)]
        return (f"{interface_label(self.name, self.netns)}: route {self.new.to}: "
                f"via {via[0]} -> {via[1]} (in place)")

    def to_dict(self) -> dict[str, Any]:
        return {"op": self.kind, "netns": self.netns, "name": self.name,
                "ifindex": self.ifindex, "old": _route_dict(self.old),
                "new": _route_dict(self.new)}


@frozen
class ChangeTap:
    """Give a macvtap's /dev/tapN the owner, group and mode the spec asks for (chown, chmod),
    waiting for the kernel to make the node of a macvtap just created."""

    netns: Netns
    name: str
    ifindex: int
    """N of /dev/tapN: the macvtap's ifindex, chosen by the plan for one it creates."""
    access: TapAccess
    changes: tuple[FieldChange, ...]

    kind = "change-tap"
    phase = 4

    def describe(self) -> str:
        changes = ", ".join(map(str, self.changes))
        return f"{interface_label(self.name, self.netns)}: /dev/tap{self.ifindex}: {changes}"

    def to_dict(self) -> dict[str, Any]:
        return {"op": self.kind, "netns": self.netns, "name": self.name,
                "ifindex": self.ifindex, "tap": self.access.to_dict(),
                "changes": [c.to_dict() for c in self.changes]}


LayerOperation = (AddAddress | RemoveAddress | AddRoute | RemoveRoute | ChangeRoute
                  | ChangeTap)
"""Operations on what an interface carries, not on the interface itself: one failing does not
stop the others on the same interface."""

Operation = (Create | Delete | Move | Adopt | Change | AddSourceMac | RemoveSourceMac
             | LayerOperation)
