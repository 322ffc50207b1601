"""The character devices of macvtaps: /dev/tapN, read (observe) and given their owner, group
and mode (apply).

The kernel makes /dev/tapN (N: the macvtap's ifindex, root:root 0600) in devtmpfs, shortly
after the link, from a kernel thread. There is one devtmpfs for every namespace, but each
namespace numbers its own links, so two macvtaps in two namespaces can both be number N: the
first gets /dev/tapN, the second no node at all. A node is therefore a link's only when sysfs
says so: /sys/dev/char/MAJOR:MINOR names the device's link (.../net/NAME/macvtap/tapN), in
whatever namespace it lives. (Two macvtaps of the same name and number in two namespaces
cannot be told apart this way; the planner avoids making such pairs by choosing the ifindex
of every macvtap it creates.)
"""

from __future__ import annotations

import grp
import os
import pwd
import stat
import time
from collections.abc import Callable

from macvland.errors import MacvlandError
from macvland.model import TapAccess, TapNode

DEV = "/dev"
SYS_CHAR = "/sys/dev/char"


def tap_nodes(dev: str = DEV) -> dict[int, TapNode]:
    """Every /dev/tapN, by N."""
    try:
        names = os.listdir(dev)
    except OSError:
        return {}
    nodes = {}
    for name in names:
        if name.startswith("tap") and name[3:].isdigit():
            node = tap_node(int(name[3:]), dev)
            if node is not None:
                nodes[node.number] = node
    return nodes


def tap_node(number: int, dev: str = DEV) -> TapNode | None:
    try:
        st = os.lstat(os.path.join(dev, f"tap{number}"))
    except OSError:
        return None
    if not stat.S_ISCHR(st.st_mode):
        return None
    return TapNode(number, st.st_rdev, st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode),
                   _name(pwd.getpwuid, st.st_uid), _name(grp.getgrgid, st.st_gid),
                   _link_of(st.st_rdev))


def _name(lookup: Callable[[int], object], number: int) -> str | None:
    try:
        entry = lookup(number)
    except KeyError:
        return None
    name = entry[0]  # type: ignore[index]
    return str(name)


def _link_of(device: int) -> str | None:
    """The name of the macvtap whose character device `device` is, or None."""
    try:
        target = os.readlink(f"{SYS_CHAR}/{os.major(device)}:{os.minor(device)}")
    except OSError:
        return None
    parts = target.split("/")  # ../../devices/virtual/net/NAME/macvtap/tapN
    return parts[-3] if len(parts) >= 3 and parts[-2] == "macvtap" else None


def set_access(number: int, link_name: str, access: TapAccess, wait: float = 5.0,
               clock: Callable[[], float] = time.monotonic,
               sleep: Callable[[float], None] = time.sleep, dev: str = DEV) -> None:
    """Give /dev/tapN the owner, group and mode of `access`, once it is `link_name`'s.

    Waits up to `wait` seconds for the kernel to make the node of a macvtap just created.
    MacvlandError when it does not appear, belongs to another link, or a name is unknown.
    """
    uid = _id(access.owner, pwd.getpwnam, "user")
    gid = _id(access.group, grp.getgrnam, "group")
    path = os.path.join(dev, f"tap{number}")
    deadline = clock() + wait
    while True:
        node = tap_node(number, dev)
        if node is not None and node.link_name == link_name:
            break
        if node is not None and node.link_name is not None:
            raise MacvlandError(f"{path} is the device of {node.link_name}, not of {link_name} "
                                "(a macvtap of the same ifindex in another namespace)")
        if clock() >= deadline:
            raise MacvlandError(f"{path} did not appear within {wait:g} s")
        sleep(0.01)
    # Changed through a descriptor of the node just checked, so a node replaced in between
    # is never the one changed.
    fd = os.open(path, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        if os.fstat(fd).st_rdev != node.device:
            raise MacvlandError(f"{path} was replaced while it was being changed")
        handle = f"/proc/self/fd/{fd}"
        if uid != -1 or gid != -1:
            os.chown(handle, uid, gid)
        if access.mode is not None:
            os.chmod(handle, access.mode)
    finally:
        os.close(fd)


def _id(value: str | int | None, lookup: Callable[[str], object], what: str) -> int:
    """A numeric id for a name or number; -1 (leave alone) for None."""
    if value is None:
        return -1
    if isinstance(value, int):
        return value
    try:
        entry = lookup(value)
    except KeyError:
        raise MacvlandError(f"no {what} named {value!r} on this host") from None
    number: int = entry[2]  # type: ignore[index]
    return number
