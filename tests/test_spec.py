"""Tests of macvland.spec: YAML text to DesiredState, and every problem at its exact place."""

from __future__ import annotations

import gc
import hashlib
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from macvland.errors import SpecError, SpecProblem
from macvland.intake import load_spec, read_spec
from macvland.model import DesiredState, Flag, Kind, MacvlanSpec, Mode, State, TapAccess
from macvland.spec import ParseMemo, parse_source, parse_spec

FILE = "macvland.yaml"

# One interface whose first line is line 3; added keys start on line 5, column 5, and a
# value after `    key: ` starts at column 7 + len(key).
ONE = "version: 1\ninterfaces:\n  - name: mv0\n    parent: eth0\n"

# Two interfaces on eth0: the second item starts on line 5, column 5.
TWO = ONE + "  - name: mv1\n    parent: eth0\n"


def problems_of(text: str | bytes) -> list[SpecProblem]:
    with pytest.raises(SpecError) as caught:
        parse_spec(text, FILE)
    return caught.value.problems


def parse(text: str) -> tuple[MacvlanSpec, ...]:
    return parse_spec(text, FILE).interfaces


# (id, YAML, line, column, path, a part of the message)
ERRORS = [
    # --- the document
    ("empty_file", "", 1, 1, "", "the document is empty"),
    ("only_comments", "# nothing yet\n", 1, 1, "", "the document is empty"),
    ("only_document_marker", "---\n", 1, 1, "", "the document is empty"),
    (
        "yaml_syntax_error",
        "version: 1\ninterfaces: [\n",
        3,
        1,
        "",
        "expected the node content, but found '<stream end>'",
    ),
    ("yaml_bad_indent", "version: 1\n  interfaces: []\n", 2, 13, "", "mapping values are not"),
    ("control_character", "version: 1\x01\n", 1, 11, "", "unacceptable character #x0001"),
    ("not_utf8", b"version: 1\ninter\xfffaces: []\n", 2, 6, "", "not valid UTF-8"),
    (
        "two_documents",
        "version: 1\ninterfaces: []\n---\nversion: 1\ninterfaces: []\n",
        4,
        1,
        "",
        "found a second YAML document",
    ),
    ("top_is_list", "- name: mv0\n", 1, 1, "", "expected a mapping with keys"),
    ("missing_version", "interfaces: []\n", 1, 1, "", "missing required key 'version'"),
    (
        "unsupported_version",
        "version: 2\ninterfaces: []\n",
        1,
        10,
        "version",
        "unsupported version 2 (this macvland reads version 1)",
    ),
    (
        "version_as_string",
        'version: "1"\ninterfaces: []\n',
        1,
        10,
        "version",
        "expected an integer, got string '1'",
    ),
    ("missing_interfaces", "version: 1\n", 1, 1, "", "must say 'interfaces: []' explicitly"),
    (
        "interfaces_null",
        "version: 1\ninterfaces:\n",
        2,
        12,
        "interfaces",
        "expected a list, got null (write 'interfaces: []' for none)",
    ),
    (
        "interfaces_mapping",
        "version: 1\ninterfaces: {name: mv0}\n",
        2,
        13,
        "interfaces",
        "expected a list, got a mapping",
    ),
    (
        "unknown_top_key",
        "version: 1\ninterfaces: []\ninterface: []\n",
        3,
        1,
        "interface",
        "unknown key 'interface' (did you mean 'interfaces'?)",
    ),
    (
        "duplicate_top_key",
        "version: 1\ninterfaces: []\nversion: 1\n",
        3,
        1,
        "version",
        "duplicate key 'version' (first on line 1)",
    ),
    # --- the shape of an item
    (
        "item_not_mapping",
        "version: 1\ninterfaces:\n  - mv0\n",
        3,
        5,
        "interfaces[0]",
        "expected a mapping, got string 'mv0'",
    ),
    (
        "missing_name",
        "version: 1\ninterfaces:\n  - parent: eth0\n",
        3,
        5,
        "interfaces[0]",
        "missing required key 'name'",
    ),
    (
        "missing_parent",
        "version: 1\ninterfaces:\n  - name: mv0\n",
        3,
        5,
        "interfaces[0]",
        "missing required key 'parent'",
    ),
    (
        "unknown_key",
        ONE + "    mdoe: bridge\n",
        5,
        5,
        "interfaces[0].mdoe",
        "unknown key 'mdoe' (did you mean 'mode'?)",
    ),
    (
        "unknown_key_without_match",
        ONE + "    colour: red\n",
        5,
        5,
        "interfaces[0].colour",
        "unknown key 'colour' (expected one of name, parent, mode, netns,",
    ),
    (
        "key_not_a_string",
        ONE + "    [a, b]: 1\n",
        5,
        5,
        "interfaces[0]",
        "expected a key name, got a list",
    ),
    (
        "duplicate_item_key",
        ONE + "    name: mv1\n",
        5,
        5,
        "interfaces[0].name",
        "duplicate key 'name' (first on line 3)",
    ),
    # --- name and parent
    (
        "name_too_long",
        "version: 1\ninterfaces:\n  - name: abcdefghijklmnop\n    parent: eth0\n",
        3,
        11,
        "interfaces[0].name",
        "'abcdefghijklmnop' is not a valid interface name: it is 16 bytes long",
    ),
    (
        "name_too_long_in_bytes",
        "version: 1\ninterfaces:\n  - name: ééééééééé\n    parent: eth0\n",
        3,
        11,
        "interfaces[0].name",
        "it is 18 bytes long",
    ),
    (
        "name_with_slash",
        "version: 1\ninterfaces:\n  - name: mv/0\n    parent: eth0\n",
        3,
        11,
        "interfaces[0].name",
        "'mv/0' is not a valid interface name: it contains '/'",
    ),
    (
        "name_with_colon",
        "version: 1\ninterfaces:\n  - name: eth0:1\n    parent: eth0\n",
        3,
        11,
        "interfaces[0].name",
        "it contains ':'",
    ),
    (
        "name_with_space",
        "version: 1\ninterfaces:\n  - name: mv 0\n    parent: eth0\n",
        3,
        11,
        "interfaces[0].name",
        "it contains ' '",
    ),
    (
        "name_dot_dot",
        "version: 1\ninterfaces:\n  - name: ..\n    parent: eth0\n",
        3,
        11,
        "interfaces[0].name",
        "'.' and '..' are reserved",
    ),
    (
        "name_empty",
        'version: 1\ninterfaces:\n  - name: ""\n    parent: eth0\n',
        3,
        11,
        "interfaces[0].name",
        "'' is not a valid interface name: it is empty",
    ),
    (
        "name_null",
        "version: 1\ninterfaces:\n  - name:\n    parent: eth0\n",
        3,
        10,
        "interfaces[0].name",
        "expected a string, got null",
    ),
    (
        "name_mapping",
        "version: 1\ninterfaces:\n  - name: {first: mv}\n    parent: eth0\n",
        3,
        11,
        "interfaces[0].name",
        "expected a string, got a mapping",
    ),
    (
        "parent_with_slash",
        "version: 1\ninterfaces:\n  - name: mv0\n    parent: eth/0\n",
        4,
        13,
        "interfaces[0].parent",
        "'eth/0' is not a valid interface name: it contains '/'",
    ),
    # --- mode and state
    (
        "mode_misspelt",
        ONE + "    mode: brige\n",
        5,
        11,
        "interfaces[0].mode",
        "'brige' is not one of bridge, vepa, private, passthru, source (did you mean 'bridge'?)",
    ),
    (
        "mode_capitalised",
        ONE + "    mode: VEPA\n",
        5,
        11,
        "interfaces[0].mode",
        "(did you mean 'vepa'?)",
    ),
    ("mode_null", ONE + "    mode:\n", 5, 10, "interfaces[0].mode", "expected a string, got null"),
    (
        "mode_list",
        ONE + "    mode: [bridge]\n",
        5,
        11,
        "interfaces[0].mode",
        "expected a string, got a list",
    ),
    (
        "state_off_is_not_a_boolean",
        ONE + "    state: off\n",
        5,
        12,
        "interfaces[0].state",
        "'off' is not one of up, down, absent",
    ),
    (
        "state_null",
        ONE + "    state:\n",
        5,
        11,
        "interfaces[0].state",
        "expected a string, got null",
    ),
    # --- netns
    (
        "netns_relative_path",
        ONE + "    netns: run/netns/blue\n",
        5,
        12,
        "interfaces[0].netns",
        "'run/netns/blue' is neither a namespace name nor an absolute path",
    ),
    (
        "netns_the_netns_directory",
        ONE + "    netns: /run/netns/\n",
        5,
        12,
        "interfaces[0].netns",
        "'/run/netns/' is a directory; name a namespace file in it",
    ),
    (
        "netns_dot",
        ONE + "    netns: .\n",
        5,
        12,
        "interfaces[0].netns",
        "'.' is not a valid namespace name",
    ),
    (
        "netns_empty",
        ONE + '    netns: ""\n',
        5,
        12,
        "interfaces[0].netns",
        "netns must not be empty",
    ),
    (
        "netns_list",
        ONE + "    netns: [blue]\n",
        5,
        12,
        "interfaces[0].netns",
        "expected a string, got a list",
    ),
    # --- flags
    (
        "flags_not_a_list",
        ONE + "    mode: source\n    flags: nodst\n",
        6,
        12,
        "interfaces[0].flags",
        "expected a list, got string 'nodst'",
    ),
    (
        "flags_null",
        ONE + "    flags:\n",
        5,
        11,
        "interfaces[0].flags",
        "expected a list, got null",
    ),
    (
        "flag_misspelt",
        ONE + "    mode: passthru\n    flags: [nopromsic]\n",
        6,
        13,
        "interfaces[0].flags[0]",
        "'nopromsic' is not one of nopromisc, nodst (did you mean 'nopromisc'?)",
    ),
    (
        "flag_nodst_outside_source",
        ONE + "    flags: [nodst]\n",
        5,
        13,
        "interfaces[0].flags[0]",
        "flag 'nodst' only applies in mode source, not bridge",
    ),
    (
        "flag_nopromisc_outside_passthru",
        ONE + "    mode: source\n    flags: [nodst, nopromisc]\n",
        6,
        20,
        "interfaces[0].flags[1]",
        "flag 'nopromisc' only applies in mode passthru, not source",
    ),
    (
        "flag_listed_twice",
        ONE + "    mode: source\n    flags: [nodst, nodst]\n",
        6,
        20,
        "interfaces[0].flags[1]",
        "'nodst' is listed twice (first on line 6)",
    ),
    # --- source_macs
    (
        "source_macs_outside_source_mode",
        ONE + "    source_macs: [02:00:00:00:00:0a]\n",
        5,
        5,
        "interfaces[0].source_macs",
        "source_macs only applies in mode source, not bridge",
    ),
    (
        "source_macs_not_a_list",
        ONE + "    mode: source\n    source_macs: 12:00:00:00:00:01\n",
        6,
        18,
        "interfaces[0].source_macs",
        "expected a list, got integer '12:00:00:00:00:01'",
    ),
    (
        "source_mac_bad_syntax",
        ONE + "    mode: source\n    source_macs: [02:00:00:00:00:0a, 02-00-00-00-00-0b]\n",
        6,
        38,
        "interfaces[0].source_macs[1]",
        "'02-00-00-00-00-0b' is not a MAC address",
    ),
    (
        "source_mac_listed_twice_in_other_case",
        ONE + "    mode: source\n    source_macs: [02:00:00:00:00:AA, 02:00:00:00:00:aa]\n",
        6,
        38,
        "interfaces[0].source_macs[1]",
        "'02:00:00:00:00:aa' is listed twice (first on line 6)",
    ),
    (
        "source_mac_multicast",
        ONE + "    mode: source\n    source_macs: [01:00:5e:00:00:01]\n",
        6,
        19,
        "interfaces[0].source_macs[0]",
        "01:00:5e:00:00:01 is a multicast address",
    ),
    # --- mac
    (
        "mac_five_octets",
        ONE + "    mac: 02:00:00:00:01\n",
        5,
        10,
        "interfaces[0].mac",
        "'02:00:00:00:01' is not a MAC address (expected six hex pairs",
    ),
    (
        "mac_not_hex",
        ONE + "    mac: 02:00:00:00:00:0g\n",
        5,
        10,
        "interfaces[0].mac",
        "is not a MAC address",
    ),
    (
        "mac_multicast",
        ONE + "    mac: 03:00:00:00:00:01\n",
        5,
        10,
        "interfaces[0].mac",
        "03:00:00:00:00:01 is a multicast address; an interface needs a unicast MAC",
    ),
    (
        "mac_all_zero",
        ONE + "    mac: 00:00:00:00:00:00\n",
        5,
        10,
        "interfaces[0].mac",
        "00:00:00:00:00:00 is not a usable MAC address",
    ),
    (
        "mac_in_passthru_mode",
        ONE + "    mode: passthru\n    mac: 02:00:00:00:00:01\n",
        6,
        5,
        "interfaces[0].mac",
        "the kernel applies the MAC to the parent, and macvland never changes a parent",
    ),
    # --- integers
    (
        "mtu_as_string",
        ONE + '    mtu: "1500"\n',
        5,
        10,
        "interfaces[0].mtu",
        "expected an integer, got string '1500'",
    ),
    (
        "mtu_as_boolean",
        ONE + "    mtu: yes\n",
        5,
        10,
        "interfaces[0].mtu",
        "expected an integer, got boolean 'yes'",
    ),
    (
        "mtu_as_float",
        ONE + "    mtu: 1500.0\n",
        5,
        10,
        "interfaces[0].mtu",
        "expected an integer, got float '1500.0'",
    ),
    ("mtu_null", ONE + "    mtu:\n", 5, 9, "interfaces[0].mtu", "expected an integer, got null"),
    (
        "mtu_octal_looking",
        ONE + "    mtu: 01500\n",
        5,
        10,
        "interfaces[0].mtu",
        "expected a decimal integer, got '01500'",
    ),
    (
        "mtu_too_small",
        ONE + "    mtu: 67\n",
        5,
        10,
        "interfaces[0].mtu",
        "67 is out of range 68..65535",
    ),
    (
        "mtu_too_large",
        ONE + "    mtu: 65536\n",
        5,
        10,
        "interfaces[0].mtu",
        "65536 is out of range 68..65535",
    ),
    (
        "bcqueuelen_negative",
        ONE + "    bcqueuelen: -1\n",
        5,
        17,
        "interfaces[0].bcqueuelen",
        "-1 is out of range 0..4294967295",
    ),
    (
        "bcqueuelen_too_large",
        ONE + "    bcqueuelen: 4294967296\n",
        5,
        17,
        "interfaces[0].bcqueuelen",
        "4294967296 is out of range 0..4294967295",
    ),
    (
        "bc_cutoff_too_large",
        ONE + "    bc_cutoff: 2147483648\n",
        5,
        16,
        "interfaces[0].bc_cutoff",
        "2147483648 is out of range -2147483648..2147483647",
    ),
    (
        "bc_cutoff_too_small",
        ONE + "    bc_cutoff: -2147483649\n",
        5,
        16,
        "interfaces[0].bc_cutoff",
        "-2147483649 is out of range -2147483648..2147483647",
    ),
    # --- across interfaces: at the second item, naming the first's place
    (
        "same_name_twice",
        ONE + "  - name: mv0\n    parent: eth1\n",
        5,
        5,
        "interfaces[1]",
        "interface 'mv0' in namespace host is already defined by interfaces[0] (line 3)",
    ),
    (
        "same_name_in_one_namespace_spelt_two_ways",
        ONE + "    netns: blue\n  - name: mv0\n    parent: eth1\n    netns: /run/netns/blue\n",
        6,
        5,
        "interfaces[1]",
        "interface 'mv0' in namespace blue is already defined by interfaces[0] (line 3)",
    ),
    (
        "passthru_after_a_sibling",
        TWO + "    mode: passthru\n",
        5,
        5,
        "interfaces[1]",
        "passthru interface 'mv1' shares parent 'eth0' with 'mv0' at interfaces[0] (line 3)",
    ),
    (
        "sibling_after_passthru",
        ONE + "    mode: passthru\n  - name: mv1\n    parent: eth0\n",
        6,
        5,
        "interfaces[1]",
        "parent 'eth0' already has the passthru interface 'mv0' at interfaces[0] (line 3)",
    ),
    (
        "bc_cutoff_disagrees",
        ONE + "    bc_cutoff: 2\n  - name: mv1\n    parent: eth0\n    bc_cutoff: 3\n",
        6,
        5,
        "interfaces[1]",
        "bc_cutoff 3 disagrees with bc_cutoff 2 of interfaces[0] (line 3) on the same parent",
    ),
    (
        "same_mac_on_one_parent",
        ONE
        + "    mac: 02:00:00:00:00:01\n  - name: mv1\n    parent: eth0\n"
        + "    mac: 02:00:00:00:00:01\n",
        6,
        5,
        "interfaces[1]",
        "mac 02:00:00:00:00:01 is already used by interfaces[0] (line 3) on the same parent",
    ),
]


