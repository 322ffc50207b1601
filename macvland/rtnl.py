"""Just enough rtnetlink for macvlan links and the addresses and routes on them: build
requests, decode dumps, talk on a socket.

The link's settings are not spelled here: each one's attribute is declared in
macvland.settings (with nla's vocabulary), and the link decoder and `link_attrs` (the
attributes of a create or a change) are made from those declarations. What is rtnl's own is
the frame of a link message: its ifindex and admin state (ifinfomsg), name, alias, lower
device, link group and kind.

Why not pyroute2's message classes here: pyroute2 0.9 does not know the macvlan broadcast
attributes (IFLA_MACVLAN_BC_QUEUE_LEN, IFLA_MACVLAN_BC_CUTOFF) nor the nodst flag, and its
generic decoder is what dominates an observe pass (most of 0.3 s at 1,000 links, against
~11 ms for decoding only the attributes the planner reads: `python -m bench.decode`). The
encoders and the decoder are pure functions over bytes; `RtnlSocket` is the only part that
does I/O.
"""

from __future__ import annotations

import errno
import functools
import ipaddress
import socket
import struct
from collections.abc import Callable, Iterable, Iterator

from macvland.errors import KernelError
from macvland.frozen import frozen
from macvland.model import DRIVER_KINDS
from macvland.nla import (
    NLA,
    NLA_TYPE_MASK,
    S32,
    STRING,
    U32,
    Attr,
    attr,
    nest,
    spans,
    string,
    u32,
)
from macvland.settings import LINK_SETTINGS

TYPE_CHECKING = False  # importing typing costs 5 ms of start-up; only mypy needs it
if TYPE_CHECKING:
    from typing import Any

# <linux/netlink.h>
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLM_F_DUMP_INTR = 0x10
NLM_F_DUMP = 0x300
NLM_F_EXCL = 0x200
NLM_F_CREATE = 0x400
NLM_F_ACK_TLVS = 0x200
NLM_F_CAPPED = 0x100
NLMSGERR_ATTR_MSG = 1
SOL_NETLINK = 270
NETLINK_CAP_ACK = 10
NETLINK_EXT_ACK = 11

# <linux/rtnetlink.h>, <linux/if_link.h>, <linux/net_namespace.h> (the attributes of link
# settings are in macvland.nla, beside the formats they are declared with)
RTM_NEWLINK = 16
RTM_DELLINK = 17
RTM_GETLINK = 18
RTM_GETNSID = 90
IFF_UP = 0x1
RTEXT_FILTER_SKIP_STATS = 1 << 3
IFLA_IFNAME = 3
IFLA_LINK = 5
IFLA_LINKINFO = 18
IFLA_IFALIAS = 20
IFLA_NET_NS_FD = 28
IFLA_EXT_MASK = 29
IFLA_LINK_NETNSID = 37
IFLA_GROUP = 27
IFLA_INFO_KIND = 1
IFLA_INFO_DATA = 2
NETNSA_NSID = 1
NETNSA_FD = 3

# <linux/if_addr.h>, <linux/rtnetlink.h>: addresses and routes
RTM_NEWADDR = 20
RTM_DELADDR = 21
RTM_GETADDR = 22
RTM_NEWROUTE = 24
RTM_DELROUTE = 25
RTM_GETROUTE = 26
NLM_F_REPLACE = 0x100
NETLINK_GET_STRICT_CHK = 12
AF_UNSPEC = 0
AF_INET = 2
AF_INET6 = 10
IFA_ADDRESS = 1
IFA_LOCAL = 2
IFA_FLAGS = 8
IFA_PROTO = 11
IFA_F_TEMPORARY = 0x01
IFA_F_PERMANENT = 0x80
IFAPROT_UNSPEC = 0
RTA_DST = 1
RTA_OIF = 4
RTA_GATEWAY = 5
RTA_PRIORITY = 6
RTA_TABLE = 15
RT_TABLE_COMPAT = 252
RT_TABLE_MAIN = 254
RT_SCOPE_UNIVERSE = 0
RT_SCOPE_LINK = 253
RTN_UNICAST = 1

