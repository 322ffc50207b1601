"""Addresses and routes through the command line and the daemon, on the real kernel."""

from __future__ import annotations

import json
from pathlib import Path

from macvland.rtnl import RTPROT_MACVLAND
from tests.conftest import Lab
from tests.helpers import Daemon
from tests.test_cli import run

SPEC = """\
version: 1
interfaces:
  - name: mv0
    parent: eth1
    netns: {netns}
    addresses: [192.0.2.10/24, 2001:db8::10/64]
    routes:
      - to: 198.51.100.0/24
        via: 192.0.2.1
      - to: default
        via: 192.0.2.1
        metric: 50
"""


def addresses(lab: Lab, netns: str) -> set[str]:
    [link] = json.loads(lab.ip("-j", "address", "show", "dev", "mv0", netns=netns).stdout)
    return {f"{a['local']}/{a['prefixlen']}" for a in link["addr_info"]}


def our_routes(lab: Lab, netns: str) -> set[str]:
    routes = json.loads(lab.ip("-j", "route", "show", "dev", "mv0", netns=netns).stdout)
    return {r["dst"] for r in routes if r.get("protocol") in (str(RTPROT_MACVLAND), "macvland")}


def test_plan_apply_status_show_and_repair_addresses_and_routes(lab: Lab, tmp_path: Path) -> None:
    web = lab.add_netns("web")
    config = tmp_path / "macvland.yaml"
    config.write_text(SPEC.format(netns=web))

    plan = run(lab, "plan", config=config)
    assert plan.returncode == 2, plan.stderr
    assert plan.stdout.splitlines()[1:] == [
        f"mv0 in netns {web}: address + 192.0.2.10/24",
        f"mv0 in netns {web}: address + 2001:db8::10/64",
        f"mv0 in netns {web}: route + default via 192.0.2.1 metric 50",
        f"mv0 in netns {web}: route + 198.51.100.0/24 via 192.0.2.1",
    ]
    applied = run(lab, "apply", config=config)
    assert applied.returncode == 0, applied.stderr
    assert {"192.0.2.10/24", "2001:db8::10/64"} <= addresses(lab, web)
    assert our_routes(lab, web) == {"198.51.100.0/24", "default"}
    assert run(lab, "status", config=config).returncode == 0

    lab.ip("address", "del", "2001:db8::10/64", "dev", "mv0", netns=web)
    lab.ip("address", "add", "192.0.2.99/24", "dev", "mv0", netns=web)

    status = run(lab, "status", config=config)
    assert status.returncode == 1
    assert (f"mv0 in netns {web}: drifted: mv0 in netns {web}: address - 192.0.2.99/24; "
            f"mv0 in netns {web}: address + 2001:db8::10/64") in status.stdout
    assert "    addresses 192.0.2.10/24, 192.0.2.99/24" in status.stdout
    assert "    routes 198.51.100.0/24 via 192.0.2.1, default via 192.0.2.1 metric 50" \
        in status.stdout
    report = json.loads(run(lab, "status", "--json", config=config).stdout)
    [child] = [c for lower in report["tree"] for c in lower["children"] if c["name"] == "mv0"]
    assert child["addresses"] == ["192.0.2.10/24", "192.0.2.99/24"]

    assert run(lab, "apply", config=config).returncode == 0
    found = addresses(lab, web)
    assert "2001:db8::10/64" in found and "192.0.2.99/24" not in found


def test_the_daemon_puts_back_addresses_and_routes_removed_out_of_band(
        lab: Lab, daemon: Daemon, tmp_path: Path) -> None:
    web = lab.add_netns("web")
    config = tmp_path / "macvland.yaml"
    config.write_text(SPEC.format(netns=web))
    daemon.start(config)
    daemon.wait_for(lambda: our_routes(lab, web) == {"198.51.100.0/24", "default"}, "the routes")
    applied = len(daemon.applied())

    lab.ip("address", "del", "192.0.2.10/24", "dev", "mv0", netns=web)  # takes the routes

    daemon.wait_for(lambda: "192.0.2.10/24" in addresses(lab, web)
                    and our_routes(lab, web) == {"198.51.100.0/24", "default"},
                    "the address and the routes back")
    daemon.wait_for(lambda: len(daemon.applied()) >= applied + 3, "three log lines")
    lines = daemon.applied()[applied:]
    assert any("address + 192.0.2.10/24" in line for line in lines), lines
    assert any("route + default via 192.0.2.1 metric 50" in line for line in lines), lines

    lab.ip("route", "del", "198.51.100.0/24", "dev", "mv0", netns=web)
    daemon.wait_for(lambda: "198.51.100.0/24" in our_routes(lab, web), "the route back")