@pytest.mark.parametrize(
    ("text", "line", "column", "path", "message"),
    [pytest.param(*row[1:], id=row[0]) for row in ERRORS],
)
def test_each_problem_is_reported_at_its_place(
    text: str | bytes, line: int, column: int, path: str, message: str
) -> None:
    problems = problems_of(text)
    assert len(problems) == 1, "\n".join(map(str, problems))
    problem = problems[0]
    assert (problem.file, problem.line, problem.column, problem.path) == (FILE, line, column, path)
    assert message in problem.message


def test_the_message_format_names_file_line_column_and_path() -> None:
    text = "# macvland spec\nversion: 1\n\ninterfaces:\n  - name: mv0\n    parent: eth0\n"
    text += "    mode: brige\n"
    with pytest.raises(SpecError) as caught:
        parse_spec(text, "macvland.yaml")
    assert str(caught.value) == (
        "macvland.yaml:7:11: interfaces[0].mode: 'brige' is not one of bridge, vepa, private, "
        "passthru, source (did you mean 'bridge'?)"
    )


FULL = """\
version: 1
interfaces:
  - name: mv0
    parent: eth0
    mode: source
    netns: blue
    flags: [nodst]
    source_macs: [02:00:00:00:00:0A, 02:00:00:00:00:0b]
    mac: 02:00:00:00:00:01
    mtu: 1400
    state: down
    bcqueuelen: 0
    bc_cutoff: -1
  - name: mv1
    parent: eth0
    mode: passthru
    netns: /var/run/netns/red
    flags: [nopromisc]
    state: absent
  - name: mv2
    parent: eth1
"""