RTPROT_MACVLAND = 77
"""The routing protocol number that marks macvland's routes ('M', 77: in neither the kernel's
RTPROT_* list nor iproute2's rt_protos). etc/iproute2/rt_protos.d/macvland.conf names it."""

_PIPELINE = 128
"""Requests in flight at once on one socket."""

_HEADER = struct.Struct("=IHHII")  # nlmsghdr: len, type, flags, seq, pid
_IFINFO = struct.Struct("=BxHiII")  # ifinfomsg: family, type, index, flags, change
_IFADDR = struct.Struct("=BBBBI")  # ifaddrmsg: family, prefixlen, flags, scope, index
_RTMSG = struct.Struct("=BBBBBBBBI")  # rtmsg: family, dst_len, src_len, tos, table,
#                                       protocol, scope, type, flags
_U32 = struct.Struct("=I")
_S32 = struct.Struct("=i")
_NLA = NLA


# --- encoding ------------------------------------------------------------------------------

def macvlan_info(*data: bytes, kind: str = "macvlan") -> bytes:
    """IFLA_LINKINFO naming `kind` (macvlan or macvtap: the kernel refuses a change that names
    another kind than the link's), with the given IFLA_MACVLAN_* attributes."""
    info = [string(IFLA_INFO_KIND, kind)]
    if data:
        info.append(nest(IFLA_INFO_DATA, *data))
    return nest(IFLA_LINKINFO, *info)


def ifinfo(index: int = 0, up: bool | None = None) -> bytes:
    """An ifinfomsg; `up` None leaves the admin state alone."""
    if up is None:
        return _IFINFO.pack(0, 0, index, 0, 0)
    return _IFINFO.pack(0, 0, index, IFF_UP if up else 0, IFF_UP)


IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def _family(version: int) -> int:
    return AF_INET if version == 4 else AF_INET6


def address_body(ifindex: int, address: IPInterface) -> bytes:
    """The body of an RTM_NEWADDR or RTM_DELADDR for `address` (with its prefix) on a link."""
    packed = address.ip.packed
    body = _IFADDR.pack(_family(address.version), address.network.prefixlen, 0, 0, ifindex)
    if address.version == 4:
        # IFA_LOCAL is the address; IFA_ADDRESS the same one unless it is a point-to-point peer.
        return body + attr(IFA_LOCAL, packed) + attr(IFA_ADDRESS, packed)
    return body + attr(IFA_ADDRESS, packed)


def route_body(oif: int, to: IPNetwork, via: IPAddress | None, metric: int, table: int,
               protocol: int = RTPROT_MACVLAND) -> bytes:
    """The body of an RTM_NEWROUTE or RTM_DELROUTE: a unicast route through `oif`."""
    scope = RT_SCOPE_UNIVERSE if via is not None or to.version == 6 else RT_SCOPE_LINK
    body = [_RTMSG.pack(_family(to.version), to.prefixlen, 0, 0,
                        table if table < 256 else RT_TABLE_COMPAT, protocol, scope,
                        RTN_UNICAST, 0),
            u32(RTA_TABLE, table), u32(RTA_OIF, oif), u32(RTA_PRIORITY, metric)]
    if to.prefixlen:
        body.append(attr(RTA_DST, to.network_address.packed))
    if via is not None:
        body.append(attr(RTA_GATEWAY, via.packed))
    return b"".join(body)


def message(kind: int, flags: int, seq: int, body: bytes) -> bytes:
    return _HEADER.pack(_HEADER.size + len(body), kind, flags, seq, 0) + body


# --- decoding ------------------------------------------------------------------------------

