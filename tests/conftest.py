"""Throwaway network namespaces for tests that drive the real kernel.

Every namespace a test makes has a unique name and is deleted by a finalizer, pass or fail.
The namespace playing "macvland's own" is one of them, so the host's interfaces are never
touched. Set-up and independent reads use iproute2 (`ip -d -j`), not macvland's own codec.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from macvland.ledger import Ledger
from macvland.model import DesiredState, MacvlanSpec
from macvland.netns import Namespaces
from macvland.reconcile import PassResult, reconcile
from tests.helpers import Daemon

NETNS_DIR = "/run/netns"

# macvland refuses a spec that someone other than root can write; whatever umask the test run
# inherits (CI may have 000), the specs tests write must be 0644, not 0666.
os.umask(0o022)


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], check=check, capture_output=True, text=True)


class Lab:
    """A home namespace with veth parents, more namespaces on demand, and readers."""

    def __init__(self, tmp_path: Path) -> None:
        self.prefix = f"mvt{uuid.uuid4().hex[:8]}"
        self.created: list[str] = []
        self.home = self.name("home")
        self.state_dir = str(tmp_path / "state")
        self.namespaces = Namespaces(home=f"{NETNS_DIR}/{self.home}")
        self.ledger = Ledger(self.state_dir)

    def setup(self) -> None:
        self.add_netns("home")
        for parent in ("eth1", "eth2"):
            self.add_veth(parent)

    def name(self, short: str) -> str:
        return f"{self.prefix}-{short}"

    def add_netns(self, short: str) -> str:
        name = self.name(short)
        ip("netns", "add", name)
        self.created.append(name)
        return name

    def del_netns(self, name: str) -> None:
        ip("netns", "del", name, check=False)

    def add_veth(self, name: str) -> None:
        ip("-n", self.home, "link", "add", name, "type", "veth", "peer", "name", f"{name}-peer")
        ip("-n", self.home, "link", "set", name, "up")

    def ip(self, *args: str, netns: str | None = None) -> subprocess.CompletedProcess[str]:
        return ip("-n", netns or self.home, *args)

    def links(self, netns: str | None = None) -> dict[str, dict[str, Any]]:
        """An independent read of the kernel: iproute2's JSON, by interface name."""
        out = ip("-n", netns or self.home, "-d", "-j", "link", "show").stdout
        return {link["ifname"]: link for link in json.loads(out)}

    def reconcile(self, *specs: MacvlanSpec) -> PassResult:
        return reconcile(DesiredState(specs), self.namespaces, self.ledger)

    def close(self) -> None:
        self.namespaces.close()
        for name in self.created:
            self.del_netns(name)
        leftovers = [n for n in os.listdir(NETNS_DIR) if n.startswith(self.prefix)] \
            if os.path.isdir(NETNS_DIR) else []
        for name in leftovers:
            self.del_netns(name)


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    if os.geteuid() != 0:
        pytest.skip("needs root to create network namespaces")
    lab = Lab(tmp_path)
    try:
        lab.setup()
        yield lab
    finally:
        lab.close()


@pytest.fixture
def daemon(lab: Lab, tmp_path: Path) -> Iterator[Daemon]:
    """`macvland run` in the lab, not started yet; killed and reaped whatever happens."""
    d = Daemon(lab, tmp_path / "daemon.log")
    try:
        yield d
    finally:
        d.kill()


@pytest.fixture
def spec_dir(tmp_path: Path) -> Path:
    path = tmp_path / "etc"
    path.mkdir()
    return path


def macvlan_info(link: dict[str, Any]) -> dict[str, Any]:
    info: dict[str, Any] = link.get("linkinfo", {}).get("info_data", {})
    return info