def test_a_spec_with_every_field_parses_to_the_exact_interfaces() -> None:
    desired = parse_spec(FULL, FILE)
    assert desired == DesiredState(
        interfaces=(
            MacvlanSpec(
                name="mv0",
                parent="eth0",
                mode=Mode.SOURCE,
                netns="blue",
                flags=frozenset({Flag.NODST}),
                source_macs=frozenset({"02:00:00:00:00:0a", "02:00:00:00:00:0b"}),
                mac="02:00:00:00:00:01",
                mtu=1400,
                state=State.DOWN,
                bcqueuelen=0,
                bc_cutoff=-1,
            ),
            MacvlanSpec(
                name="mv1",
                parent="eth0",
                mode=Mode.PASSTHRU,
                netns="red",
                flags=frozenset({Flag.NOPROMISC}),
                state=State.ABSENT,
            ),
            MacvlanSpec(name="mv2", parent="eth1"),
        ),
        source=FILE,
        sha256=hashlib.sha256(FULL.encode()).hexdigest(),
    )
    assert [spec.origin for spec in desired.interfaces] == [
        f"{FILE}:3",
        f"{FILE}:14",
        f"{FILE}:20",
    ]


def test_bytes_and_text_give_the_same_state_and_hash() -> None:
    assert parse_spec(FULL.encode(), FILE) == parse_spec(FULL, FILE)


