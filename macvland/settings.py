"""Every setting of an interface, declared once; the parser, the planner, plan lines, JSON
output, the JSON Schema, the README's reference table and the netlink side (the attributes of
creates and changes, and the decoder of link dumps) are all derived from `SETTINGS`.

A declaration says what a setting is (its key, which is also its attribute on MacvlanSpec and,
by default, on the observed Link; its type and range), where it means something (kinds and
modes), how the kernel changes it (`Update`), how it is read back from the kernel (its
`netlink` attribute: number, place and format, from macvland.nla), and how it shows. Its
default is the model's: the field default of MacvlanSpec, so it is never written twice.

Value types are small frozen classes: each checks a value as written (raising Invalid with a
message that needs no place) and states its own JSON Schema and README summary. The YAML side
of reading (is it a scalar, a list, a mapping; is it an integer) stays in spec.py, which walks
these types; a list-valued setting is `SetOf(item)`, so it reuses its item's scalar type
unchanged.

Nothing here does I/O; it imports only the model and nla (the kernel's attribute numbers and
formats).

To add a setting:
1. add its field to MacvlanSpec (with the default that means "absent") and, if it is read
   from the kernel, to Link;
2. append a Setting to SETTINGS (the order is the order of plan lines and of the README);
   for a link attribute, give it `netlink=Attr(IFLA_..., format)` (`macvlan=True` for an
   IFLA_MACVLAN_* inside IFLA_INFO_DATA; `missing=` for the value the kernel means when it
   leaves the attribute out). That is all the netlink side needs: rtnl decodes it into
   RawLink.settings and observe into the Link field of the same name, a create writes it
   when it is set, and a Change writes it when it changes. A value that is more than one
   attribute gets a named format in nla (like SOURCE_MACS);
3. say how it is carried out: `Update.IN_PLACE` settings go out in the one RTM_NEWLINK of a
   Change, `Update.RECREATE` ones are written at creation only, `Update.OWN` ones need a
   planner function in plan._OWN_STEPS that yields the operations (ops.py) that carry them
   out, and `Update.LAYER` ones (addresses, routes) are planned by plan._layer_ops from what
   observe.py reads of that layer;
4. run `make generated` to refresh the README table and etc/macvland/macvland.schema.json
   (tests/test_settings.py fails until they match the code).
"""

from __future__ import annotations

import functools
import ipaddress
import operator
import os
import re
from collections.abc import Callable, Mapping, Sequence
from enum import StrEnum

from macvland.frozen import MISSING, fields, frozen
from macvland.model import (
    DEFAULT_BC_CUTOFF,
    FLAG_MODE,
    MAIN_TABLE,
    Flag,
    IPAddress,
    IPInterface,
    IPNetwork,
    Kind,
    Link,
    MacvlanSpec,
    Mode,
    Route,
    State,
    TapAccess,
    default_metric,
)
from macvland.nla import (
    IFLA_ADDRESS,
    IFLA_MACVLAN_BC_CUTOFF,
    IFLA_MACVLAN_BC_QUEUE_LEN,
    IFLA_MACVLAN_FLAGS,
    IFLA_MACVLAN_MACADDR_DATA,
    IFLA_MACVLAN_MODE,
    IFLA_MTU,
    IFLA_NUM_RX_QUEUES,
    IFLA_NUM_TX_QUEUES,
    MAC,
    MACVLAN_FLAG_NODST,
    MACVLAN_FLAG_NOPROMISC,
    MACVLAN_MODE_BRIDGE,
    MACVLAN_MODE_PASSTHRU,
    MACVLAN_MODE_PRIVATE,
    MACVLAN_MODE_SOURCE,
    MACVLAN_MODE_VEPA,
    S32,
    SOURCE_MACS,
    U16,
    U32,
    Attr,
    Bits,
    Enum,
)

TYPE_CHECKING = False  # importing typing costs 5 ms of start-up; only mypy needs it
if TYPE_CHECKING:
    from typing import Any

