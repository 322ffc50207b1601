"""Execute a plan over netlink: the only module that changes the kernel.

Each operation is one or a few requests on the socket of the namespace its link lives in. A
failed operation is reported with the kernel's error and the rest of its interface's operations
are skipped (they would act on a link in an unknown state); every other interface goes on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from macvland.errors import KernelError, MacvlandError
from macvland.model import OWNER_ALIAS, Mode, Netns, State
from macvland.netns import NamespaceMissing, Namespaces
from macvland.ops import (
    AddSourceMac,
    Adopt,
    Change,
    Create,
    Delete,
    Move,
    Operation,
    RemoveSourceMac,
)
from macvland.rtnl import (
    IFLA_ADDRESS,
    IFLA_IFALIAS,
    IFLA_IFNAME,
    IFLA_LINK,
    IFLA_MACVLAN_BC_CUTOFF,
    IFLA_MACVLAN_BC_QUEUE_LEN,
    IFLA_MACVLAN_MACADDR,
    IFLA_MACVLAN_MACADDR_DATA,
    IFLA_MACVLAN_MACADDR_MODE,
    IFLA_MACVLAN_MODE,
    IFLA_MTU,
    IFLA_NET_NS_FD,
    MACADDR_ADD,
    MACADDR_DEL,
    MACADDR_SET,
    MACVLAN_MODE_BITS,
    NLM_F_CREATE,
    NLM_F_EXCL,
    RTM_DELLINK,
    RTM_NEWLINK,
    ifinfo,
    mac,
    macvlan_flags,
    macvlan_info,
    nest,
    s32,
    string,
    u32,
)

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Outcome:
    operation: Operation
    error: MacvlandError | None = None
    skipped: bool = False
    """Not attempted, because an earlier operation on the same interface failed."""

    @property
    def ok(self) -> bool:
        return self.error is None and not self.skipped


def apply(operations: tuple[Operation, ...], namespaces: Namespaces,
          report: Callable[[Outcome], None] | None = None,
          stop: Callable[[], bool] = lambda: False) -> list[Outcome]:
    """Run `operations` in order, calling `report` after each.

    `stop` is asked before each operation: a daemon told to exit finishes the one in flight and
    leaves the rest for its next start.
    """
    outcomes = []
    failed: set[tuple[Netns, str]] = set()
    for op in operations:
        if stop():
            break
        key = (op.netns, op.name)
        if key in failed:
            outcome = Outcome(op, skipped=True)
        else:
            try:
                _run(op, namespaces)
                outcome = Outcome(op)
            except (MacvlandError, NamespaceMissing, OSError) as error:
                failed.add(key)
                if isinstance(op, Move):
                    failed.add((op.target, op.name))
                outcome = Outcome(op, error if isinstance(error, MacvlandError)
                                  else KernelError(getattr(error, "errno", 0) or 0, str(error)))
        outcomes.append(outcome)
        if report:
            report(outcome)
    return outcomes


def _run(op: Operation, namespaces: Namespaces) -> None:
    sock = namespaces.socket(op.netns)
    match op:
        case Create(spec=spec, parent_ifindex=parent_ifindex):
            data = [u32(IFLA_MACVLAN_MODE, MACVLAN_MODE_BITS[spec.mode]),
                    macvlan_flags(frozenset(spec.flags))]
            if spec.source_macs:
                data += [u32(IFLA_MACVLAN_MACADDR_MODE, MACADDR_SET),
                         nest(IFLA_MACVLAN_MACADDR_DATA,
                              *(mac(IFLA_MACVLAN_MACADDR, m) for m in sorted(spec.source_macs)))]
            data += _broadcast(spec.bcqueuelen, spec.bc_cutoff)
            body = [string(IFLA_IFNAME, spec.name), u32(IFLA_LINK, parent_ifindex)]
            if spec.netns is not None:
                # Created directly in its namespace: its name never meets ours.
                body.append(u32(IFLA_NET_NS_FD, namespaces.fd(spec.netns)))
            if spec.mac:
                body.append(mac(IFLA_ADDRESS, spec.mac))
            if spec.mtu:
                body.append(u32(IFLA_MTU, spec.mtu))
            body.append(macvlan_info(*data))
            home = namespaces.socket(None)
            home.request(RTM_NEWLINK, ifinfo(0, spec.state is State.UP) + b"".join(body),
                         NLM_F_CREATE | NLM_F_EXCL)
            # The kernel ignores IFLA_IFALIAS when it creates a link, so mark it right after;
            # a crash in between leaves a macvlan that the next pass adopts.
            sock.request(RTM_NEWLINK, ifinfo() + string(IFLA_IFNAME, spec.name)
                         + string(IFLA_IFALIAS, OWNER_ALIAS))
        case Delete(ifindex=ifindex):
            sock.request(RTM_DELLINK, ifinfo(ifindex))
        case Move(ifindex=ifindex, target=target):
            sock.request(RTM_NEWLINK, ifinfo(ifindex) + u32(IFLA_NET_NS_FD, namespaces.fd(target)))
        case Adopt(ifindex=ifindex):
            sock.request(RTM_NEWLINK, ifinfo(ifindex) + string(IFLA_IFALIAS, OWNER_ALIAS))
        case Change():
            _change(op, _resolve(op.netns, op.name, op.ifindex, namespaces), namespaces)
        case AddSourceMac() | RemoveSourceMac():
            index = _resolve(op.netns, op.name, op.ifindex, namespaces)
            how = MACADDR_ADD if isinstance(op, AddSourceMac) else MACADDR_DEL
            sock.request(RTM_NEWLINK, ifinfo(index) + macvlan_info(
                u32(IFLA_MACVLAN_MACADDR_MODE, how), mac(IFLA_MACVLAN_MACADDR, op.mac)))


def _broadcast(bcqueuelen: int | None, bc_cutoff: int | None) -> list[bytes]:
    data = []
    if bcqueuelen is not None:
        data.append(u32(IFLA_MACVLAN_BC_QUEUE_LEN, bcqueuelen))
    if bc_cutoff is not None:
        data.append(s32(IFLA_MACVLAN_BC_CUTOFF, bc_cutoff))
    return data


def _change(op: Change, index: int, namespaces: Namespaces) -> None:
    data = []
    if (mode := _new(op, "mode", Mode)) is not None:
        data.append(u32(IFLA_MACVLAN_MODE, MACVLAN_MODE_BITS[mode]))
    if (flags := _new(op, "flags", frozenset)) is not None:
        data.append(macvlan_flags(flags))
    data += _broadcast(_new(op, "bcqueuelen", int), _new(op, "bc_cutoff", int))
    body = []
    if (address := _new(op, "mac", str)) is not None:
        body.append(mac(IFLA_ADDRESS, address))
    if (mtu := _new(op, "mtu", int)) is not None:
        body.append(u32(IFLA_MTU, mtu))
    if data:
        body.append(macvlan_info(*data))
    state = _new(op, "state", State)
    up = None if state is None else state is State.UP
    namespaces.socket(op.netns).request(RTM_NEWLINK, ifinfo(index, up) + b"".join(body))


def _new(op: Change, field: str, kind: type[T]) -> T | None:
    """The new value of `field`, or None when this change leaves it alone."""
    if field not in op.fields():
        return None
    value = op.new(field)
    assert isinstance(value, kind), (field, value)
    return value


def _resolve(netns: Netns, name: str, ifindex: int | None, namespaces: Namespaces) -> int:
    """The ifindex to address; for a link this plan just moved, looked up and checked."""
    if ifindex is not None:
        return ifindex
    link = namespaces.socket(netns).link(name)
    if link.kind != "macvlan" or link.alias != OWNER_ALIAS:
        raise MacvlandError(f"{name} was replaced by another interface after it was moved")
    return link.ifindex

