"""The vocabulary shared by every layer: what is wanted and what the kernel has.

Everything here is immutable data with no I/O, so the parser, the planner and the tests can
build and compare states freely.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator, Mapping
from enum import StrEnum

from macvland.frozen import field, frozen

TYPE_CHECKING = False  # importing typing costs 5 ms of start-up; only mypy needs it
if TYPE_CHECKING:
    from macvland.errors import SpecProblem

# A namespace as the spec names it: None is the namespace macvland runs in ("home"), a bare
# name is an entry under /run/netns, and an absolute path is any netns file.
Netns = str | None

Key = tuple[Netns, str]
"""An interface's identity: (netns, name)."""

OWNER_ALIAS = "managed-by=macvland"
"""The interface alias that marks an interface as macvland's own.

The alias lives on the net_device, so it survives restarts of macvland and namespace moves.
"""

DEFAULT_BC_CUTOFF = 1
"""The kernel's port-wide broadcast cutoff when none was set (it omits the attribute then)."""

DEFAULT_BC_QUEUE_LEN = 1000
"""What the kernel records as an interface's requested queue length when none is given."""


IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface
"""An address with its prefix length, as `ip address` shows it: 192.0.2.10/24."""
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

MAIN_TABLE = 254
"""The routing table a route goes to when it names none."""


def default_metric(version: int) -> int:
    """The metric the kernel gives a route that names none: 0 for IPv4, 1024 for IPv6."""
    return 0 if version == 4 else 1024


@frozen
class Route:
    """A unicast route through one interface, wanted or observed.

    The kernel tells routes of one table apart by destination and metric (`key`); `via` is what
    a route with that key says. The metric and table are always filled in (see default_metric
    and MAIN_TABLE), so that a wanted route compares equal to the kernel's.
    """

    to: IPNetwork
    via: IPAddress | None = None
    metric: int = 0
    table: int = MAIN_TABLE

    @property
    def key(self) -> tuple[int, int, IPNetwork, int]:
        return (self.to.version, self.table, self.to, self.metric)

    def __str__(self) -> str:
        # `default` alone would not say which family; with a gateway it does.
        words = ["default" if self.to.prefixlen == 0 and self.via else str(self.to)]
        if self.via is not None:
            words.append(f"via {self.via}")
        if self.metric != default_metric(self.to.version):
            words.append(f"metric {self.metric}")
        if self.table != MAIN_TABLE:
            words.append(f"table {self.table}")
        return " ".join(words)


@frozen
class Addresses:
    """The addresses on one interface, split by who may remove them."""

    static: frozenset[IPInterface] = frozenset()
    """Set by someone (macvland, an operator, a tool): removed when the spec does not list
    them."""
    kernel: frozenset[IPInterface] = frozenset()
    """Made by the kernel itself (IPv6 link-local, SLAAC, temporary): never removed."""

    def __contains__(self, address: object) -> bool:
        return address in self.static or address in self.kernel


class Kind(StrEnum):
    """The two faces of the macvlan driver: a network interface, or one with a character
    device (/dev/tapN) that a VM reads and writes frames through."""

    MACVLAN = "macvlan"
    MACVTAP = "macvtap"


DRIVER_KINDS = frozenset(kind.value for kind in Kind)
"""IFLA_INFO_KIND of the links macvland makes, adopts and deletes."""


class Mode(StrEnum):
    BRIDGE = "bridge"
    VEPA = "vepa"
    PRIVATE = "private"
    PASSTHRU = "passthru"
    SOURCE = "source"


class Flag(StrEnum):
    NOPROMISC = "nopromisc"
    NODST = "nodst"


FLAG_MODE: Mapping[Flag, Mode] = {Flag.NOPROMISC: Mode.PASSTHRU, Flag.NODST: Mode.SOURCE}
"""The only mode in which each flag means something."""


class State(StrEnum):
    UP = "up"
    DOWN = "down"
    ABSENT = "absent"


@frozen
class TapAccess:
    """Who may open a macvtap's character device: its owner and group (a name, or a numeric
    id) and its permission bits. None leaves that one as it is (the kernel makes the device
    root:root 0600)."""

    owner: str | int | None = None
    group: str | int | None = None
    mode: int | None = None

    def __str__(self) -> str:
        parts = [f"{key} {value}" for key, value in (("owner", self.owner),
                                                     ("group", self.group)) if value is not None]
        if self.mode is not None:
            parts.append(f"mode {self.mode:04o}")
        return " ".join(parts) or "as the kernel makes it"

    def to_dict(self) -> dict[str, object]:
        return {"owner": self.owner, "group": self.group,
                "mode": None if self.mode is None else f"{self.mode:04o}"}


@frozen
class TapNode:
    """A /dev/tapN device node as it is, and the macvtap it belongs to."""

    number: int
    """N: the ifindex of the macvtap that made it."""
    device: int
    """Its device number (st_rdev)."""
    uid: int
    gid: int
    mode: int
    """Its permission bits."""
    owner: str | None
    """The name of `uid`, when it has one."""
    group: str | None
    link_name: str | None
    """The name of the macvtap whose device this is, as sysfs says (None: unknown)."""


def netns_label(netns: Netns) -> str:
    """How a namespace is named in messages."""
    return "host" if netns is None else netns