def attrs(data: bytes | memoryview, offset: int = 0) -> Iterator[tuple[int, memoryview]]:
    view = memoryview(data)
    for number, start, stop in spans(view, offset, len(view)):
        yield number, view[start:stop]


def _pick(view: memoryview, offset: int, wanted: frozenset[int]) -> dict[int, memoryview]:
    """The attributes of the given types; the others are skipped without being sliced."""
    return {number: view[start:stop] for number, start, stop in spans(view, offset, len(view))
            if number in wanted}


def messages(data: bytes | memoryview) -> Iterator[tuple[int, int, int, memoryview]]:
    """(type, flags, seq, body) of each netlink message in one datagram."""
    view = memoryview(data)
    offset = 0
    while offset + _HEADER.size <= len(view):
        length, kind, flags, seq, _pid = _HEADER.unpack_from(view, offset)
        if length < _HEADER.size:
            break
        yield kind, flags, seq, view[offset + _HEADER.size:offset + length]
        offset += (length + 3) & ~3


def _text(value: memoryview) -> str:
    return bytes(value).split(b"\0", 1)[0].decode(errors="replace")


_LINK_FRAME: tuple[tuple[str, Attr], ...] = (
    ("name", Attr(IFLA_IFNAME, STRING)),
    ("alias", Attr(IFLA_IFALIAS, STRING)),
    ("link", Attr(IFLA_LINK, U32)),
    ("link_netnsid", Attr(IFLA_LINK_NETNSID, S32)),
    ("group", Attr(IFLA_GROUP, U32, missing=0)),
)
"""Who and where a link is, besides its ifindex, admin state and kind: what RawLink holds in
fields of its own (the settings' attributes come from their declarations)."""

LINK_KEYS = tuple(setting.key for setting, _ in LINK_SETTINGS)
"""The settings a RawLink holds, in the order of its `settings`."""

_SLOTS = {key: slot for slot, key in enumerate(LINK_KEYS)}


@frozen
class RawLink:
    """The attributes of one RTM_NEWLINK message that macvland reads."""

    ifindex: int
    name: str
    up: bool
    alias: str | None
    link: int | None
    """IFLA_LINK: the lower device's ifindex, in `link_netnsid` when that is set."""
    link_netnsid: int | None
    kind: str | None
    group: int
    settings: tuple[object, ...]
    """The kernel's value of each setting declared with an attribute (LINK_KEYS' order)."""

    def value(self, key: str) -> object:
        return self.settings[_SLOTS[key]]


def link_index(body: memoryview) -> int:
    """The ifindex of an RTM_NEWLINK/RTM_DELLINK message, without decoding the rest."""
    index: int = _IFINFO.unpack_from(body)[2]
    return index


_Reader = Callable[[bytes, int, int], object]
_Fixed = tuple[str, Callable[[object], object] | None] | None
_Table = dict[int, tuple[int, _Reader, _Fixed]]
_Read = tuple[int, _Reader, _Fixed, int, int]
"""(slot, reader, the format's `fixed`, start, stop): one attribute a walk read."""


def _span(data: bytes, start: int, stop: int) -> tuple[int, int]:
    return start, stop


def _kind(data: bytes, start: int, stop: int) -> str:
    return STRING.text(data, start, stop)


def _walk(data: bytes, offset: int, end: int, table: _Table, values: list[Any],
          headers: list[int], reads: list[_Read]) -> bool:
    """Every attribute between offset and end whose number `table` has, read into its slot;
    where each header was and each read go to `headers` and `reads`. False when the
    attributes do not fill their space (a message to read, but not to learn a shape from)."""
    unpack = NLA.unpack_from
    while offset + 4 <= end:
        length, number = unpack(data, offset)
        if length < 4:
            return False
        headers.append(offset)
        entry = table.get(number & NLA_TYPE_MASK)
        if entry is not None:
            slot, reader, fixed = entry
            values[slot] = reader(data, offset + 4, offset + length)
            reads.append((slot, reader, fixed, offset + 4, offset + length))
        offset += (length + 3) & ~3
    return True


