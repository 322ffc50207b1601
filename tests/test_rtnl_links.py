"""The link codec made from the settings' declarations, pure: what a create writes decodes to
the same values (the kernel tests prove the kernel reads it so too)."""

from __future__ import annotations

import pytest

from macvland.model import DEFAULT_BC_CUTOFF, Flag, Kind, MacvlanSpec, Mode
from macvland.nla import string
from macvland.rtnl import IFLA_IFNAME, LINK_KEYS, decode_link, ifinfo, link_attrs
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


@pytest.mark.parametrize("spec", SPECS)
def test_what_a_create_writes_decodes_to_the_same_settings(spec: MacvlanSpec) -> None:
    values = [(a, value) for setting, a in LINK_SETTINGS
              if (value := setting.wanted(spec)) is not None]
    body = ifinfo(9, True) + string(IFLA_IFNAME, spec.name) + link_attrs(values, spec.kind, True)
    raw = decode_link(memoryview(body))
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