def test_no_interfaces_must_be_an_explicit_empty_list() -> None:
    assert parse("version: 1\ninterfaces: []\n") == ()


@pytest.mark.parametrize(
    ("written", "netns"),
    [
        pytest.param("blue", "blue", id="bare_name"),
        pytest.param("/run/netns/blue", "blue", id="run_netns"),
        pytest.param("/var/run/netns/blue", "blue", id="var_run_netns"),
        pytest.param("/run/netns/../netns/blue", "blue", id="run_netns_unnormalised"),
        pytest.param("/proc/1/ns/net", "/proc/1/ns/net", id="other_absolute_path"),
        pytest.param("/srv//ns/./x", "/srv/ns/x", id="other_path_normalised"),
        pytest.param("~", None, id="null_is_own_namespace"),
    ],
)
def test_netns_is_spelt_one_way(written: str, netns: str | None) -> None:
    (spec,) = parse(ONE + f"    netns: {written}\n")
    assert spec.netns == netns


def test_mac_addresses_are_lowercased() -> None:
    (spec,) = parse(
        ONE + "    mode: source\n    mac: 02:AB:cd:00:00:0F\n    source_macs: [0A:BB:00:00:00:01]\n"
    )
    assert spec.mac == "02:ab:cd:00:00:0f"
    assert spec.source_macs == frozenset({"0a:bb:00:00:00:01"})


def test_a_mac_that_yaml_reads_as_base_60_stays_a_mac() -> None:
    (spec,) = parse(
        ONE + "    mode: source\n    mac: 12:00:00:00:00:01\n    source_macs: [12:00:00:00:00:02]\n"
    )
    assert spec.mac == "12:00:00:00:00:01"
    assert spec.source_macs == frozenset({"12:00:00:00:00:02"})


def test_names_are_taken_as_written() -> None:
    (spec,) = parse("version: 1\ninterfaces:\n  - name: 0123\n    parent: 1e3\n")
    assert (spec.name, spec.parent) == ("0123", "1e3")


def test_same_name_in_two_namespaces_is_fine() -> None:
    specs = parse(ONE + "  - name: mv0\n    parent: eth0\n    netns: blue\n")
    assert [spec.key for spec in specs] == [(None, "mv0"), ("blue", "mv0")]