def _pattern(fields: Iterable[tuple[int, str]]) -> struct.Struct:
    """One struct reading each (offset, code), in the order of their offsets."""
    layout, at = ["="], 0
    for offset, code in fields:
        layout.append(f"{offset - at}x{code}")
        at = offset + struct.calcsize("=" + code)
    return struct.Struct("".join(layout))


@frozen
class _Shape:
    """Where the attributes of one message were, and what was read from where.

    The kernel writes a link's attributes in a fixed order, so a dump of a thousand macvlans
    has a handful of shapes (names of other lengths, an alias or none, more source MACs). A
    message of a known shape is read by checking every attribute header the walk visited,
    all in one struct call, then its numbers (most of what is read), all in one more, and
    the rest (names, MACs) from the same places: about a third of the cost of a walk.
    Any header that differs, or another kind, and the message is walked as usual.
    """

    headers: struct.Struct
    expected: tuple[int, ...]
    base: list[Any]
    """The slots before the reads: the defaults, a macvlan's own ones included."""
    numbers: struct.Struct
    number_slots: tuple[int, ...]
    converts: tuple[tuple[int, Callable[[object], object]], ...]
    """What turns a number read into its slot's value (an enum's, a set of bits)."""
    reads: tuple[tuple[int, _Reader, int, int], ...]
    kind: str | None

    @classmethod
    def of(cls, data: bytes, headers: list[int], base: list[Any], reads: list[_Read],
           kind: str | None) -> _Shape:
        pattern = _pattern((offset, "HH") for offset in sorted(headers))
        numbers = sorted((start, slot, fixed) for slot, _, fixed, start, stop in reads
                         if fixed is not None and stop - start >= struct.calcsize(fixed[0]))
        fused = {slot for _, slot, _ in numbers}
        return cls(pattern, pattern.unpack_from(data), base,
                   _pattern((start, fixed[0]) for start, _, fixed in numbers),
                   tuple(slot for _, slot, _ in numbers),
                   tuple((slot, fixed[1]) for _, slot, fixed in numbers if fixed[1]),
                   tuple((slot, reader, start, stop) for slot, reader, _, start, stop in reads
                         if slot not in fused), kind)

    def read(self, data: bytes, kind_slot: int) -> list[Any] | None:
        if self.headers.unpack_from(data) != self.expected:
            return None
        values = self.base.copy()
        for slot, number in zip(self.number_slots, self.numbers.unpack_from(data), strict=True):
            values[slot] = number
        for slot, convert in self.converts:
            values[slot] = convert(values[slot])
        for slot, reader, start, stop in self.reads:
            values[slot] = reader(data, start, stop)
        return values if values[kind_slot] == self.kind else None


_SHAPES = 256
"""Shapes kept (a few dozen on a busy host); past that, forgotten and learned again."""