def interface_label(name: str, netns: Netns) -> str:
    """How an interface is named in messages: `mv0`, or `mv0 in netns web`."""
    return name if netns is None else f"{name} in netns {netns}"


@frozen
class MacvlanSpec:
    """One interface as the operator wants it.

    Optional settings that are None are left as the kernel has them.
    """

    name: str
    parent: str
    mode: Mode = Mode.BRIDGE
    netns: Netns = None
    kind: Kind = Kind.MACVLAN
    flags: frozenset[Flag] = frozenset()
    source_macs: frozenset[str] = frozenset()
    mac: str | None = None
    mtu: int | None = None
    state: State = State.UP
    bcqueuelen: int | None = None
    bc_cutoff: int | None = None
    numtxqueues: int | None = None
    numrxqueues: int | None = None
    tap: TapAccess | None = None
    """A macvtap's /dev/tapN owner, group and mode; None leaves them alone."""
    addresses: frozenset[IPInterface] | None = None
    """The exact set of static addresses; None leaves addresses alone."""
    routes: frozenset[Route] | None = None
    """The exact set of macvland's routes through it; None leaves routes alone."""
    origin: str = field(default="", compare=False)
    """Where the spec defines it ("file:line"), for messages."""

    @property
    def key(self) -> Key:
        return (self.netns, self.name)


@frozen
class SpecSource:
    """A spec's bytes as read, before parsing: enough to tell whether it changed."""

    path: str
    files: tuple[tuple[str, bytes], ...]
    sha256: str
    problems: tuple[SpecProblem, ...] = ()
    """Fragments that could not be read (reported with the parse's problems)."""


@frozen
class DesiredState:
    interfaces: tuple[MacvlanSpec, ...] = ()
    source: str = ""
    """The file or directory the spec came from."""
    sha256: str = ""
    """Hash of the spec's bytes, to tie every change to the spec it serves."""

    def namespaces(self) -> frozenset[Netns]:
        return frozenset(spec.netns for spec in self.interfaces)

    def has_macvtaps(self) -> bool:
        """Whether any interface is a macvtap: only then are device nodes read."""
        return any(spec.kind is Kind.MACVTAP for spec in self.interfaces)

    def layered_namespaces(self) -> frozenset[Netns]:
        """The namespaces where some interface's addresses or routes are managed: only there
        are addresses and routes read."""
        return frozenset(spec.netns for spec in self.interfaces
                         if spec.addresses is not None or spec.routes is not None)


@frozen
class Link:
    """One network interface as the kernel reports it.

    The macvlan fields are None (or empty) when the link is not a macvlan.
    """

    netns: Netns
    name: str
    ifindex: int
    kind: str | None
    up: bool
    mtu: int
    mac: str | None
    alias: str | None = None
    parent: str | None = None
    """Name of the lower device when it lives in macvland's own namespace."""
    lower: str | None = None
    """The lower device as the kernel names it, for display: "eth1", or "if7@nsid 3"."""
    shown_as: str = ""
    """How `ip link` shows it: "mv0@eth1", or across namespaces "mv0@if3 link-netnsid 0"."""
    mode: Mode | None = None
    flags: frozenset[Flag] = frozenset()
    source_macs: frozenset[str] = frozenset()
    bcqueuelen: int | None = None
    bc_cutoff: int | None = None
    """The parent-wide cutoff, with the kernel's default filled in when it omits it."""
    numtxqueues: int | None = None
    numrxqueues: int | None = None

    @property
    def key(self) -> Key:
        return (self.netns, self.name)

    @property
    def is_macvlan(self) -> bool:
        """A macvlan or a macvtap: the same driver, and the same rules of ownership."""
        return self.kind in DRIVER_KINDS

    @property
    def owned(self) -> bool:
        return self.is_macvlan and self.alias == OWNER_ALIAS


@frozen
class ObservedState:
    """What the kernel has in every namespace that was looked at.

    `links` holds the namespaces that could be read; `missing` the named ones that do not
    exist (their interfaces are pending, not failed); `unreadable` those that exist but could
    not be entered or dumped.
    """

    links: Mapping[Netns, Mapping[str, Link]] = field(default_factory=dict)
    """Per namespace, its links by name."""
    missing: frozenset[Netns] = frozenset()
    unreadable: Mapping[Netns, str] = field(default_factory=dict)
    """Namespaces that exist but could not be read, with the reason."""
    addresses: Mapping[Netns, Mapping[int, Addresses]] = field(default_factory=dict)
    """Per namespace where addresses were read, each interface's by ifindex."""
    routes: Mapping[Netns, Mapping[int, frozenset[Route]]] = field(default_factory=dict)
    """Per namespace where routes were read, macvland's own (its protocol number) by ifindex
    of the interface they go through."""
    taps: Mapping[int, TapNode] | None = None
    """Every /dev/tapN by N, when the spec has macvtaps (None: not looked at). One devtmpfs
    serves every namespace, while each namespace numbers its own links: a node is a link's
    only if sysfs says it is that link's device."""

    def get(self, netns: Netns, name: str) -> Link | None:
        return self.links.get(netns, {}).get(name)

    def all_links(self) -> Iterator[Link]:
        for links in self.links.values():
            yield from links.values()

    def owned(self) -> Iterator[Link]:
        return (link for link in self.all_links() if link.owned)

    def home_names(self) -> frozenset[str]:
        return frozenset(self.links.get(None, {}))