@pytest.mark.parametrize(
    "text",
    [
        pytest.param(
            ONE + "    mode: passthru\n  - name: mv1\n    parent: eth0\n    state: absent\n",
            id="passthru_beside_an_absent_sibling",
        ),
        pytest.param(
            ONE + "    bc_cutoff: 2\n  - name: mv1\n    parent: eth0\n    bc_cutoff: 3\n"
            "    state: absent\n",
            id="bc_cutoff_of_an_absent_sibling",
        ),
        pytest.param(
            ONE + "    bc_cutoff: 2\n  - name: mv1\n    parent: eth0\n",
            id="bc_cutoff_unset_on_a_sibling",
        ),
        pytest.param(
            ONE + "    mac: 02:00:00:00:00:01\n  - name: mv1\n    parent: eth1\n"
            "    mac: 02:00:00:00:00:01\n",
            id="same_mac_on_different_parents",
        ),
        pytest.param(
            ONE + "    mode: passthru\n  - name: mv1\n    parent: eth1\n    mode: passthru\n",
            id="passthru_on_different_parents",
        ),
        pytest.param(
            ONE + "    source_macs: []\n    flags: []\n",
            id="empty_source_macs_outside_source_mode",
        ),
    ],
)
def test_what_the_kernel_allows_is_accepted(text: str) -> None:
    assert len(parse(text)) == text.count("- name:")


def test_every_problem_in_a_file_is_reported_at_once() -> None:
    text = (
        "version: 1\n"
        "interfaces:\n"
        "  - name: mv0\n"  # 3
        "    parent: eth0\n"
        "    mode: brige\n"  # 5: bad value
        "    mtu: 9\n"  # 6: out of range
        "  - name: mv0\n"  # 7: same name as line 3
        "    parent: eth1\n"
        "    colour: red\n"  # 9: unknown key
        "  - parent: eth2\n"  # 10: missing name
        "    mtu: true\n"  # 11: wrong type, in an item without a name
    )
    found = [(p.line, p.column, p.path) for p in problems_of(text)]
    assert found == [
        (5, 11, "interfaces[0].mode"),
        (6, 10, "interfaces[0].mtu"),
        (7, 5, "interfaces[1]"),
        (9, 5, "interfaces[1].colour"),
        (10, 5, "interfaces[2]"),
        (11, 10, "interfaces[2].mtu"),
    ]


def test_duplicate_keys_are_found_in_any_mapping() -> None:
    problems = problems_of(ONE + "    mode: {a: 1, a: 2}\n")
    assert [(p.line, p.column, p.path, p.message) for p in problems] == [
        (5, 11, "interfaces[0].mode", "expected a string, got a mapping"),
        (5, 18, "interfaces[0].mode.a", "duplicate key 'a' (first on line 5)"),
    ]


def test_a_broken_setting_causes_no_conflict_nobody_wrote() -> None:
    # The second item's netns is invalid: it must not be taken as "home" and collide.
    text = ONE + "  - name: mv0\n    parent: eth1\n    netns: a/b\n"
    assert [p.path for p in problems_of(text)] == ["interfaces[1].netns"]


def test_python_tags_are_inert() -> None:
    text = ONE.replace("mv0", "!!python/object/apply:os.system [true]")
    problem = problems_of(text)[0]
    assert (problem.line, problem.path) == (3, "interfaces[0].name")
    assert "expected a string, got a list" in problem.message


TAGGED = """\
plain: [a, 0123, 0x5dc, 1_500, '1', "2", 1:30, 12:00:00:00:00:01, 1.5e3, .inf, .NaN, ~, null,
        Null, '', yes, No, on, OFF, true, 2001-12-14, 2001-12-14t21:59:43.10-05:00, <<, =]
repeated: [a, 'a', "a", !!str a, !!int 1, !custom a, 1, '1', ~, "~", on, 'on']
? [complex, key]
: {a: b, c: [d, {e: f}]}
empty:
"""


def tags_of(node: yaml.Node | None) -> list[object]:
    assert node is not None
    if isinstance(node, yaml.ScalarNode):
        return [(node.tag, node.value)]
    if isinstance(node, yaml.SequenceNode):
        return [node.tag, *(tag for item in node.value for tag in tags_of(item))]
    return [node.tag, *(tag for key, value in node.value
                        for tag in [*tags_of(key), *tags_of(value)])]


def test_the_parser_resolves_every_tag_as_the_safe_loader_does() -> None:
    # The parser's loader resolves each distinct scalar once: the same text, plain or quoted,
    # and the same text under another kind of node, must still get the safe loader's tags.
    from macvland.spec import _FAST_LOADER

    expected = tags_of(yaml.compose(TAGGED, Loader=yaml.SafeLoader))
    assert tags_of(yaml.compose(TAGGED, Loader=_FAST_LOADER)) == expected
    assert ("tag:yaml.org,2002:int", "0123") in expected  # the text is varied enough
    assert ("tag:yaml.org,2002:str", "0123") not in expected


def test_aliases_are_followed() -> None:
    text = "version: 1\ninterfaces:\n  - name: mv0\n    parent: &up eth0\n"
    text += "  - name: mv1\n    parent: *up\n"
    assert [spec.parent for spec in parse(text)] == ["eth0", "eth0"]


def test_load_spec_reads_the_file(tmp_path: Path) -> None:
    path = tmp_path / "macvland.yaml"
    path.write_bytes(FULL.encode())
    assert load_spec(str(path)) == parse_spec(FULL, str(path))
    assert load_spec(str(path)).interfaces[0].origin == f"{path}:3"


def test_load_spec_of_a_missing_file_is_a_spec_error(tmp_path: Path) -> None:
    path = str(tmp_path / "missing.yaml")
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    assert caught.value.problems == [
        SpecProblem(path, 0, 0, "", "cannot read: No such file or directory")
    ]


def test_public_surface() -> None:
    import macvland.spec

    assert sorted(macvland.spec.__all__) == [
        "ParseMemo", "SPEC_VERSION", "parse_source", "parse_spec"]


ITEM = "  - name: {name}\n    parent: eth1\n    mode: {mode}\n"