__all__ = [  # noqa: RUF022 (the table first, then its parts)
    "SETTINGS", "Setting", "Update", "Kind", "ValueType", "Choice", "Integer", "Mac", "Name",
    "NetnsName", "SetOf", "Text", "Invalid", "InvalidFields", "Prefix", "Gateway",
    "Destination", "Record", "ROUTE", "by_key", "did_you_mean", "jsonable",
    "mode_conflict", "show",
]


class Invalid(ValueError):
    """A value that cannot be used; the message needs no place (the caller adds it)."""


def show(value: object) -> str:
    """A value as an operator reads it, in plan lines and audit records."""
    if value is None:
        return "unset"
    if isinstance(value, frozenset):
        return ",".join(sorted(str(v) for v in value)) or "none"
    return str(value)


def jsonable(value: object) -> object:
    """A value as JSON output spells it: enums as their strings, sets as sorted lists."""
    if isinstance(value, frozenset):
        return sorted(str(v) for v in value)
    if isinstance(value, StrEnum):
        return str(value)
    to_dict = getattr(value, "to_dict", None)  # a structured value (TapAccess)
    return to_dict() if to_dict is not None else value


class Update(StrEnum):
    """How a new value reaches the kernel."""

    IDENTITY = "identity"
    """Who the interface is (name, netns): the planner's ownership and move rules."""
    IN_PLACE = "in place"
    """One change request, the interface keeps its ifindex."""
    RECREATE = "recreate"
    """Fixed at creation: a new value deletes and recreates the interface."""
    OWN = "in place, step by step"
    """Changed by operations of its own (plan._OWN_STEPS), not by the link request."""
    LAYER = "in place, above the link"
    """What the interface carries (addresses, routes): planned per layer (plan._layer_ops)
    after the link is in place, and put back after a create or a move."""
    DEVICE = "on /dev/tapN"
    """Changed on the macvtap's character device (chown, chmod), not through netlink."""


# --- value types ------------------------------------------------------------------------------


class ValueType:
    """A type of value: `check` takes it as written; `schema` and `summary` describe it."""

    def schema(self) -> dict[str, Any]:
        raise NotImplementedError

    def summary(self) -> str:
        raise NotImplementedError


@frozen
class Integer(ValueType):
    """A decimal integer in low..high (YAML's 0x5dc, 1_500 and 01500 are refused)."""

    low: int
    high: int

    def check(self, value: int) -> int:
        if not self.low <= value <= self.high:
            raise Invalid(f"{value} is out of range {self.low}..{self.high}")
        return value

    def schema(self) -> dict[str, Any]:
        return {"type": "integer", "minimum": self.low, "maximum": self.high}

    def summary(self) -> str:
        return f"integer {self.low}..{self.high}"


class Text(ValueType):
    """A value written as a scalar string (whatever YAML type it would resolve to)."""

    nullable = False
    """Whether null is a value of its own (instead of "expected a string, got null")."""

    def check(self, text: str) -> object:
        raise NotImplementedError


@frozen
class Choice(Text):
    """One member of a string enum."""

    enum: type[StrEnum]

    @property
    def values(self) -> list[str]:
        return [member.value for member in self.enum]

    def check(self, text: str) -> StrEnum:
        # Looked up by value, not tested against `values`: iterating an enum costs more than
        # the rest of reading a `mode:` (a fifth of a 1,000-interface parse).
        member = _members(self.enum).get(text)
        if member is None:
            raise Invalid(f"{text!r} is not one of {', '.join(self.values)}"
                          f"{did_you_mean(text, self.values)}")
        return member

    def schema(self) -> dict[str, Any]:
        return {"type": "string", "enum": self.values}

    def summary(self) -> str:
        return " \\| ".join(f"`{v}`" for v in self.values)


@functools.cache
def _members(enum: type[StrEnum]) -> dict[str, StrEnum]:
    """An enum's members by value (its aliases have no value of their own)."""
    return {member.value: member for member in enum}


