"""Each mode's forwarding, proven with real packets between throwaway namespaces.

The topology: macvland's own namespace (the "host") holds the parent eth1, a veth whose peer
is in a "switch" namespace, enslaved there to a Linux bridge (a real switch: it never sends a
frame back out of the port it came in on, unless that port has `hairpin on`). The switch
itself answers at 192.0.2.250: the positive control that proves a sub-interface works at all
whenever a test shows it cannot reach something. Containers are namespaces holding one macvlan
each, made and addressed by macvland. Pings are IPv4 (no DAD to wait for), with small counts
and timeouts; a success is polled for with a deadline, a failure is a few lost pings after
the same path worked for the control.
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from macvland.frozen import replace
from macvland.model import Flag, IPInterface, MacvlanSpec, Mode, Netns
from macvland.spec import parse_spec
from tests.conftest import Lab, ip
from tests.test_schema import parser_accepts, schema_accepts

SWITCH_IP = "192.0.2.250"
PARENT_IP = "192.0.2.254"
CONTAINER_IPS = {"c1": "192.0.2.1", "c2": "192.0.2.2"}


def ping(lab: Lab, netns: str, address: str, count: int = 1) -> bool:
    result = subprocess.run(["ip", "netns", "exec", netns, "ping", "-n", "-q", "-c", str(count),
                             "-W", "1", "-i", "0.2", address], capture_output=True, text=True)
    return result.returncode == 0


def reaches(lab: Lab, netns: str, address: str, deadline: float = 30.0) -> bool:
    end = time.monotonic() + deadline
    while not ping(lab, netns, address):
        if time.monotonic() > end:
            return False
    return True


def cannot_reach(lab: Lab, netns: str, address: str) -> bool:
    return not ping(lab, netns, address, count=3)


def ips(*text: str) -> frozenset[IPInterface]:
    return frozenset(ipaddress.ip_interface(t) for t in text)


class Topology:
    def __init__(self, lab: Lab, hairpin: bool = False) -> None:
        self.lab = lab
        self.switch = lab.add_netns("switch")
        lab.ip("link", "set", "eth1-peer", "netns", self.switch)
        for command in (("link", "add", "br0", "type", "bridge"),
                        ("link", "set", "eth1-peer", "master", "br0"),
                        ("link", "set", "eth1-peer", "type", "bridge_slave",
                         "hairpin", "on" if hairpin else "off"),
                        ("link", "set", "eth1-peer", "up"),
                        ("link", "set", "br0", "up"),
                        ("address", "add", f"{SWITCH_IP}/24", "dev", "br0")):
            lab.ip(*command, netns=self.switch)
        lab.ip("address", "add", f"{PARENT_IP}/24", "dev", "eth1")
        self.containers: dict[str, str] = {}

    def container(self, short: str) -> str:
        if short not in self.containers:
            self.containers[short] = self.lab.add_netns(short)
        return self.containers[short]

    def spec(self, short: str, mode: Mode, **settings: Any) -> MacvlanSpec:
        return MacvlanSpec(name=f"mv-{short}", parent=settings.pop("parent", "eth1"), mode=mode,
                           netns=self.container(short),
                           addresses=ips(f"{CONTAINER_IPS[short]}/24"), **settings)

    def converge(self, *specs: MacvlanSpec) -> None:
        result = self.lab.reconcile(*specs)
        assert not [o for o in result.outcomes if not o.ok], result.outcomes
        assert result.converged, result.remaining.verdicts


def promiscuity(lab: Lab, name: str, netns: Netns = None) -> int:
    value: int = lab.links(netns)[name]["promiscuity"]
    return value


@pytest.mark.parametrize(("mode", "hairpin", "siblings_meet"), [
    pytest.param(Mode.BRIDGE, False, True, id="bridge-directly"),
    pytest.param(Mode.PRIVATE, False, False, id="private-not-without-hairpin"),
    pytest.param(Mode.PRIVATE, True, False, id="private-not-even-with-hairpin"),
    pytest.param(Mode.VEPA, False, False, id="vepa-not-without-hairpin"),
    pytest.param(Mode.VEPA, True, True, id="vepa-through-a-hairpinning-switch"),
])
def test_siblings(lab: Lab, mode: Mode, hairpin: bool, siblings_meet: bool) -> None:
    net = Topology(lab, hairpin=hairpin)
    net.converge(net.spec("c1", mode), net.spec("c2", mode))
    c1, c2 = net.container("c1"), net.container("c2")

    assert reaches(lab, c1, SWITCH_IP) and reaches(lab, c2, SWITCH_IP)  # both work at all
    if siblings_meet:
        assert reaches(lab, c1, CONTAINER_IPS["c2"])
        assert reaches(lab, c2, CONTAINER_IPS["c1"])
    else:
        assert cannot_reach(lab, c1, CONTAINER_IPS["c2"])
        assert cannot_reach(lab, c2, CONTAINER_IPS["c1"])


@pytest.mark.parametrize("mode", [m for m in Mode if m is not Mode.SOURCE])
def test_a_sub_interface_cannot_reach_its_parent(lab: Lab, mode: Mode) -> None:
    net = Topology(lab)
    net.converge(net.spec("c1", mode))
    c1 = net.container("c1")

    assert reaches(lab, c1, SWITCH_IP)
    assert cannot_reach(lab, c1, PARENT_IP)


def test_a_hairpinning_switch_takes_vepa_frames_back_to_the_parent(lab: Lab) -> None:
    # The limit of the rule above: vepa sends everything out, and what a hairpinning switch
    # sends back for the parent's own MAC is the parent's to take. (Private mode does not:
    # the kernel hands a reflected broadcast, the ARP request, back to its sender alone.)
    net = Topology(lab, hairpin=True)
    net.converge(net.spec("c1", Mode.VEPA))
    assert reaches(lab, net.container("c1"), PARENT_IP)


def test_a_source_mode_sub_interface_cannot_reach_its_parent(lab: Lab) -> None:
    # It receives only what the listed senders send: list the parent itself, and the switch.
    net = Topology(lab)
    parent_mac = lab.links()["eth1"]["address"]
    switch_mac = lab.links(net.switch)["br0"]["address"]
    net.converge(net.spec("c1", Mode.SOURCE, source_macs=frozenset({parent_mac, switch_mac})))
    c1 = net.container("c1")

    assert reaches(lab, c1, SWITCH_IP)
    assert cannot_reach(lab, c1, PARENT_IP)


def test_passthru_takes_the_parent_alone(lab: Lab) -> None:
    net = Topology(lab)
    net.converge(net.spec("c1", Mode.PASSTHRU))

    assert reaches(lab, net.container("c1"), SWITCH_IP)
    second = ip("-n", lab.home, "link", "add", "second", "link", "eth1", "type", "macvlan",
                check=False)
    assert second.returncode != 0, "a second macvlan joined a passthru parent"
    result = lab.reconcile(net.spec("c1", Mode.PASSTHRU), net.spec("c2", Mode.BRIDGE))
    failed = [o.operation.name for o in result.outcomes if o.error]
    assert failed == ["mv-c2"]


@pytest.mark.parametrize(("flags", "added"), [
    pytest.param(frozenset(), 1, id="passthru-makes-the-parent-promiscuous"),
    pytest.param(frozenset({Flag.NOPROMISC}), 0, id="nopromisc-leaves-it-alone"),
])
def test_passthru_promiscuity(lab: Lab, flags: frozenset[Flag], added: int) -> None:
    net = Topology(lab)
    before = promiscuity(lab, "eth1")

    net.converge(net.spec("c1", Mode.PASSTHRU, flags=flags))

    assert reaches(lab, net.container("c1"), SWITCH_IP)
    # The kernel's counter (`ip -d link`'s promiscuity), not IFF_PROMISC, which only a user
    # request sets.
    assert promiscuity(lab, "eth1") == before + added


def test_source_mode_receives_only_from_the_listed_senders(lab: Lab) -> None:
    net = Topology(lab)
    # Two senders outside, each a macvlan on the switch's bridge in a namespace of its own.
    senders = {}
    for short, address in (("a", "192.0.2.11"), ("b", "192.0.2.12")):
        netns = lab.add_netns(short)
        lab.ip("link", "add", f"out-{short}", "link", "br0", "type", "macvlan", "mode",
               "bridge", netns=net.switch)
        lab.ip("link", "set", f"out-{short}", "netns", netns, netns=net.switch)
        lab.ip("address", "add", f"{address}/24", "dev", f"out-{short}", netns=netns)
        lab.ip("link", "set", f"out-{short}", "up", netns=netns)
        senders[short] = (netns, lab.links(netns)[f"out-{short}"]["address"])
    (a, mac_a), (b, mac_b) = senders["a"], senders["b"]
    target = CONTAINER_IPS["c1"]

    net.converge(net.spec("c1", Mode.SOURCE, source_macs=frozenset({mac_a})))
    assert reaches(lab, a, target)
    assert cannot_reach(lab, b, target)

    # Edited in place: b is let in at once, and a keeps being heard while that happens.
    watcher = subprocess.Popen(["ip", "netns", "exec", a, "ping", "-n", "-q", "-c", "40", "-i",
                                "0.05", "-W", "5", target], stdout=subprocess.PIPE, text=True)
    try:
        net.converge(net.spec("c1", Mode.SOURCE, source_macs=frozenset({mac_a, mac_b})))
        assert ping(lab, b, target, count=1)
    finally:
        out, _ = watcher.communicate(timeout=60)
    assert watcher.returncode == 0 and " 0% packet loss" in out, out

    net.converge(net.spec("c1", Mode.SOURCE, source_macs=frozenset({mac_b})))
    assert ping(lab, b, target, count=1)
    assert cannot_reach(lab, a, target)


SHIM_EXAMPLE = Path(__file__).resolve().parent.parent / "etc" / "macvland" / "host-shim.yaml"


def test_the_host_shim_example_is_valid_for_the_parser_and_the_schema() -> None:
    text = SHIM_EXAMPLE.read_text()
    assert parser_accepts(text) and schema_accepts(text)


def test_the_host_shim_reaches_the_containers_and_back(lab: Lab) -> None:
    # The recipe exactly as etc/macvland/host-shim.yaml has it, its namespaces made here: a
    # bridge-mode macvlan in the host namespace with an address of its own and a route to the
    # containers' range through it.
    net = Topology(lab)
    example = parse_spec(SHIM_EXAMPLE.read_text(), str(SHIM_EXAMPLE)).interfaces
    specs = [replace(s, netns=net.container(s.netns) if s.netns else None)
             for s in example]
    shim = next(s for s in specs if s.netns is None)
    containers = {s.netns: next(iter(s.addresses or ())).ip for s in specs if s.netns}
    assert shim.routes and containers

    net.converge(*(s for s in specs if s is not shim))
    for netns, address in containers.items():
        assert netns is not None and reaches(lab, netns, SWITCH_IP)
        assert cannot_reach(lab, lab.home, str(address))  # the seed: not through the parent

    net.converge(*specs)

    shim_address = next(iter(shim.addresses or ())).ip
    for netns, address in containers.items():
        assert netns is not None
        assert reaches(lab, lab.home, str(address))
        assert reaches(lab, netns, str(shim_address))
    [route] = json.loads(lab.ip("-j", "route", "show", str(next(iter(shim.routes)).to)).stdout)
    assert (route["dev"], route["protocol"]) in {(shim.name, "77"), (shim.name, "macvland")}
