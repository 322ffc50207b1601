"""The JSON Schema and the parser agree on a corpus of good and bad specs, wherever a schema can
judge; the cases where it cannot are listed with the reason.

Each spec goes through the parser (parse_spec) and, loaded the way an editor loads YAML (the
YAML 1.2 core schema, as the YAML language server does), through a real JSON Schema validator
(jsonschema, draft 2020-12).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from macvland.errors import SpecError
from macvland.schema import json_schema
from macvland.spec import parse_spec

ROOT = Path(__file__).resolve().parent.parent


class Yaml12Loader(yaml.SafeLoader):
    """Safe loading with the YAML 1.2 core schema's scalars: no `yes`/`off` booleans, no
    base-60 or leading-zero octal integers (what editors' YAML servers read)."""


Yaml12Loader.yaml_implicit_resolvers = {}
for tag, pattern, first in (
    ("bool", r"^(?:true|True|TRUE|false|False|FALSE)$", "tTfF"),
    ("int", r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$", "-+0123456789"),
    ("float", r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
              r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$", "-+0123456789."),
    ("null", r"^(?:~|null|Null|NULL|)$", "~nN\0"),
):
    Yaml12Loader.add_implicit_resolver(f"tag:yaml.org,2002:{tag}", re.compile(pattern),
                                       list(first))


def _core_int(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> int:
    text = str(loader.construct_scalar(node))
    return int(text, 0) if text[:2] in ("0o", "0x") else int(text, 10)


Yaml12Loader.add_constructor("tag:yaml.org,2002:int", _core_int)

VALIDATOR = jsonschema.Draft202012Validator(json_schema())

HEAD = "version: 1\ninterfaces:\n"


def one(*lines: str, name: str = "mv0", parent: str = "eth0") -> str:
    """A spec of one interface with `lines` added to it."""
    return HEAD + f"  - name: {name}\n    parent: {parent}\n" + "".join(
        f"    {line}\n" for line in lines)


def many(*items: str) -> str:
    """A spec of several interfaces, each written as `key: value, key: value`."""
    return HEAD + "".join(f"  - {{{item}}}\n" for item in items)


@dataclass(frozen=True)
class Case:
    text: str
    parser: bool
    """Whether the parser accepts it."""
    schema: bool | None = None
    """Whether the schema accepts it, when that differs from the parser (None: the same)."""
    why: str = ""
    """Why the schema judges it differently."""


AGREE = {
    # --- good specs
    "no_interfaces": Case(HEAD.replace("interfaces:\n", "interfaces: []\n"), True),
    "minimal": Case(one(), True),
    "every_common_field": Case(one("mode: vepa", "netns: web", "mac: 02:42:0a:00:00:05",
                                   "mtu: 1500", "state: down", "bcqueuelen: 1000",
                                   "bc_cutoff: -1"), True),
    "passthru_nopromisc": Case(one("mode: passthru", "flags: [nopromisc]"), True),
    "source_macs_nodst": Case(one("mode: source", "flags: [nodst]",
                                  "source_macs: [02:00:00:00:00:01, 02:00:00:00:00:02]"), True),
    "empty_source_macs_in_bridge_mode": Case(one("source_macs: []"), True),
    "netns_absolute_path": Case(one("netns: /proc/1/ns/net"), True),
    "netns_null": Case(one("netns: ~"), True),
    "state_absent": Case(one("state: absent"), True),
    "mtu_smallest": Case(one("mtu: 68"), True),
    "mtu_largest": Case(one("mtu: 65535"), True),
    "mac_like_base_60": Case(one("mac: 12:00:00:00:00:01"), True),
    "quoted_digit_name": Case(one(name='"0123"'), True),
    "two_namespaces_same_name": Case(many("name: mv0, parent: eth0",
                                          "name: mv0, parent: eth0, netns: red"), True),
    # --- the document
    "empty_document": Case("", False),
    "missing_version": Case("interfaces: []\n", False),
    "version_2": Case("version: 2\ninterfaces: []\n", False),
    "version_as_string": Case('version: "1"\ninterfaces: []\n', False),
    "missing_interfaces": Case("version: 1\n", False),
    "interfaces_null": Case("version: 1\ninterfaces:\n", False),
    "unknown_top_key": Case("version: 1\ninterfaces: []\ninterface: []\n", False),
    "item_not_a_mapping": Case(HEAD + "  - mv0\n", False),
    # --- keys
    "missing_name": Case(HEAD + "  - parent: eth0\n", False),
    "missing_parent": Case(HEAD + "  - name: mv0\n", False),
    "unknown_key": Case(one("mdoe: bridge"), False),
    # --- names
    "name_too_long": Case(one(name="abcdefghijklmnop"), False),
    "name_with_slash": Case(one(name="mv/0"), False),
    "name_with_colon": Case(one(name='"eth0:1"'), False),
    "name_with_space": Case(one(name='"mv 0"'), False),
    "name_dot_dot": Case(one(name=".."), False),
    "name_empty": Case(one(name='""'), False),
    "name_null": Case(one(name=""), False),
    "parent_with_slash": Case(one(parent="eth/0"), False),
    # --- mode, state, flags
    "mode_misspelt": Case(one("mode: brige"), False),
    "mode_list": Case(one("mode: [bridge]"), False),
    "state_off": Case(one("state: off"), False),
    "flags_not_a_list": Case(one("mode: source", "flags: nodst"), False),
    "flag_misspelt": Case(one("mode: passthru", "flags: [nopromsic]"), False),
    "nodst_in_bridge_mode": Case(one("flags: [nodst]"), False),
    "nodst_without_mode": Case(one("mode: passthru", "flags: [nodst]"), False),
    "nopromisc_in_source_mode": Case(one("mode: source", "flags: [nodst, nopromisc]"), False),
    "nopromisc_in_default_mode": Case(one("flags: [nopromisc]"), False),
    "flag_listed_twice": Case(one("mode: source", "flags: [nodst, nodst]"), False),
    # --- MACs
    "source_macs_in_bridge_mode": Case(one("source_macs: [02:00:00:00:00:0a]"), False),
    "source_macs_in_default_mode_vepa": Case(one("mode: vepa",
                                                 "source_macs: [02:00:00:00:00:0a]"), False),
    "source_mac_listed_twice": Case(one("mode: source", "source_macs: [02:00:00:00:00:01, "
                                        "02:00:00:00:00:01]"), False),
    "source_mac_bad": Case(one("mode: source", "source_macs: [02:00:00:00:00]"), False),
    "mac_in_passthru": Case(one("mode: passthru", "mac: 02:00:00:00:00:01"), False),
    "mac_multicast": Case(one("mac: 03:00:00:00:00:01"), False),
    "mac_zero": Case(one("mac: 00:00:00:00:00:00"), False),
    "mac_dashes": Case(one("mac: 02-00-00-00-00-01"), False),
    # --- numbers
    "mtu_too_small": Case(one("mtu: 67"), False),
    "mtu_too_large": Case(one("mtu: 65536"), False),
    "mtu_string": Case(one('mtu: "1500"'), False),
    "mtu_null": Case(one("mtu:"), False),
    "bcqueuelen_negative": Case(one("bcqueuelen: -1"), False),
    "bc_cutoff_too_large": Case(one("bc_cutoff: 2147483648"), False),
    # --- macvtap
    "macvtap_with_everything": Case(one("kind: macvtap", "mode: source", "flags: [nodst]",
                                        "source_macs: [02:00:00:00:00:01]", "numtxqueues: 4",
                                        "numrxqueues: 4",
                                        "tap: {owner: nobody, group: 65534, mode: '0660'}"),
                                    True),
    "tap_with_a_mode_yaml_reads_as_a_number": Case(one("kind: macvtap", "tap: {mode: 660}"),
                                                   True),
    "kind_misspelt": Case(one("kind: macvtab"), False),
    "tap_on_a_macvlan": Case(one("tap: {owner: nobody}"), False),
    "tap_on_the_default_kind": Case(one("kind: macvlan", "tap: {mode: '0660'}"), False),
    "tap_unknown_key": Case(one("kind: macvtap", "tap: {ownr: nobody}"), False),
    "tap_not_a_mapping": Case(one("kind: macvtap", "tap: nobody"), False),
    "tap_mode_not_octal": Case(one("kind: macvtap", "tap: {mode: '0680'}"), False),
    "tap_owner_with_space": Case(one("kind: macvtap", "tap: {owner: 'a b'}"), False),
    "numtxqueues_zero": Case(one("numtxqueues: 0"), False),
    "numrxqueues_too_many": Case(one("numrxqueues: 4097"), False),
    # --- netns
    "netns_relative_path": Case(one("netns: run/netns/blue"), False),
    "netns_dot": Case(one("netns: ."), False),
    "netns_empty": Case(one('netns: ""'), False),
    "netns_the_netns_directory": Case(one("netns: /run/netns/"), False),
    "netns_root": Case(one("netns: /"), False),
    "netns_list": Case(one("netns: [blue]"), False),
    # --- addresses and routes
    "addresses_and_routes": Case(one("addresses: [192.0.2.10/24, '2001:db8::10/64']",
                                     "routes: [{to: default, via: 192.0.2.1},",
                                     "  {to: '2001:db8:1::/48', via: 'fe80::1', metric: 5,"
                                     " table: 100}, {to: 203.0.113.7}]"), True),
    "empty_addresses_and_routes": Case(one("addresses: []", "routes: []"), True),
    "address_without_prefix": Case(one("addresses: [192.0.2.10]"), False),
    "address_not_a_list": Case(one("addresses: 192.0.2.10/24"), False),
    "route_not_a_mapping": Case(one("routes: [10.0.0.0/8]"), False),
    "route_unknown_key": Case(one("routes: [{to: 10.0.0.0/8, gw: 192.0.2.1}]"), False),
    "route_without_to": Case(one("routes: [{via: 192.0.2.1}]"), False),
    "route_metric_negative": Case(one("routes: [{to: 10.0.0.0/8, metric: -1}]"), False),
    "route_table_zero": Case(one("routes: [{to: 10.0.0.0/8, table: 0}]"), False),
}

WHOLE_SPEC = "a JSON Schema judges each interface alone; this rule is across interfaces"
BEYOND = {
    "same_name_twice": Case(many("name: mv0, parent: eth0", "name: mv0, parent: eth1"), False,
                            True, WHOLE_SPEC),
    "passthru_with_a_sibling": Case(many("name: mv0, parent: eth0, mode: passthru",
                                         "name: mv1, parent: eth0"), False, True, WHOLE_SPEC),
    "bc_cutoff_disagrees": Case(many("name: mv0, parent: eth0, bc_cutoff: 1",
                                     "name: mv1, parent: eth0, bc_cutoff: 2"), False, True,
                                WHOLE_SPEC),
    "mac_twice_on_a_parent": Case(many("name: mv0, parent: eth0, mac: 02:00:00:00:00:01",
                                       "name: mv1, parent: eth0, mac: 02:00:00:00:00:01"),
                                  False, True, WHOLE_SPEC),
    "duplicate_key": Case(one("mode: vepa", "mode: bridge"), False, True,
                          "the YAML loader keeps the last of two equal keys before any schema "
                          "sees the document"),
    "name_too_long_in_bytes": Case(one(name="ééééééééé"), False, True,
                                   "maxLength counts characters; the kernel counts bytes"),
    "mtu_hexadecimal": Case(one("mtu: 0x5dc"), False, True,
                            "YAML reads 0x5dc as 1500; the parser takes only decimal numbers"),
    "mtu_float": Case(one("mtu: 1500.0"), False, True,
                      "JSON Schema counts 1500.0 as an integer; the parser wants it written as "
                      "one"),
    "source_macs_differ_in_case": Case(one("mode: source", "source_macs: [02:00:00:00:00:aa, "
                                           "02:00:00:00:00:AA]"), False, True,
                                       "uniqueItems compares strings; the parser compares "
                                       "MACs"),
    "tap_mode_unquoted_with_a_digit_8": Case(one("kind: macvtap", "tap: {mode: 0680}"), False,
                                             True, "YAML 1.2 reads 0680 as the number 680; a "
                                             "schema cannot see the digits of a number"),
    "unquoted_digit_name": Case(one(name="0123"), True, False,
                                "YAML 1.2 reads 0123 as the number 123; the parser takes it "
                                "as written, the schema asks for quotes"),
    "unquoted_boolean_name": Case(one(name="true"), True, False,
                                  "YAML reads true as a boolean; the parser takes it as written"),
    "address_out_of_range": Case(one("addresses: [192.0.2.300/24]"), False, True,
                                 "the schema checks an address's shape, the parser its value"),
    "address_is_the_network": Case(one("addresses: [192.0.2.0/24]"), False, True,
                                    "address arithmetic is the parser's"),
    "route_host_bits": Case(one("routes: [{to: 10.0.0.1/8}]"), False, True,
                            "address arithmetic is the parser's"),
    "route_via_of_another_family": Case(one("routes: [{to: 10.0.0.0/8, via: '2001:db8::1'}]"),
                                        False, True, "the schema does not compare families"),
    "route_default_without_via": Case(one("routes: [{to: default}]"), False, True,
                                      "the schema does not tie via to the value of to"),
    "routes_while_down": Case(one("state: down", "routes: [{to: 10.0.0.0/8}]"), False, True,
                              "the schema does not tie routes to state"),
    "route_twice_in_a_namespace": Case(many("name: mv0, parent: eth0, routes: [{to: 10.0.0.0/8}]",
                                            "name: mv1, parent: eth0, routes: [{to: 10.0.0.0/8}]"),
                                       False, True, WHOLE_SPEC),
}


def parser_accepts(text: str) -> bool:
    try:
        parse_spec(text, "corpus.yaml")
    except SpecError:
        return False
    return True


def schema_accepts(text: str) -> bool:
    document: Any = yaml.load(text, Loader=Yaml12Loader)  # a SafeLoader: safe
    return VALIDATOR.is_valid(document)


def test_the_schema_is_a_valid_draft_2020_12_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(json_schema())


@pytest.mark.parametrize("case", AGREE.values(), ids=AGREE.keys())
def test_parser_and_schema_agree(case: Case) -> None:
    assert parser_accepts(case.text) is case.parser
    assert schema_accepts(case.text) is case.parser


@pytest.mark.parametrize("case", BEYOND.values(), ids=BEYOND.keys())
def test_what_the_schema_cannot_judge(case: Case) -> None:
    assert case.why
    assert parser_accepts(case.text) is case.parser
    assert schema_accepts(case.text) is case.schema


def test_the_annotated_example_validates_with_both() -> None:
    text = (ROOT / "etc" / "macvland" / "macvland.yaml").read_text()
    assert parser_accepts(text)
    assert schema_accepts(text)