_IFNAMSIZ = 16
"""The kernel's name buffer, trailing NUL included: a name holds at most 15 bytes."""

_PLAIN_IFNAME = re.compile(r"[A-Za-z0-9_.@+-]+")


@frozen
class Name(Text):
    """A name the kernel accepts for a net_device (dev_valid_name in net/core/dev.c)."""

    def check(self, text: str) -> str:
        reason = _ifname_problem(text)
        if reason is not None:
            raise Invalid(f"{text!r} is not a valid interface name: {reason}")
        return text

    def schema(self) -> dict[str, Any]:
        # maxLength counts characters, the kernel bytes: a schema cannot judge a long
        # non-ASCII name.
        return {"type": "string", "minLength": 1, "maxLength": _IFNAMSIZ - 1,
                "pattern": r"^[^/:\s\x00-\x1f\x7f]+$", "not": {"enum": [".", ".."]}}

    def summary(self) -> str:
        return f"interface name (1-{_IFNAMSIZ - 1} bytes, no `/`, `:` or whitespace)"


def _ifname_problem(name: str) -> str | None:
    if not name:
        return "it is empty"
    if name in (".", ".."):
        return "'.' and '..' are reserved"
    if _PLAIN_IFNAME.fullmatch(name):  # the common case, checked fast
        size = len(name)  # ASCII: a byte per character
    else:
        bad = next((c for c in name if c in "/:" or c.isspace() or not c.isprintable()), None)
        if bad is not None:
            return f"it contains {bad!r}"
        size = len(name.encode("utf-8"))
    if size >= _IFNAMSIZ:
        return f"it is {size} bytes long, and at most {_IFNAMSIZ - 1} fit"
    return None


NETNS_DIRS = ("/run/netns", "/var/run/netns")
"""Where `ip netns` keeps named namespaces; a file there is spelled by its bare name."""


@frozen
class NetnsName(Text):
    """A namespace spelled one way only, so that (netns, name) identities compare."""

    nullable = True  # null: macvland's own namespace, as if the key were absent

    def check(self, text: str) -> str:
        if text.startswith("/"):
            path = os.path.normpath(text)
            if path == "/" or path in NETNS_DIRS:
                raise Invalid(f"{text!r} is a directory; name a namespace file in it")
            directory, name = os.path.split(path)
            if directory in NETNS_DIRS and _netns_name_problem(name) is None:
                return name
            return path
        reason = _netns_name_problem(text)
        if reason is not None:
            raise Invalid(reason)
        return text

    def schema(self) -> dict[str, Any]:
        directory = r"^/+((var/+)?run/+netns)?/*$"
        return {"anyOf": [
            {"type": "null"},
            {"type": "string", "pattern": r"^(/.*|[^/\x00-\x1f\x7f]+)$",
             "not": {"anyOf": [{"enum": [".", ".."]}, {"pattern": directory}]}},
        ]}

    def summary(self) -> str:
        return "a name in /run/netns, or an absolute path to a netns file"


def _netns_name_problem(name: str) -> str | None:
    if not name:
        return "netns must not be empty (leave it out for macvland's own namespace)"
    if "/" in name:
        return f"{name!r} is neither a namespace name nor an absolute path"
    if name in (".", "..") or not name.isprintable():
        return f"{name!r} is not a valid namespace name"
    return None


_MAC = re.compile(r"[0-9a-f]{2}(?::[0-9a-f]{2}){5}", re.IGNORECASE)