class _LinkDecoder:
    """A link message's attributes, each looked up by number in a table made from the
    declarations: (slot, reader). Most of them (queues' limits, AF_SPEC, carrier counts...)
    are skipped without a slice or a call. IFLA_LINKINFO is read after the link's own: its
    IFLA_INFO_DATA is a macvlan's only when IFLA_INFO_KIND says so (other kinds put their
    own attributes there, under the same numbers). A message of a shape seen before is read
    by its _Shape, keyed by its size and its first attribute's header."""

    def __init__(self, frame: Iterable[tuple[str, Attr]], settings: Iterable[Attr]) -> None:
        attrs = [*(a for _, a in frame), *settings]
        self.frame = len(_LINK_FRAME)
        self.end = len(attrs)
        # Three slots after the declared ones: where IFLA_LINKINFO is, the kind, where
        # IFLA_INFO_DATA is.
        self.linkinfo, self.kind, self.info_data = self.end, self.end + 1, self.end + 2
        self.top: _Table = {IFLA_LINKINFO: (self.linkinfo, _span, None)}
        self.info: _Table = {IFLA_INFO_KIND: (self.kind, _kind, None),
                             IFLA_INFO_DATA: (self.info_data, _span, None)}
        self.data: _Table = {}
        for slot, a in enumerate(attrs):
            (self.data if a.macvlan else self.top)[a.kind] = (slot, a.format.unpack,
                                                              a.format.fixed)
        self.plain: list[Any] = [a.format.empty if a.macvlan else a.absent for a in attrs]
        self.plain += [None, None, None]
        """Every slot's value before a message is read: a link of another kind keeps it."""
        self.driver = [(slot, a.absent) for slot, a in enumerate(attrs)
                       if a.macvlan and a.absent != a.format.empty]
        """What differs for a macvlan or macvtap, whose data leaves out what is unchanged."""
        self.shapes: dict[tuple[int, bytes], _Shape] = {}

    def decode(self, body: bytes | memoryview) -> RawLink:
        data = bytes(body)  # slices of bytes are what strings and MACs are made from
        _family, _type, index, flags, _change = _IFINFO.unpack_from(data)
        key = (len(data), data[_IFINFO.size:_IFINFO.size + 4])
        shape = self.shapes.get(key)
        values = shape.read(data, self.kind) if shape is not None else None
        if values is None:
            values = self._walked(data, key)
        kind = values[self.kind]
        name, alias, link, netnsid, group = values[:self.frame]
        return RawLink(index, name if name is not None else f"if{index}", bool(flags & IFF_UP),
                       alias, link, netnsid, kind, group, tuple(values[self.frame:self.end]))

    def _walked(self, data: bytes, key: tuple[int, bytes]) -> list[Any]:
        """Every slot, by walking the attributes; the message's shape is learned on the way."""
        values = self.plain.copy()
        headers: list[int] = []
        reads: list[_Read] = []
        whole = _walk(data, _IFINFO.size, len(data), self.top, values, headers, reads)
        base = self.plain.copy()
        kind = None
        linkinfo = values[self.linkinfo]
        if linkinfo is not None:
            whole &= _walk(data, linkinfo[0], linkinfo[1], self.info, values, headers, reads)
            kind = values[self.kind]
            if kind in DRIVER_KINDS:
                for slot, value in self.driver:
                    values[slot] = base[slot] = value
                info_data = values[self.info_data]
                if info_data is not None:
                    whole &= _walk(data, info_data[0], info_data[1], self.data, values,
                                   headers, reads)
        if whole:
            if len(self.shapes) >= _SHAPES:
                self.shapes.clear()
            self.shapes[key] = _Shape.of(data, headers, base, reads, kind)
        return values


decode_link = _LinkDecoder(_LINK_FRAME, (a for _, a in LINK_SETTINGS)).decode
"""The RawLink of an RTM_NEWLINK message's body."""


def link_attrs(values: Iterable[tuple[Attr, object]], kind: str, info: bool = False) -> bytes:
    """The attributes that carry `values`: the link's own, then IFLA_LINKINFO naming `kind`
    with the macvlan ones in its IFLA_INFO_DATA, when there are some (or with `info`: a
    create always names the kind it makes). The kernel refuses a change that names another
    kind than the link's, so a macvtap's change says macvtap."""
    values = list(values)
    body = b"".join(a.encode(value) for a, value in values if not a.macvlan)
    data = tuple((a, value) for a, value in values if a.macvlan)
    if data or info:
        body += _linkinfo(kind, data)
    return body


@functools.lru_cache(maxsize=1024)
def _linkinfo(kind: str, data: tuple[tuple[Attr, object], ...]) -> bytes:
    # Most of a thousand creates share a few of these.
    return macvlan_info(*(a.encode(value) for a, value in data), kind=kind)


