"""Netlink attributes: how a value is written in one and read back, and where a link
setting's attribute lives in an RTM_NEWLINK message.

This is the vocabulary in which macvland.settings declares each setting's attribute
(`Attr`: its number, whether it sits among the link's IFLA_* or inside IFLA_LINKINFO's
IFLA_INFO_DATA as an IFLA_MACVLAN_*, and its `Format`); rtnl derives the link decoder and
the encoder of creates and changes from those declarations. A format whose value is more
than one attribute (the source-MAC list) is a named codec of its own here.

Pure functions and frozen data over bytes; it imports nothing of macvland.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator, Mapping

from macvland.frozen import frozen

NLA_F_NESTED = 0x8000
NLA_TYPE_MASK = 0x3FFF
NLA = struct.Struct("=HH")

# <linux/if_link.h>: the link attributes that settings are declared with
IFLA_ADDRESS = 1
IFLA_MTU = 4
IFLA_NUM_TX_QUEUES = 31
IFLA_NUM_RX_QUEUES = 32
IFLA_MACVLAN_MODE = 1
IFLA_MACVLAN_FLAGS = 2
IFLA_MACVLAN_MACADDR_MODE = 3
IFLA_MACVLAN_MACADDR = 4
IFLA_MACVLAN_MACADDR_DATA = 5
IFLA_MACVLAN_BC_QUEUE_LEN = 7
IFLA_MACVLAN_BC_CUTOFF = 9
MACADDR_ADD = 0
MACADDR_DEL = 1
MACADDR_SET = 3
MACVLAN_MODE_PRIVATE = 1
MACVLAN_MODE_VEPA = 2
MACVLAN_MODE_BRIDGE = 4
MACVLAN_MODE_PASSTHRU = 8
MACVLAN_MODE_SOURCE = 16
MACVLAN_FLAG_NOPROMISC = 1
MACVLAN_FLAG_NODST = 2


# --- one attribute -----------------------------------------------------------------------

def attr(kind: int, payload: bytes) -> bytes:
    length = NLA.size + len(payload)
    return NLA.pack(length, kind) + payload + b"\0" * (-length % 4)


def nest(kind: int, *children: bytes) -> bytes:
    return attr(kind | NLA_F_NESTED, b"".join(children))


def u32(kind: int, value: int) -> bytes:
    return attr(kind, U32.pack(value))


def s32(kind: int, value: int) -> bytes:
    return attr(kind, S32.pack(value))


def string(kind: int, value: str) -> bytes:
    return attr(kind, value.encode() + b"\0")


def mac(kind: int, value: str) -> bytes:
    return attr(kind, bytes.fromhex(value.replace(":", "")))


def spans(data: bytes | memoryview, offset: int, end: int) -> Iterator[tuple[int, int, int]]:
    """(number, start, stop) of each attribute between offset and end: where its payload is,
    without a slice (a malformed length ends the walk)."""
    unpack = NLA.unpack_from
    while offset + 4 <= end:
        length, number = unpack(data, offset)
        if length < 4:
            return
        yield number & NLA_TYPE_MASK, offset + 4, offset + length
        offset += (length + 3) & ~3


# --- formats -----------------------------------------------------------------------------

class Format:
    """How a value is written in an attribute's payload (`pack`) and read from it (`unpack`,
    given the whole message as bytes and the payload's bounds: no slice is made for a number).
    """

    empty: object = None
    """The value of an attribute the message does not carry."""

    def pack(self, value: object) -> bytes:
        raise NotImplementedError

    def unpack(self, data: bytes, start: int, end: int) -> object:
        raise NotImplementedError

    def encode(self, kind: int, value: object) -> bytes:
        """The whole attribute (or attributes) that carry `value`."""
        return attr(kind, self.pack(value))

    fixed: tuple[str, Callable[[object], object] | None] | None = None
    """A payload of fixed size read as one number: its struct code (native order, no size
    prefix) and what makes the value of that number (None: the number itself). A decoder
    reads all of a message's fixed payloads in one struct call."""


class Number(Format):
    def __init__(self, code: str) -> None:
        self._struct = struct.Struct(code)
        self._unpack_from = self._struct.unpack_from
        self.fixed = (code.lstrip("="), None)

    def pack(self, value: object) -> bytes:
        return self._struct.pack(value)

    def unpack(self, data: bytes, start: int, end: int) -> object:
        return self._unpack_from(data, start)[0]


U32 = Number("=I")
S32 = Number("=i")
U16 = Number("=H")