@frozen
class Mac(Text):
    """A unicast MAC address, in lowercase."""

    def check(self, text: str) -> str:
        if not _MAC.fullmatch(text):
            raise Invalid(f"{text!r} is not a MAC address (expected six hex pairs separated by "
                          "':', like 02:00:00:00:00:01)")
        mac = text.lower()
        if mac == "00:00:00:00:00:00":
            raise Invalid("00:00:00:00:00:00 is not a usable MAC address")
        if int(mac[:2], 16) & 1:
            raise Invalid(f"{mac} is a multicast address; an interface needs a unicast MAC "
                          "(an even first octet)")
        return mac

    def schema(self) -> dict[str, Any]:
        return {"type": "string", "pattern": r"^[0-9A-Fa-f][02468ACEace](:[0-9A-Fa-f]{2}){5}$",
                "not": {"pattern": r"^00(:00){5}$"}}

    def summary(self) -> str:
        return "unicast MAC (`02:00:00:00:00:01`)"


_IP_PATTERN = r"[0-9A-Fa-f:.]+"
"""Loose: the parser judges what an address is; the schema only its shape."""


def _ip(text: str) -> IPAddress:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        raise Invalid(f"{text!r} is not an IPv4 or IPv6 address") from None


@frozen
class Prefix(Text):
    """An address with its prefix length, as an interface carries it: 192.0.2.10/24.

    Host bits are the point here; what is refused is what no interface should carry: an
    IPv4 network or broadcast address of its own prefix (below /31), and multicast,
    loopback or unspecified addresses.
    """

    def check(self, text: str) -> IPInterface:
        address, slash, length = text.partition("/")
        ip = _ip(address)
        if not slash:
            example = "192.0.2.10/24" if ip.version == 4 else "2001:db8::10/64"
            raise Invalid(f"{text!r} has no prefix length (write it, like {example})")
        if not length.isdigit() or int(length) > ip.max_prefixlen:
            raise Invalid(f"{text!r}: the prefix length must be 0..{ip.max_prefixlen}")
        interface = ipaddress.ip_interface(f"{ip}/{int(length)}")
        if ip.is_multicast or ip.is_loopback or ip.is_unspecified:
            kind = "multicast" if ip.is_multicast else (
                "loopback" if ip.is_loopback else "unspecified")
            raise Invalid(f"{text!r} is a {kind} address; an interface cannot carry it")
        network = interface.network
        if ip.version == 4 and network.prefixlen < 31 and ip in (
                network.network_address, network.broadcast_address):
            which = "network" if ip == network.network_address else "broadcast"
            raise Invalid(f"{text!r} is the {which} address of {network}")
        return interface

    def schema(self) -> dict[str, Any]:
        return {"type": "string", "pattern": f"^{_IP_PATTERN}/[0-9]{{1,3}}$"}

    def summary(self) -> str:
        return "address/prefix (`192.0.2.10/24`, `2001:db8::10/64`)"


@frozen
class Gateway(Text):
    """A unicast address to route through (a route's `via`)."""

    def check(self, text: str) -> IPAddress:
        ip = _ip(text)
        if ip.is_multicast or ip.is_unspecified:
            raise Invalid(f"{text!r} cannot be a gateway")
        return ip

    def schema(self) -> dict[str, Any]:
        return {"type": "string", "pattern": f"^{_IP_PATTERN}$"}

    def summary(self) -> str:
        return "address"


@frozen
class Destination(Text):
    """A route's `to`: a prefix without host bits, a bare address (a host route), or
    `default` (the family is then its gateway's). None stands for `default`."""

    def check(self, text: str) -> IPNetwork | None:
        if text == "default":
            return None
        address, slash, length = text.partition("/")
        ip = _ip(address)
        if slash and (not length.isdigit() or int(length) > ip.max_prefixlen):
            raise Invalid(f"{text!r}: the prefix length must be 0..{ip.max_prefixlen}")
        try:
            return ipaddress.ip_network(f"{ip}/{length}" if slash else str(ip))
        except ValueError:
            network = ipaddress.ip_interface(f"{ip}/{length}").network
            raise Invalid(f"{text!r} has host bits set (the prefix is {network})") from None

    def schema(self) -> dict[str, Any]:
        return {"type": "string", "pattern": f"^(default|{_IP_PATTERN}(/[0-9]{{1,3}})?)$"}

    def summary(self) -> str:
        return "prefix, address or `default`"


