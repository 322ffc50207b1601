"""The link codec made from the settings' declarations, pure: what a create writes decodes to
the same values (the kernel tests prove the kernel reads it so too)."""

from __future__ import annotations

import pytest

from macvland.frozen import replace
from macvland.model import DEFAULT_BC_CUTOFF, Flag, Kind, MacvlanSpec, Mode
from macvland.nla import string
from macvland.observe import _link
from macvland.rtnl import (
    _LINK_FRAME,
    IFLA_IFALIAS,
    IFLA_IFNAME,
    LINK_KEYS,
    _LinkDecoder,
    decode_link,
    ifinfo,
    link_attrs,
)
from macvland.settings import LINK_SETTINGS, SETTINGS, Update

SPECS = [
    pytest.param(MacvlanSpec("mv0", "eth1"), id="defaults"),
    pytest.param(MacvlanSpec("mv1", "eth1", Mode.SOURCE, kind=Kind.MACVTAP,
                             flags=frozenset({Flag.NODST}),
                             source_macs=frozenset({"02:00:00:00:00:02", "02:00:00:00:00:01"}),
                             mac="02:00:00:00:00:09", mtu=1400, bcqueuelen=300, bc_cutoff=-5,
                             numtxqueues=4, numrxqueues=2), id="every-attribute"),
    pytest.param(MacvlanSpec("mv2", "eth1", Mode.PASSTHRU, flags=frozenset({Flag.NOPROMISC}),
                             bc_cutoff=0), id="passthru"),
]


def _create_body(spec: MacvlanSpec) -> bytes:
    values = [(a, value) for setting, a in LINK_SETTINGS
              if (value := setting.wanted(spec)) is not None]
    return ifinfo(9, True) + string(IFLA_IFNAME, spec.name) + link_attrs(values, spec.kind, True)


@pytest.mark.parametrize("spec", SPECS)
def test_what_a_create_writes_decodes_to_the_same_settings(spec: MacvlanSpec) -> None:
    raw = decode_link(memoryview(_create_body(spec)))
    assert (raw.ifindex, raw.name, raw.up, raw.kind) == (9, spec.name, True, spec.kind)
    absent = {"mtu": 0, "bc_cutoff": DEFAULT_BC_CUTOFF}  # what the kernel's silence means
    for key in LINK_KEYS:
        wanted = getattr(spec, key)
        assert raw.value(key) == (absent.get(key) if wanted is None else wanted), key


def test_another_kinds_data_is_not_read_as_a_macvlans() -> None:
    # veth's IFLA_INFO_DATA holds VETH_INFO_PEER under number 1, IFLA_MACVLAN_MODE's.
    mode = next(a for s, a in LINK_SETTINGS if s.key == "mode")
    body = ifinfo(3) + link_attrs([(mode, Mode.VEPA)], "veth")
    raw = decode_link(memoryview(body))
    assert (raw.kind, raw.value("mode"), raw.value("bc_cutoff")) == ("veth", None, None)


def test_every_in_place_setting_goes_out_in_the_link_request() -> None:
    # apply._change writes each changed field's attribute; the admin state is the header's.
    for setting in SETTINGS:
        if setting.update is Update.IN_PLACE:
            assert setting.netlink is not None or setting.key == "state", setting.key


IFLA_QDISC = 6


# --- the decoder's shapes: a message like one seen before is read without a walk ---------

def _fresh() -> _LinkDecoder:
    return _LinkDecoder(_LINK_FRAME, (a for _, a in LINK_SETTINGS))


def _macvlan_body(name: str, kind: str = "macvlan", alias: str | None = None) -> bytes:
    mode = next(a for s, a in LINK_SETTINGS if s.key == "mode")
    own = string(IFLA_IFALIAS, alias) if alias else b""
    return ifinfo(7, True) + string(IFLA_IFNAME, name) + own + link_attrs(
        [(mode, Mode.VEPA)], kind, True)


def test_a_known_shape_reads_what_a_walk_reads() -> None:
    decoder = _fresh()
    first = decoder.decode(_macvlan_body("mv0"))
    assert len(decoder.shapes) == 1
    again = decoder.decode(_macvlan_body("mv1"))  # same shape: read by it
    assert len(decoder.shapes) == 1
    assert again == _fresh().decode(_macvlan_body("mv1")) != first
    assert (again.name, again.kind, again.value("mode")) == ("mv1", "macvlan", Mode.VEPA)