class _String(Format):
    def pack(self, value: object) -> bytes:
        assert isinstance(value, str)
        return value.encode() + b"\0"

    def unpack(self, data: bytes, start: int, end: int) -> object:
        return self.text(data, start, end)

    def text(self, data: bytes, start: int, end: int) -> str:
        nul = data.find(b"\0", start, end)
        return data[start:nul if nul >= 0 else end].decode(errors="replace")


class _Mac(Format):
    def pack(self, value: object) -> bytes:
        assert isinstance(value, str)
        return bytes.fromhex(value.replace(":", ""))

    def unpack(self, data: bytes, start: int, end: int) -> object:
        return data[start:end].hex(":")


STRING = _String()
MAC = _Mac()
"""A MAC address as lowercase hex pairs: 02:00:00:00:00:01."""


class Enum(Format):
    """A number that stands for one of a few values (an unknown number reads as None)."""

    def __init__(self, number: Number, values: Mapping[int, object]) -> None:
        self._number = number
        self._values = dict(values)
        self._numbers = {value: n for n, value in values.items()}
        self.fixed = (number.fixed[0], self._value_of) if number.fixed else None

    def pack(self, value: object) -> bytes:
        return self._number.pack(self._numbers[value])

    def unpack(self, data: bytes, start: int, end: int) -> object:
        return self._value_of(self._number.unpack(data, start, end))

    def _value_of(self, number: object) -> object:
        return self._values.get(number)  # type: ignore[call-overload]


class Bits(Format):
    """A set of values, one bit each; unknown bits are ignored."""

    empty: object = frozenset()

    def __init__(self, number: Number, values: Mapping[int, object]) -> None:
        self._number = number
        self._values = dict(values)
        self._sets: dict[object, frozenset[object]] = {}
        """Each word seen so far as its set: a dump repeats a few words thousands of times."""
        self.fixed = (number.fixed[0], self._set_of) if number.fixed else None

    def pack(self, value: object) -> bytes:
        assert isinstance(value, frozenset)
        return self._number.pack(sum(bit for bit, v in self._values.items() if v in value))

    def unpack(self, data: bytes, start: int, end: int) -> object:
        return self._set_of(self._number.unpack(data, start, end))

    def _set_of(self, word: object) -> frozenset[object]:
        found = self._sets.get(word)
        if found is None:
            assert isinstance(word, int)
            found = self._sets[word] = frozenset(v for bit, v in self._values.items()
                                                 if word & bit)
        return found


class _SourceMacs(Format):
    """The source-MAC list: IFLA_MACVLAN_MACADDR_DATA nesting one IFLA_MACVLAN_MACADDR per
    address, read as a set; written with IFLA_MACVLAN_MACADDR_MODE beside it, which says what
    the kernel does with it (set: replace the list; add and del: one address)."""

    empty: object = frozenset()

    def encode(self, kind: int, value: object) -> bytes:
        assert isinstance(value, frozenset)
        if not value:
            return b""  # an empty list is the kernel's default: nothing to say
        return (u32(IFLA_MACVLAN_MACADDR_MODE, MACADDR_SET)
                + nest(kind, *(mac(IFLA_MACVLAN_MACADDR, m) for m in sorted(value))))

    def edit(self, add: bool, address: str) -> bytes:
        """The attributes that add one address to the list, or delete it from it."""
        return (u32(IFLA_MACVLAN_MACADDR_MODE, MACADDR_ADD if add else MACADDR_DEL)
                + mac(IFLA_MACVLAN_MACADDR, address))

    def unpack(self, data: bytes, start: int, end: int) -> object:
        return frozenset(data[at:stop].hex(":") for number, at, stop in spans(data, start, end)
                         if number == IFLA_MACVLAN_MACADDR)


SOURCE_MACS = _SourceMacs()


# --- where a setting's attribute lives ---------------------------------------------------

_EMPTY = object()


@frozen(eq=False)
class Attr:
    """A setting's attribute in an RTM_NEWLINK message."""

    kind: int
    """Its number: an IFLA_*, or with `macvlan` an IFLA_MACVLAN_*."""
    format: Format
    macvlan: bool = False
    """Inside IFLA_LINKINFO's IFLA_INFO_DATA, which only a macvlan or macvtap has (and which
    the request must name the link's kind beside)."""
    missing: object = _EMPTY
    """Its value when a link that has it omits the attribute (default: the format's empty
    value; a link of another kind reads as that too)."""

    @property
    def absent(self) -> object:
        return self.format.empty if self.missing is _EMPTY else self.missing

    def encode(self, value: object) -> bytes:
        return self.format.encode(self.kind, value)