class InvalidFields(Invalid):
    """Problems inside a mapping value, each at one of its keys (None: the mapping itself)."""

    def __init__(self, problems: list[tuple[str | None, str]]) -> None:
        super().__init__("; ".join(message for _, message in problems))
        self.problems = problems


@frozen
class SetOf(ValueType):
    """A YAML list of distinct items, as a frozenset; a repeated item is an error."""

    item: Text | Record

    def schema(self) -> dict[str, Any]:
        return {"type": "array", "items": self.item.schema(), "uniqueItems": True}

    def summary(self) -> str:
        return f"list of {self.item.summary()}"


@frozen
class Account(Text):
    """A user or group: a name, or a numeric id."""

    what: str
    """"user" or "group"."""

    def check(self, text: str) -> str | int:
        if text.isdigit():
            number = int(text)
            if number >= 2**32 - 1:  # (uid_t) -1 means "no change" to chown
                raise Invalid(f"{number} is out of range 0..{2**32 - 2}")
            return number
        if not _ACCOUNT.fullmatch(text):
            raise Invalid(f"{text!r} is neither a {self.what} name nor a numeric id")
        return text

    def schema(self) -> dict[str, Any]:
        return {"anyOf": [{"type": "integer", "minimum": 0, "maximum": 2**32 - 2},
                          {"type": "string", "pattern": f"^([0-9]+|{_ACCOUNT.pattern})$"}]}

    def summary(self) -> str:
        return f"{self.what} name or numeric id"


_ACCOUNT = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,31}\$?")


@frozen
class FileMode(Text):
    """Permission bits written as chmod takes them: three octal digits, with or without a
    leading 0 (0660 or 660; YAML 1.1 would read an unquoted 0660 as the number 432)."""

    def check(self, text: str) -> int:
        if not re.fullmatch(r"0?[0-7]{3}", text):
            raise Invalid(f"{text!r} is not a mode (expected octal permission bits, like 0660)")
        return int(text, 8)

    def schema(self) -> dict[str, Any]:
        # YAML 1.2 reads an unquoted 0660 as 660: a schema cannot tell 0680 from 0660 then.
        return {"anyOf": [{"type": "string", "pattern": "^0?[0-7]{3}$"},
                          {"type": "integer", "minimum": 0, "maximum": 777}]}

    def summary(self) -> str:
        return "octal permission bits, like `0660`"


@frozen
class Record(ValueType):
    """A mapping of named fields, each declared like a setting (key, type, doc, required),
    made into one model value by `build`, called with the checked values of the keys that
    are there (an absent one: None); it raises InvalidFields to name a key at fault for a
    problem between fields. A setting's value (a macvtap's `tap`) or a list's item (a route).
    """

    fields: tuple[Setting, ...]
    build: Callable[..., object]

    def schema(self) -> dict[str, Any]:
        schema: dict[str, Any] = {
            "type": "object", "additionalProperties": False,
            "properties": {f.key: {**f.type.schema(), "description": f.doc.replace("`", "")}
                           for f in self.fields}}
        required = [f.key for f in self.fields if f.required]
        if required:
            schema["required"] = required
        return schema

    def summary(self) -> str:
        return "mapping of " + ", ".join(f"`{f.key}` ({f.type.summary()})" for f in self.fields)


def did_you_mean(word: str, choices: Sequence[str]) -> str:
    import difflib  # only for a spec with a mistake: not on every start

    matches = difflib.get_close_matches(word.lower(), choices, n=1)
    return f" (did you mean {matches[0]!r}?)" if matches else ""


# --- the declarations ---------------------------------------------------------------------