@pytest.mark.parametrize(("edit", "expected"), [
    pytest.param(lambda t: t.replace("mode: vepa", "mode: private"), "private", id="mode-edit"),
    pytest.param(lambda t: t.replace("mode: vepa", "mode: brige"), None, id="error-edit"),
    pytest.param(lambda t: t.replace("version: 1\n", "version: 1\n\n"), "vepa",
                 id="lines-moved"),
])
def test_a_memo_gives_the_same_result_as_a_fresh_parse(
        tmp_path: Path, edit: Callable[[str], str], expected: str | None) -> None:
    path = tmp_path / "macvland.yaml"
    text = "version: 1\ninterfaces:\n" + "".join(
        ITEM.format(name=f"mv{i}", mode="vepa" if i == 1 else "bridge") for i in range(3))
    path.write_text(text)
    memo: ParseMemo = {}
    parse_source(read_spec(str(path)), memo)
    assert len(memo) == 3
    path.write_text(edit(text))

    def parse(with_memo: bool) -> object:
        try:
            return parse_source(read_spec(str(path)), memo if with_memo else None)
        except SpecError as error:
            return [str(p) for p in error.problems]

    fresh = parse(False)
    assert parse(True) == fresh
    if expected is not None:
        assert isinstance(fresh, DesiredState)
        assert fresh.interfaces[1].mode == expected
        assert [s.origin for s in fresh.interfaces] == [
            s.origin for s in load_spec(str(path)).interfaces]


def test_a_memo_reuses_the_interfaces_whose_text_did_not_change(tmp_path: Path) -> None:
    path = tmp_path / "macvland.yaml"
    text = "version: 1\ninterfaces:\n" + "".join(
        ITEM.format(name=f"mv{i}", mode="vepa" if i == 1 else "bridge") for i in range(3))
    path.write_text(text)
    memo: ParseMemo = {}
    first = parse_source(read_spec(str(path)), memo).interfaces
    path.write_text(text.replace("mode: vepa", "mode: private"))

    second = parse_source(read_spec(str(path)), memo).interfaces

    assert [b is a for a, b in zip(first, second, strict=True)] == [True, False, True]


# --- a directory of fragments -------------------------------------------------------------

EMPTY = "version: 1\ninterfaces: []\n"


def write_fragments(directory: Path, fragments: dict[str, str]) -> Path:
    directory.mkdir(exist_ok=True)
    for name, text in fragments.items():
        (directory / name).write_text(text)
    return directory


def fragment(*items: str) -> str:
    """A fragment whose items are `name parent [key: value]...`; the first starts on line 3."""
    lines = ["version: 1", "interfaces:"]
    for item in items:
        name, parent, *settings = item.split(" ", 2)
        lines += [f"  - name: {name}", f"    parent: {parent}"]
        lines += [f"    {setting}" for setting in settings[0].split(", ")] if settings else []
    return "\n".join(lines) + "\n"


def directory_problems(directory: Path) -> list[SpecProblem]:
    with pytest.raises(SpecError) as caught:
        load_spec(str(directory))
    return caught.value.problems


def test_fragments_merge_in_name_order(tmp_path: Path) -> None:
    directory = write_fragments(
        tmp_path / "spec.d",
        {
            "b.yaml": fragment("mv2 eth0", "mv3 eth1"),
            "a.yaml": fragment("mv1 eth0 mode: vepa"),
            "00-first.yaml": fragment("mv0 eth2"),
            "c-empty.yaml": EMPTY,
        },
    )
    desired = load_spec(str(directory))
    assert [(spec.name, spec.origin) for spec in desired.interfaces] == [
        ("mv0", f"{directory}/00-first.yaml:3"),
        ("mv1", f"{directory}/a.yaml:3"),
        ("mv2", f"{directory}/b.yaml:3"),
        ("mv3", f"{directory}/b.yaml:5"),
    ]
    assert desired.interfaces[1].mode is Mode.VEPA
    assert desired.source == str(directory)


def test_one_fragment_gives_the_interfaces_of_the_same_file(tmp_path: Path) -> None:
    directory = write_fragments(tmp_path / "spec.d", {"all.yaml": FULL})
    assert load_spec(str(directory)).interfaces == parse_spec(FULL, FILE).interfaces


# (id, a.yaml, b.yaml, the problem's line and path in b.yaml, a part of its message)
CONFLICTS_ACROSS_FRAGMENTS = [
    (
        "same_name_twice",
        fragment("mv0 eth0"),
        fragment("mv9 eth1", "mv0 eth1"),
        5,
        "interfaces[1]",
        "interface 'mv0' in namespace host is already defined by interfaces[0] ({a}:3)",
    ),
    (
        "same_name_in_one_namespace_spelt_two_ways",
        fragment("mv0 eth0 netns: blue"),
        fragment("mv0 eth1 netns: /run/netns/blue"),
        3,
        "interfaces[0]",
        "interface 'mv0' in namespace blue is already defined by interfaces[0] ({a}:3)",
    ),
    (
        "passthru_after_a_sibling",
        fragment("mv0 eth0"),
        fragment("mv1 eth0 mode: passthru"),
        3,
        "interfaces[0]",
        "passthru interface 'mv1' shares parent 'eth0' with 'mv0' at interfaces[0] ({a}:3)",
    ),
    (
        "sibling_after_passthru",
        fragment("mv0 eth0 mode: passthru"),
        fragment("mv1 eth0"),
        3,
        "interfaces[0]",
        "parent 'eth0' already has the passthru interface 'mv0' at interfaces[0] ({a}:3)",
    ),
    (
        "bc_cutoff_disagrees",
        fragment("mv0 eth0 bc_cutoff: 2"),
        fragment("mv1 eth0 bc_cutoff: 3"),
        3,
        "interfaces[0]",
        "bc_cutoff 3 disagrees with bc_cutoff 2 of interfaces[0] ({a}:3) on the same parent",
    ),
    (
        "same_mac_on_one_parent",
        fragment("mv0 eth0 mac: 02:00:00:00:00:01"),
        fragment("mv1 eth0 mac: 02:00:00:00:00:01"),
        3,
        "interfaces[0]",
        "mac 02:00:00:00:00:01 is already used by interfaces[0] ({a}:3) on the same parent",
    ),
]