@frozen
class RawAddress:
    """One RTM_NEWADDR message: an address with its prefix, on the link `ifindex`."""

    ifindex: int
    address: IPInterface
    flags: int
    """IFA_F_*: the whole word from IFA_FLAGS when the kernel sends it."""
    proto: int | None
    """IFA_PROTO (Linux 6.1 and later): who made it; None when the kernel does not say."""

    @property
    def static(self) -> bool:
        """Set by someone, not made by the kernel itself (link-local, SLAAC, temporary).

        The kernel makes its IPv6 link-local address permanent too; IFA_PROTO tells it apart,
        and where the kernel is too old to send that, an fe80::/10 address is taken for the
        kernel's.
        """
        if not self.flags & IFA_F_PERMANENT:
            return False
        # The same bit is IFA_F_SECONDARY in IPv4: a second address in a prefix, static too.
        if self.address.version == 6 and self.flags & IFA_F_TEMPORARY:
            return False
        if self.proto is not None:
            return self.proto == IFAPROT_UNSPEC
        return not (self.address.version == 6 and self.address.ip.is_link_local)


_ADDR_ATTRS = frozenset({IFA_ADDRESS, IFA_LOCAL, IFA_FLAGS, IFA_PROTO})


def address_index(body: memoryview) -> int:
    """The ifindex of an RTM_NEWADDR/RTM_DELADDR message, without decoding the rest."""
    index: int = _IFADDR.unpack_from(body)[4]
    return index


def decode_address(body: memoryview) -> RawAddress | None:
    """The address, or None for a family other than IPv4 and IPv6."""
    family, prefixlen, flags, _scope, index = _IFADDR.unpack_from(body)
    if family not in (AF_INET, AF_INET6):
        return None
    found = _pick(body, _IFADDR.size, _ADDR_ATTRS)
    value = found.get(IFA_LOCAL, found.get(IFA_ADDRESS))
    if value is None:
        return None
    address = ipaddress.ip_interface((bytes(value), prefixlen))
    if IFA_FLAGS in found:
        flags = _U32.unpack(found[IFA_FLAGS])[0]
    proto = found[IFA_PROTO][0] if IFA_PROTO in found else None
    return RawAddress(index, address, flags, proto)


@frozen
class RawRoute:
    """One RTM_NEWROUTE message, as far as a single-path unicast route goes."""

    to: IPNetwork
    via: IPAddress | None
    oif: int | None
    metric: int
    table: int
    protocol: int


_ROUTE_ATTRS = frozenset({RTA_DST, RTA_OIF, RTA_GATEWAY, RTA_PRIORITY, RTA_TABLE})


def route_oif(body: memoryview) -> int | None:
    """The output interface of an RTM_NEWROUTE/RTM_DELROUTE message (None: it has none)."""
    found = _pick(body, _RTMSG.size, frozenset({RTA_OIF}))
    return _U32.unpack(found[RTA_OIF])[0] if RTA_OIF in found else None


def decode_route(body: memoryview) -> RawRoute | None:
    """The route, or None for a family other than IPv4 and IPv6."""
    family, dst_len, _src, _tos, table, protocol, _scope, _type, _flags = \
        _RTMSG.unpack_from(body)
    if family not in (AF_INET, AF_INET6):
        return None
    found = _pick(body, _RTMSG.size, _ROUTE_ATTRS)
    size = 4 if family == AF_INET else 16
    dst = bytes(found[RTA_DST]) if RTA_DST in found else bytes(size)
    return RawRoute(
        to=ipaddress.ip_network((dst, dst_len)),
        via=ipaddress.ip_address(bytes(found[RTA_GATEWAY])) if RTA_GATEWAY in found else None,
        oif=_U32.unpack(found[RTA_OIF])[0] if RTA_OIF in found else None,
        metric=_U32.unpack(found[RTA_PRIORITY])[0] if RTA_PRIORITY in found else 0,
        table=_U32.unpack(found[RTA_TABLE])[0] if RTA_TABLE in found else table,
        protocol=protocol,
    )