@frozen
class Setting:
    key: str
    """The YAML key, the MacvlanSpec attribute and, unless `observed` says otherwise, the
    Link attribute."""
    type: ValueType
    doc: str
    """What it means, for the README and the schema's description."""
    update: Update = Update.IN_PLACE
    required: bool = False
    kinds: frozenset[Kind] = frozenset(Kind)
    modes: frozenset[Mode] = frozenset(Mode)
    """The modes in which it may be set (a set-valued setting: set to something)."""
    mode_conflict: str | None = None
    """The message when it is set in another mode, if the generic one says too little."""
    item_modes: Mapping[Any, Mode] | None = None
    """Per item of a list: the only mode in which that item means something."""
    item_noun: str = ""
    """How an item is named in messages ("flag")."""
    label: str = ""
    """How it is named in a plan's create line (default: its key)."""
    bare: bool = False
    """A create line shows its value alone ("up", not "state up")."""
    observed: Callable[[Link], object] | None = None
    """Its value as the kernel has it (default: the Link attribute of the same name)."""
    observed_shown: Callable[[Link], object] | None = None
    """How the kernel's value is shown when it differs from the compared one."""
    recreate_when: Callable[[object, object], str | None] | None = None
    """An in-place setting that some transitions cannot make in place: why not, or None."""
    parent_wide: bool = False
    """The kernel keeps one value per parent: siblings that set it must agree."""
    unique_per_parent: bool = False
    """The kernel refuses two siblings with the same value."""
    applied: str = ""
    """How a new value is applied, for the README, where `update` says too little."""
    absent_means: str = "left alone"
    """What leaving the key out means, for the README, when the default is None."""
    netlink: Attr | None = None
    """Its attribute in RTM_NEWLINK: what a create or a change writes, and where the kernel's
    value is read from (the Link attribute of the same name). None: not a plain attribute
    (the link's identity, admin state and kind are written by apply and read by rtnl into
    RawLink's own fields; the rest is not netlink's)."""

    @property
    def default(self) -> object:
        """What an absent key means: the model's default (None: left as the kernel has it)."""
        spec_field = _SPEC_FIELDS.get(self.key)
        if spec_field is None:
            return None  # a field of a Record: None, left alone
        if spec_field.default is not MISSING:
            return spec_field.default
        if spec_field.default_factory is not MISSING:
            return spec_field.default_factory()
        return None

    def read(self, link: Link) -> object:
        """Its value in the kernel."""
        return self.observed(link) if self.observed else getattr(link, self.key)

    def read_shown(self, link: Link) -> object:
        return self.observed_shown(link) if self.observed_shown else self.read(link)

    def wanted(self, spec: MacvlanSpec) -> object:
        return getattr(spec, self.key)

    def accessors(self) -> tuple[Callable[[MacvlanSpec], object], Callable[[Link], object]]:
        """`wanted` and `read` as plain functions, for loops that ask them of every interface
        (a method call costs twice an attrgetter's)."""
        return operator.attrgetter(self.key), self.observed or operator.attrgetter(self.key)

    def in_create(self, spec: MacvlanSpec) -> str | None:
        """Its part of a create line, or None when it asks for nothing."""
        value = self.wanted(spec)
        if value is None or value == frozenset():
            return None
        return show(value) if self.bare else f"{self.label or self.key} {show(value)}"


_SPEC_FIELDS = {f.name: f for f in fields(MacvlanSpec)}


def _route(to: IPNetwork | None, via: IPAddress | None = None, metric: int | None = None,
           table: int | None = None) -> Route:
    """A route from its checked values; InvalidFields names the key at fault."""
    if to is None:
        if via is None:
            raise InvalidFields([("to", "'default' needs 'via' to say its family "
                                        "(without one, write 0.0.0.0/0 or ::/0)")])
        to = ipaddress.ip_network("0.0.0.0/0" if via.version == 4 else "::/0")
    if via is not None and via.version != to.version:
        raise InvalidFields([("via", f"{via} is IPv{via.version}, but 'to' ({to}) is "
                                     f"IPv{to.version}")])
    if table is None:
        table = MAIN_TABLE
    if table in _RESERVED_TABLES:
        raise InvalidFields([("table", f"table {table} is the kernel's "
                                       f"{_RESERVED_TABLES[table]} table")])
    return Route(to, via, default_metric(to.version) if metric is None else metric, table)