@pytest.mark.parametrize(
    ("first", "second", "line", "path", "message"),
    [pytest.param(*row[1:], id=row[0]) for row in CONFLICTS_ACROSS_FRAGMENTS],
)
def test_conflicts_across_fragments_name_both_places(
    tmp_path: Path, first: str, second: str, line: int, path: str, message: str
) -> None:
    directory = write_fragments(tmp_path / "spec.d", {"a.yaml": first, "b.yaml": second})
    problems = directory_problems(directory)
    assert len(problems) == 1, "\n".join(map(str, problems))
    problem = problems[0]
    assert (problem.file, problem.line, problem.column, problem.path) == (
        f"{directory}/b.yaml",
        line,
        5,
        path,
    )
    assert message.format(a=f"{directory}/a.yaml") in problem.message


def test_a_conflict_within_one_fragment_keeps_the_line_wording(tmp_path: Path) -> None:
    directory = write_fragments(
        tmp_path / "spec.d", {"a.yaml": EMPTY, "b.yaml": fragment("mv0 eth0", "mv0 eth1")}
    )
    (problem,) = directory_problems(directory)
    assert str(problem) == (
        f"{directory}/b.yaml:5:5: interfaces[1]: interface 'mv0' in namespace host is already "
        "defined by interfaces[0] (line 3)"
    )


def test_problems_of_every_fragment_are_reported_together(tmp_path: Path) -> None:
    directory = write_fragments(
        tmp_path / "spec.d",
        {
            "a.yaml": fragment("mv0 eth0 mode: brige"),
            "b.yaml": "version: 2\ninterfaces: []\n",
            "c.yaml": "",
            "d.yaml": fragment("mv0 eth1"),
        },
    )
    (directory / "e.yaml").symlink_to(directory / "missing.yaml")
    found = [(Path(p.file).name, p.line, p.column, p.path) for p in directory_problems(directory)]
    assert found == [
        ("a.yaml", 5, 11, "interfaces[0].mode"),
        ("b.yaml", 1, 10, "version"),
        ("c.yaml", 1, 1, ""),
        # mv0's mode is bad, but its identity is not: the duplicate is still found.
        ("d.yaml", 3, 5, "interfaces[0]"),
        ("e.yaml", 0, 0, ""),
    ]


def test_only_visible_yaml_files_and_links_to_them_are_fragments(tmp_path: Path) -> None:
    directory = write_fragments(
        tmp_path / "spec.d",
        {
            "a.yaml": fragment("mv0 eth0"),
            ".hidden.yaml": "not: [a spec",
            "b.yaml.swp": "not: [a spec",
            "c.yml": "not: [a spec",
            "README": "not: [a spec",
        },
    )
    (directory / "sub.yaml").mkdir()
    (directory / "sub.yaml" / "inner.yaml").write_text(fragment("mv9 eth9"))
    (tmp_path / "elsewhere.yaml").write_text(fragment("mv1 eth0"))
    (directory / "b.yaml").symlink_to(tmp_path / "elsewhere.yaml")
    desired = load_spec(str(directory))
    assert [spec.name for spec in desired.interfaces] == ["mv0", "mv1"]
    assert desired.interfaces[1].origin == f"{directory}/b.yaml:3"


@pytest.mark.parametrize(
    "contents",
    [
        pytest.param({}, id="empty_directory"),
        pytest.param({".spec.yaml": EMPTY, "spec.yml": EMPTY}, id="only_other_files"),
    ],
)
def test_a_directory_without_fragments_is_an_error(
    tmp_path: Path, contents: dict[str, str]
) -> None:
    directory = write_fragments(tmp_path / "spec.d", contents)
    (problem,) = directory_problems(directory)
    assert (problem.file, problem.line, problem.column, problem.path) == (str(directory), 0, 0, "")
    assert "no *.yaml fragments" in problem.message


def hash_of(directory: Path) -> str:
    return load_spec(str(directory)).sha256


def edit(directory: Path) -> None:
    (directory / "b.yaml").write_text(fragment("mv1 eth0 mtu: 1400"))


def rename(directory: Path) -> None:
    (directory / "b.yaml").rename(directory / "c.yaml")


def remove(directory: Path) -> None:
    (directory / "b.yaml").unlink()


def add_empty(directory: Path) -> None:
    (directory / "c.yaml").write_text(EMPTY)


def touch_ignored(directory: Path) -> None:
    (directory / "notes.txt").write_text("anything")


@pytest.mark.parametrize(
    ("change", "changes_hash"),
    [
        pytest.param(edit, True, id="a_fragment_is_edited"),
        pytest.param(rename, True, id="a_fragment_is_renamed"),
        pytest.param(remove, True, id="a_fragment_is_removed"),
        pytest.param(add_empty, True, id="an_empty_fragment_is_added"),
        pytest.param(touch_ignored, False, id="a_non_fragment_is_written"),
    ],
)
def test_the_hash_covers_every_fragment_and_its_name(
    tmp_path: Path, change: Callable[[Path], None], changes_hash: bool
) -> None:
    directory = write_fragments(
        tmp_path / "spec.d", {"a.yaml": fragment("mv0 eth0"), "b.yaml": fragment("mv1 eth0")}
    )
    before = hash_of(directory)
    assert hash_of(directory) == before
    change(directory)
    assert (hash_of(directory) != before) is changes_hash


def test_the_cycle_collector_is_running_again_after_a_parse() -> None:
    # The parse pauses it (its node tree has no cycles); every way out must resume it.
    parse_spec("version: 1\ninterfaces: []\n", "spec.yaml")
    assert gc.isenabled()
    with pytest.raises(SpecError):
        parse_spec("version: 1\ninterfaces: [\n", "spec.yaml")
    assert gc.isenabled()