def decode_nsid(body: memoryview) -> int | None:
    for kind, value in attrs(body, 4):  # after struct rtgenmsg, padded
        if kind == NETNSA_NSID:
            nsid: int = _S32.unpack(value)[0]
            return nsid if nsid >= 0 else None
    return None


def _error(body: memoryview, flags: int) -> KernelError | None:
    code = -_S32.unpack_from(body)[0]
    if code == 0:
        return None
    text = ""
    if flags & NLM_F_ACK_TLVS:
        # Skip the echoed request: only its header when the ack was capped.
        echoed = _HEADER.size if flags & NLM_F_CAPPED else _HEADER.unpack_from(body, 4)[0]
        for kind, value in attrs(body, 4 + echoed):
            if kind == NLMSGERR_ATTR_MSG:
                text = _text(value)
    return KernelError(code, text)


# --- the socket ----------------------------------------------------------------------------

class DumpInterrupted(Exception):
    """The links changed during a dump (NLM_F_DUMP_INTR); it must be taken again."""


class RtnlSocket:
    """One NETLINK_ROUTE socket, bound to the namespace it was created in.

    `writes` counts the requests that asked the kernel to change something, so that callers
    can prove a pass with nothing to do wrote nothing.
    """

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        sock.setsockopt(SOL_NETLINK, NETLINK_EXT_ACK, 1)
        sock.setsockopt(SOL_NETLINK, NETLINK_CAP_ACK, 1)
        # Lets a route dump be filtered by protocol in the kernel (and checks every request
        # strictly): only macvland's own routes come back, however large the tables are.
        sock.setsockopt(SOL_NETLINK, NETLINK_GET_STRICT_CHK, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        sock.bind((0, 0))
        self._seq = 0
        self._buffer = bytearray(1 << 16)
        self.writes = 0

    @classmethod
    def open(cls) -> RtnlSocket:
        return cls(socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE))

    def close(self) -> None:
        self._sock.close()

    def _send(self, kind: int, flags: int, body: bytes) -> int:
        self._seq += 1
        self._sock.send(message(kind, flags | NLM_F_REQUEST, self._seq, body))
        return self._seq

    def _replies(self, seq: int) -> Iterator[tuple[int, int, memoryview]]:
        """(type, flags, body) of every message answering `seq`, until the caller stops."""
        while True:
            size = self._sock.recv_into(self._buffer)
            for kind, flags, mseq, body in messages(memoryview(self._buffer)[:size]):
                if mseq == seq:
                    yield kind, flags, body

    def request(self, kind: int, body: bytes, flags: int = 0) -> None:
        """Send a change and wait for the kernel's acknowledgement; raise KernelError."""
        self.writes += 1
        seq = self._send(kind, flags | NLM_F_ACK, body)
        for rkind, rflags, rbody in self._replies(seq):
            if rkind == NLMSG_ERROR:
                error = _error(rbody, rflags)
                if error:
                    raise error
                return

    def request_many(self, requests: list[tuple[int, bytes, int]]) -> list[KernelError | None]:
        """Send changes pipelined and return each one's result, in order.

        The kernel handles each request as it is sent and queues its ack; sending a chunk
        before reading its acks saves a round trip per request, and the chunk is small enough
        that the acks always fit the receive buffer (an overflow would drop them).
        """
        results: list[KernelError | None] = []
        for start in range(0, len(requests), _PIPELINE):
            chunk = requests[start:start + _PIPELINE]
            pending = {}
            datagram = []
            for index, (kind, body, flags) in enumerate(chunk):
                self._seq += 1
                pending[self._seq] = start + index
                datagram.append(message(kind, flags | NLM_F_REQUEST | NLM_F_ACK, self._seq, body))
            # One datagram for the chunk: the kernel runs its messages one by one, acking
            # each (an error does not stop the ones after it), for one system call.
            self._sock.send(b"".join(datagram))
            self.writes += len(chunk)
            results.extend([None] * len(chunk))
            while pending:
                size = self._sock.recv_into(self._buffer)
                for rkind, rflags, seq, rbody in messages(memoryview(self._buffer)[:size]):
                    if rkind == NLMSG_ERROR and seq in pending:
                        results[pending.pop(seq)] = _error(rbody, rflags)
        return results

    def query(self, kind: int, body: bytes) -> memoryview:
        """Send a GET for one object and return its body (a copy, safe to keep)."""
        seq = self._send(kind, 0, body)
        for rkind, rflags, rbody in self._replies(seq):
            if rkind == NLMSG_ERROR:
                raise _error(rbody, rflags) or KernelError(0, "empty answer")
            return memoryview(bytes(rbody))
        raise AssertionError("unreachable")

    def dump(self, kind: int, body: bytes) -> list[memoryview]:
        """Every message body of a dump; raises DumpInterrupted when it was inconsistent."""
        seq = self._send(kind, NLM_F_DUMP, body)
        bodies: list[memoryview] = []
        interrupted = False
        for rkind, rflags, rbody in self._replies(seq):
            interrupted |= bool(rflags & NLM_F_DUMP_INTR)
            if rkind == NLMSG_DONE:
                break
            if rkind == NLMSG_ERROR:
                raise _error(rbody, rflags) or KernelError(0, "empty answer")
            bodies.append(memoryview(bytes(rbody)))
        if interrupted:
            raise DumpInterrupted
        return bodies

    def links(self) -> list[RawLink]:
        """One dump of every link in this socket's namespace, retried if interrupted."""
        while True:
            try:
                # Statistics are most of a link message and nothing here reads them.
                request = ifinfo() + u32(IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS)
                return [decode_link(body) for body in self.dump(RTM_GETLINK, request)]
            except DumpInterrupted:
                continue

    def addresses(self) -> list[RawAddress]:
        """One dump of every IPv4 and IPv6 address in this socket's namespace."""
        while True:
            try:
                bodies = self.dump(RTM_GETADDR, _IFADDR.pack(AF_UNSPEC, 0, 0, 0, 0))
            except DumpInterrupted:
                continue
            return [a for a in map(decode_address, bodies) if a is not None]

    def routes(self, protocol: int = RTPROT_MACVLAND) -> list[RawRoute]:
        """One dump of the IPv4 and IPv6 routes of `protocol`, in every table.

        The kernel filters by protocol (NETLINK_GET_STRICT_CHK), so a full BGP table in the
        same namespace costs nothing here.
        """
        request = _RTMSG.pack(AF_UNSPEC, 0, 0, 0, 0, protocol, 0, 0, 0)
        while True:
            try:
                bodies = self.dump(RTM_GETROUTE, request)
            except DumpInterrupted:
                continue
            return [r for r in map(decode_route, bodies)
                    if r is not None and r.protocol == protocol]

    def link(self, name: str) -> RawLink:
        return decode_link(self.query(RTM_GETLINK, ifinfo() + string(IFLA_IFNAME, name)))

    def link_at(self, ifindex: int) -> RawLink | None:
        """The link `ifindex` as it is now; None when there is none (or it is going away)."""
        try:
            return decode_link(self.query(RTM_GETLINK, ifinfo(ifindex) + u32(
                IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS)))
        except KernelError as error:
            if error.errno == errno.ENODEV:
                return None
            raise

    def nsid(self, netns_fd: int) -> int | None:
        """The id this socket's namespace gives to the namespace behind `netns_fd`."""
        body = self.query(RTM_GETNSID, b"\0\0\0\0" + u32(NETNSA_FD, netns_fd))
        return decode_nsid(body)