_RESERVED_TABLES = {255: "local"}

ROUTE = Record((
    Setting("to", Destination(), "Where to: a prefix, an address (a host route), or `default` "
            "(its family is then that of `via`).", required=True),
    Setting("via", Gateway(), "The gateway, of the same family as `to` (absent: on link)."),
    Setting("metric", Integer(0, 2**32 - 1), "The metric (absent: 0 for IPv4, 1024 for "
            "IPv6, as the kernel gives)."),
    Setting("table", Integer(1, 2**32 - 1), "The routing table (absent: 254, main; 255 is "
            "the kernel's local table)."),
), _route)
"""A route through the interface, as one item of `routes`."""


def kind_conflict(setting: Setting, kind: Kind) -> str:
    kinds = " or ".join(str(k) for k in Kind if k in setting.kinds)
    return f"{setting.key} only applies to kind {kinds}, not {kind}"


def _passthru_boundary(old: object, new: object) -> str | None:
    if (old is Mode.PASSTHRU) != (new is Mode.PASSTHRU):
        return "the kernel cannot enter or leave passthru"
    return None


SETTINGS: tuple[Setting, ...] = (
    Setting("name", Name(), "The interface's name in its namespace; with `netns`, its "
            "identity.", Update.IDENTITY, required=True),
    Setting("parent", Name(), "The lower device, in macvland's own namespace; never changed "
            "by macvland.", Update.RECREATE, required=True,
            observed_shown=operator.attrgetter("lower")),
    Setting("mode", Choice(Mode), "How siblings on one parent reach each other.",
            recreate_when=_passthru_boundary,
            netlink=Attr(IFLA_MACVLAN_MODE, Enum(U32, {
                MACVLAN_MODE_BRIDGE: Mode.BRIDGE, MACVLAN_MODE_VEPA: Mode.VEPA,
                MACVLAN_MODE_PRIVATE: Mode.PRIVATE, MACVLAN_MODE_PASSTHRU: Mode.PASSTHRU,
                MACVLAN_MODE_SOURCE: Mode.SOURCE}), macvlan=True),
            applied="in place; into or out of passthru: recreate"),
    Setting("netns", NetnsName(), "Where the interface lives (absent: macvland's own "
            "namespace); a new value moves it.", Update.IDENTITY, applied="moved (in place)",
            absent_means="macvland's own namespace"),
    Setting("kind", Choice(Kind), "`macvtap`: a macvlan with a character device, /dev/tapN "
            "(N its ifindex), through which a VM sends and receives its frames.",
            Update.RECREATE),
    Setting("flags", SetOf(Choice(Flag)), "`nopromisc` (passthru: leave the parent's "
            "promiscuity alone), `nodst` (source: also deliver by destination MAC).",
            item_modes=FLAG_MODE, item_noun="flag",
            netlink=Attr(IFLA_MACVLAN_FLAGS, Bits(U16, {
                MACVLAN_FLAG_NOPROMISC: Flag.NOPROMISC, MACVLAN_FLAG_NODST: Flag.NODST}),
                macvlan=True)),
    Setting("source_macs", SetOf(Mac()), "The senders whose frames a source-mode interface "
            "receives.", Update.OWN, modes=frozenset({Mode.SOURCE}), label="source MACs",
            netlink=Attr(IFLA_MACVLAN_MACADDR_DATA, SOURCE_MACS, macvlan=True)),
    Setting("mac", Mac(), "The interface's MAC; two siblings cannot share one.",
            absent_means="the kernel's choice, left alone", modes=frozenset(Mode) - {Mode.PASSTHRU},
            mode_conflict="mac cannot be set in passthru mode: the kernel applies the MAC to "
            "the parent, and macvland never changes a parent", unique_per_parent=True,
            netlink=Attr(IFLA_ADDRESS, MAC)),
    Setting("mtu", Integer(68, 65535), "The MTU; the kernel refuses more than the parent's.",
            netlink=Attr(IFLA_MTU, U32, missing=0)),
    Setting("bcqueuelen", Integer(0, 2**32 - 1), "The broadcast/multicast queue length this "
            "interface asks for (the parent uses the largest request).",
            netlink=Attr(IFLA_MACVLAN_BC_QUEUE_LEN, U32, macvlan=True)),
    Setting("bc_cutoff", Integer(-(2**31), 2**31 - 1), "Parent-wide broadcast cutoff: "
            "multicast groups with at most this many listeners skip the queue.",
            parent_wide=True, applied="in place (for the whole parent)",
            # The kernel leaves it out while it is its default.
            netlink=Attr(IFLA_MACVLAN_BC_CUTOFF, S32, macvlan=True, missing=DEFAULT_BC_CUTOFF)),
    Setting("numtxqueues", Integer(1, 4096), "Transmit queues (multiqueue, e.g. one per "
            "vCPU of a VM on a macvtap); fixed when the interface is made.", Update.RECREATE,
            netlink=Attr(IFLA_NUM_TX_QUEUES, U32)),
    Setting("numrxqueues", Integer(1, 4096), "Receive queues; fixed when the interface is "
            "made.", Update.RECREATE, netlink=Attr(IFLA_NUM_RX_QUEUES, U32)),
    Setting("tap", Record((
        Setting("owner", Account("user"), "Who owns /dev/tapN (e.g. the VM's user)."),
        Setting("group", Account("group"), "Its group (e.g. kvm)."),
        Setting("mode", FileMode(), "Its permission bits (e.g. 0660)."),
    ), TapAccess), "Who may open the macvtap's /dev/tapN: applied when the device appears, "
        "and put back when it drifts.", Update.DEVICE, kinds=frozenset({Kind.MACVTAP}),
        label="tap"),
    Setting("state", Choice(State), "The administrative state; `absent`: make sure no "
            "macvlan of this name exists (deleted whoever made it; other settings ignored).",
            bare=True, observed=lambda link: State.UP if link.up else State.DOWN),
    Setting("addresses", SetOf(Prefix()), "The exact set of static addresses: missing ones "
            "are added, unlisted static ones removed. The kernel's own (IPv6 link-local, "
            "SLAAC, temporary) are never removed.", Update.LAYER,
            applied="in place, after the link (again after a move, which loses them)"),
    Setting("routes", SetOf(ROUTE), "Routes through the interface: `to` (prefix, "
            "address, or `default` with `via`), optional `via` (same family), `metric` "
            "(default 0 for IPv4, 1024 for IPv6), `table` (default 254, main). Marked "
            "`proto macvland` (77); routes without the mark are never changed or removed.",
            Update.LAYER, applied="in place, after the addresses; needs `state: up`"),
)
"""Every setting of an interface, in the order plan lines and the README show them."""

LINK_SETTINGS: tuple[tuple[Setting, Attr], ...] = tuple(
    (s, s.netlink) for s in SETTINGS if s.netlink is not None)
"""The settings that are link attributes, with theirs: rtnl's decoder and the requests of
creates and changes are made from these."""

ITEM_KEYS = tuple(s.key for s in SETTINGS)
"""The keys an interface may have, in the table's order."""

_BY_KEY = {s.key: s for s in SETTINGS}


def by_key(key: str) -> Setting:
    return _BY_KEY[key]


def mode_conflict(setting: Setting, mode: Mode) -> str:
    """The message for `setting` set in `mode`, where it means nothing."""
    if setting.mode_conflict:
        return setting.mode_conflict
    modes = " or ".join(str(m) for m in Mode if m in setting.modes)
    return f"{setting.key} only applies in mode {modes}, not {mode}"