# --- kind and queues ------------------------------------------------------------------------

KIND_ERRORS = [
    ("kind_misspelt", ONE + "    kind: macvtab\n", 5, 11, "interfaces[0].kind",
     "'macvtab' is not one of macvlan, macvtap (did you mean 'macvtap'?)"),
    ("numtxqueues_zero", ONE + "    numtxqueues: 0\n", 5, 18, "interfaces[0].numtxqueues",
     "0 is out of range 1..4096"),
    ("numrxqueues_string", ONE + "    numrxqueues: four\n", 5, 18, "interfaces[0].numrxqueues",
     "expected an integer, got string 'four'"),
]


@pytest.mark.parametrize(("text", "line", "column", "path", "message"),
                         [pytest.param(*case[1:], id=case[0]) for case in KIND_ERRORS])
def test_kind_and_queue_problems_are_reported_at_their_place(
        text: str, line: int, column: int, path: str, message: str) -> None:
    (problem,) = problems_of(text)
    assert (problem.line, problem.column, problem.path) == (line, column, path)
    assert message in problem.message


def test_a_macvtap_takes_every_macvlan_setting() -> None:
    (spec,) = parse(ONE + "    kind: macvtap\n    mode: source\n    flags: [nodst]\n"
                    "    source_macs: [02:00:00:00:00:01]\n    numtxqueues: 4\n"
                    "    numrxqueues: 2\n    bcqueuelen: 10\n")
    assert spec == MacvlanSpec(name="mv0", parent="eth0", kind=Kind.MACVTAP, mode=Mode.SOURCE,
                               flags=frozenset({Flag.NODST}),
                               source_macs=frozenset({"02:00:00:00:00:01"}), numtxqueues=4,
                               numrxqueues=2, bcqueuelen=10)
    (default,) = parse(ONE)
    assert default.kind is Kind.MACVLAN


TAP = ONE + "    kind: macvtap\n"

TAP_ERRORS = [
    ("tap_on_a_macvlan", ONE + "    tap: {owner: qemu}\n", 5, 5, "interfaces[0].tap",
     "tap only applies to kind macvtap, not macvlan"),
    ("tap_not_a_mapping", TAP + "    tap: qemu\n", 6, 10, "interfaces[0].tap",
     "expected a mapping, got string 'qemu'"),
    ("tap_unknown_key", TAP + "    tap: {ownr: qemu}\n", 6, 11, "interfaces[0].tap.ownr",
     "unknown key 'ownr' (did you mean 'owner'?)"),
    ("tap_mode_not_octal", TAP + "    tap: {mode: 0680}\n", 6, 17, "interfaces[0].tap.mode",
     "'0680' is not a mode (expected octal permission bits, like 0660)"),
    ("tap_owner_bad_name", TAP + "    tap: {owner: 'a b'}\n", 6, 18, "interfaces[0].tap.owner",
     "'a b' is neither a user name nor a numeric id"),
    ("tap_group_minus_one", TAP + "    tap: {group: 4294967295}\n", 6, 18,
     "interfaces[0].tap.group", "4294967295 is out of range 0..4294967294"),
]


@pytest.mark.parametrize(("text", "line", "column", "path", "message"),
                         [pytest.param(*case[1:], id=case[0]) for case in TAP_ERRORS])
def test_tap_problems_are_reported_at_their_place(
        text: str, line: int, column: int, path: str, message: str) -> None:
    (problem,) = problems_of(text)
    assert (problem.line, problem.column, problem.path, problem.message) == (
        line, column, path, message)


@pytest.mark.parametrize(("written", "access"), [
    pytest.param("{owner: libvirt-qemu, group: kvm, mode: 0660}",
                 TapAccess("libvirt-qemu", "kvm", 0o660), id="names"),
    pytest.param("{owner: 107, group: 0, mode: '660'}", TapAccess(107, 0, 0o660), id="ids"),
    pytest.param("{mode: 0666}", TapAccess(mode=0o666), id="mode-only"),
    pytest.param("{}", TapAccess(), id="empty"),
])
def test_tap_access_reads_names_ids_and_octal_modes(written: str, access: TapAccess) -> None:
    (spec,) = parse(TAP + f"    tap: {written}\n")
    assert spec.tap == access


# --- the node count: a large text is refused before it is composed --------------------------

NODE_COUNTS = [
    # (text, more than 10 nodes): a sequence and its items are a node each
    pytest.param("[a]", False, id="few-events"),
    pytest.param("[a,a,a,a,a]", False, id="more-events-than-nodes"),
    pytest.param("[" + ",".join("a" * 9) + "]", False, id="at-the-limit"),
    pytest.param("[" + ",".join("a" * 10) + "]", True, id="one-above"),
    pytest.param("{a: [b, c], d: [e, [f]]}", False, id="nested-at-the-limit"),
    pytest.param("{a: [b, c], d: [e, [f, g]]}", True, id="nested-one-above"),
    pytest.param("[a, [b", False, id="broken: left to the composer"),
]


@pytest.mark.parametrize("libyaml", [True, False], ids=["libyaml", "pure"])
@pytest.mark.parametrize(("text", "too_many"), NODE_COUNTS)
def test_a_text_of_more_nodes_than_the_limit_is_found_without_composing_it(
        monkeypatch: pytest.MonkeyPatch, text: str, too_many: bool, libyaml: bool) -> None:
    from macvland import spec

    monkeypatch.setattr(spec, "MAX_NODES", 10)
    monkeypatch.setattr(spec, "_COUNT_ABOVE", 0)
    if not libyaml:
        monkeypatch.setattr(spec, "_FAST_LOADER", yaml.SafeLoader)
    assert spec._too_many_nodes(text) is too_many