def _bumped(key: str, value: object) -> object:
    """Another value of the same size in a message (a number's; names and MACs kept)."""
    if key == "mode":
        return Mode.PRIVATE if value is not Mode.PRIVATE else Mode.VEPA
    if key == "flags":
        assert isinstance(value, frozenset)
        return frozenset(Flag) - value  # the other bits
    return value + 1 if isinstance(value, int) else value


@pytest.mark.parametrize("spec", SPECS)
def test_a_known_shape_reads_each_number_into_its_own_slot(spec: MacvlanSpec) -> None:
    """A known shape reads all numbers of a message in one struct call: each must land in its
    setting's slot, an enum's and a set of bits' made from it, as a walk reads them."""
    decoder = _fresh()
    decoder.decode(_create_body(spec))
    other = replace(spec, name=spec.name[:-1] + "9",
                    **{key: _bumped(key, getattr(spec, key)) for key in LINK_KEYS})
    body = _create_body(other)
    raw = decoder.decode(body)
    assert len(decoder.shapes) == 1, "read by the shape learned from the first"
    assert raw == _fresh().decode(body)
    assert raw.name == other.name
    for key in LINK_KEYS:
        if getattr(spec, key) is not None:
            assert raw.value(key) == getattr(other, key), key


def test_another_kind_of_the_same_shape_is_walked() -> None:
    """"macvlan" and "nlmon00" are as long: the headers match, the kind read does not, and
    another kind's IFLA_INFO_DATA must not be read as a macvlan's."""
    decoder = _fresh()
    decoder.decode(_macvlan_body("mv0"))
    other = decoder.decode(_macvlan_body("mv1", kind="nlmon00"))
    assert (other.kind, other.value("mode")) == ("nlmon00", None)
    assert decoder.decode(_macvlan_body("mv2")).value("mode") == Mode.VEPA


def test_a_message_with_other_headers_at_the_same_size_is_walked() -> None:
    """Same size, same first header, but a qdisc where the other had its alias: the shape
    learned from the first must not read the second's qdisc as an alias."""
    decoder = _fresh()
    assert decoder.decode(_macvlan_body("mv0", alias="macvland")).alias == "macvland"
    with_qdisc = _macvlan_body("mv0", alias="macvland").replace(
        string(IFLA_IFALIAS, "macvland"), string(IFLA_QDISC, "noqueue!"))
    assert len(with_qdisc) == len(_macvlan_body("mv0", alias="macvland"))
    read = decoder.decode(with_qdisc)
    assert read == _fresh().decode(with_qdisc)
    assert (read.alias, read.value("mode")) == (None, Mode.VEPA)


@pytest.mark.parametrize("spec", SPECS)
def test_a_link_holds_each_decoded_setting_under_its_own_name(spec: MacvlanSpec) -> None:
    """observe builds a Link by position, for speed: each value must land in its own field."""
    raw = decode_link(memoryview(_create_body(spec)))
    raw = replace(raw, alias="owned", link=2)
    link = _link(raw, "ns1", "eth1", "eth1@if2", "mv@if2")
    assert (link.netns, link.name, link.ifindex, link.kind, link.up, link.alias) == (
        "ns1", spec.name, 9, spec.kind, True, "owned")
    assert (link.parent, link.lower, link.shown_as) == ("eth1", "eth1@if2", "mv@if2")
    for key in LINK_KEYS:
        assert getattr(link, key) == raw.value(key), key
    # Settings of equal values (several None) could trade places unseen: distinct ones cannot.
    marked = _link(replace(raw, settings=tuple(f"<{key}>" for key in LINK_KEYS)), "ns1",
                   "eth1", "eth1@if2", "mv@if2")
    assert {key: getattr(marked, key) for key in LINK_KEYS} == {k: f"<{k}>" for k in LINK_KEYS}


def test_a_link_of_another_kind_has_no_parent() -> None:
    raw = replace(decode_link(memoryview(_create_body(MacvlanSpec("mv0", "eth1")))), kind="veth")
    assert _link(raw, None, "eth1", "eth1", "mv0").parent is None
