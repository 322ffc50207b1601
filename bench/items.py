"""What the benchmark creates: its layouts, its interfaces (as the spec and as `ip` say them),
and the checks on what the kernel shows."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from macvland.model import OWNER_ALIAS, Key
from macvland.rtnl import RawLink

MODES = ("bridge", "vepa", "private", "source")
TARGET_NAMESPACES = 10

Check = Callable[[RawLink | None], bool]


class BenchError(Exception):
    """The benchmark could not go on (the daemon died, the kernel never converged...)."""


@dataclass(frozen=True, slots=True)
class Layout:
    """Where the interfaces go: their parents (all in the home namespace) and namespaces."""

    name: str
    parents: tuple[str, ...]
    spread: bool
    """Over TARGET_NAMESPACES namespaces (created by macvland through their fds), or all in
    the home namespace beside their parent."""
    about: str


LAYOUTS = {layout.name: layout for layout in (
    Layout("one", ("eth1",), False, "all on one parent, in the home namespace"),
    Layout("spread", ("eth1", "eth2", "eth3", "eth4"), True, "4 parents, 10 namespaces"),
    Layout("wide", tuple(f"eth{k}" for k in range(1, 101)), True,
           "100 parents, 10 namespaces"),
)}


@dataclass(frozen=True, slots=True)
class Item:
    """One macvlan of the benchmark, as the spec and as `ip` say it."""

    name: str
    parent: str
    mode: str
    netns: str | None = None
    source_macs: tuple[str, ...] = ()
    mtu: int | None = None

    @property
    def key(self) -> Key:
        return (self.netns, self.name)

    def yaml(self) -> str:
        fields = [f"name: {self.name}", f"parent: {self.parent}", f"mode: {self.mode}"]
        if self.netns:
            fields.append(f"netns: {self.netns}")
        if self.source_macs:
            fields.append("source_macs: [" + ", ".join(f'"{m}"' for m in self.source_macs) + "]")
        if self.mtu:
            fields.append(f"mtu: {self.mtu}")
        return "  - {" + ", ".join(fields) + "}"

    def netdev(self) -> str:
        """The systemd .netdev file that creates it (the "one" layout only: a .netdev cannot
        name another namespace)."""
        lines = ["[NetDev]", f"Name={self.name}", "Kind=macvlan", "[MACVLAN]",
                 f"Mode={self.mode}"]
        if self.source_macs:
            lines.append(f"SourceMACAddress={' '.join(self.source_macs)}")
        if self.mtu:
            lines.insert(3, f"MTUBytes={self.mtu}")
        return "\n".join(lines) + "\n"

    def ip_add(self) -> str:
        """The `ip -batch` line (run in the home namespace) that creates it."""
        where = f" netns {self.netns}" if self.netns else ""
        mtu = f" mtu {self.mtu}" if self.mtu else ""
        macs = f" macaddr set {' '.join(self.source_macs)}" if self.source_macs else ""
        return (f"link add {self.name} link {self.parent}{where}{mtu} up "
                f"type macvlan mode {self.mode}{macs}")


def make_items(n: int, layout: Layout, targets: Sequence[str]) -> list[Item]:
    """N interfaces taking the modes in turn (source ones with two source MACs); in a spread
    layout, consecutive ones go to consecutive namespaces, ten at a time to each parent."""
    items = []
    for i in range(n):
        mode = MODES[i % len(MODES)]
        macs = tuple(f"02:b0:{i >> 8 & 255:02x}:{i & 255:02x}:00:{k:02x}" for k in (1, 2)) \
            if mode == "source" else ()
        parent = layout.parents[i // TARGET_NAMESPACES % len(layout.parents)]
        netns = targets[i % TARGET_NAMESPACES] if layout.spread else None
        items.append(Item(f"mv{i}", parent, mode, netns, macs))
    return items


def spec_text(items: Iterable[Item]) -> str:
    lines = [item.yaml() for item in items]
    if not lines:
        return "version: 1\ninterfaces: []\n"
    return "version: 1\ninterfaces:\n" + "\n".join(lines) + "\n"


# --- checks on what the kernel shows --------------------------------------------------------

def as_specified(item: Item, parent_ifindex: int, up: bool = True) -> Check:
    """The kernel shows `item` as specified; with `up` False, in either admin state
    (networkd leaves a netdev that no .network file matches down)."""
    macs = frozenset(item.source_macs)

    def check(link: RawLink | None) -> bool:
        return (link is not None and link.kind == "macvlan" and link.value("mode") == item.mode
                and (link.up or not up) and link.link == parent_ifindex
                and link.value("source_macs") == macs
                and (item.mtu is None or link.value("mtu") == item.mtu))
    return check


def marked(check: Check) -> Check:
    return lambda link: check(link) and link is not None and link.alias == OWNER_ALIAS


def replaced(check: Check, old_ifindex: int) -> Check:
    return lambda link: check(link) and link is not None and link.ifindex != old_ifindex


def gone(link: RawLink | None) -> bool:
    return link is None
