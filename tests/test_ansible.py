"""The Ansible role, run by a real ansible-playbook against this machine (connection local),
with every path in a throwaway root and the daemon started the role's way for hosts where
systemd is not PID 1 (in the background, with a pidfile, reloaded by SIGHUP), managing a
throwaway namespace."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Lab
from tests.helpers import checkout_wheels, wait_for
from tests.test_daemon import mode_of

REPO = Path(__file__).parent.parent
BIN = Path(sys.executable).parent
RECAP = re.compile(r"^localhost\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+"
                   r"failed=(\d+)", re.MULTILINE)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wheel of this checkout, as the README's `pip wheel --no-deps -w dist .` makes it."""
    out = checkout_wheels(tmp_path_factory, "--no-deps")
    (found,) = out.glob("macvland-*.whl")
    return found


class Host:
    """The throwaway root the role is pointed at, and how to run the playbook on it."""

    def __init__(self, tmp_path: Path, lab: Lab, wheel: Path) -> None:
        self.root = root = tmp_path / "root"
        for directory in ("run", "var/log"):
            (root / directory).mkdir(parents=True)
        self.config = root / "etc/macvland/macvland.yaml"
        self.pidfile = root / "run/macvland.pid"
        self.log = root / "var/log/macvland.log"
        self.tmp = tmp_path
        self.vars: dict[str, Any] = {
            "macvland_wheel": str(wheel),
            "macvland_venv": str(root / "opt/macvland"),
            "macvland_bin": str(root / "usr/local/bin/macvland"),
            "macvland_config": str(self.config),
            "macvland_service_manager": "background",
            "macvland_pidfile": str(self.pidfile),
            "macvland_log": str(self.log),
            "macvland_state_dir": str(root / "run/macvland"),
            "macvland_command_prefix": ["ip", "netns", "exec", lab.home],
        }
        (root / "usr/local/bin").mkdir(parents=True)
        self.inventory = tmp_path / "inventory"
        self.inventory.write_text(f"[macvland]\nlocalhost ansible_connection=local "
                                  f"ansible_python_interpreter={sys.executable}\n")

    def play(self, spec: dict[str, Any] | None = None, **more: Any) -> tuple[int, int, str]:
        """Run the playbook as the README says; (exit code, changed count, output)."""
        extra = self.tmp / "vars.json"
        given = {"macvland_spec": spec} if spec is not None else {}
        extra.write_text(json.dumps({**self.vars, **given, **more}))
        env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "ANSIBLE_NOCOLOR": "1",
               "ANSIBLE_HOME": str(self.tmp / "ansible-home"),
               "ANSIBLE_LOCAL_TEMP": str(self.tmp / "ansible-local"),
               "ANSIBLE_REMOTE_TEMP": str(self.tmp / "ansible-remote")}
        run = subprocess.run(
            ["ansible-playbook", "-i", str(self.inventory), "deploy/ansible/playbook.yml",
             "-e", f"@{extra}"], cwd=REPO, env=env, capture_output=True, text=True,
            timeout=600, check=False)
        output = run.stdout + run.stderr
        recap = RECAP.search(output)
        assert recap, output
        return run.returncode, int(recap.group(2)), output

    def daemon_pid(self) -> int | None:
        with contextlib.suppress(FileNotFoundError, ValueError):
            pid = int(self.pidfile.read_text())
            with contextlib.suppress(FileNotFoundError):
                if b"macvland" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    return pid
        return None

    def explain(self) -> str:
        return f"daemon log:\n{self.log.read_text()}\nspecs: " \
               f"{sorted(str(p) for p in self.root.rglob('*.yaml'))}"

    def stop(self) -> None:
        pid = self.daemon_pid()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)  # setsid made it a group leader
            wait_for(lambda: _dead(pid), f"process {pid} to die")


def _dead(pid: int) -> bool:
    """Not our child (the role started it): dead once gone, or a zombie left to its parent."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


@pytest.fixture
def host(tmp_path: Path, lab: Lab, wheel: Path) -> Iterator[Host]:
    h = Host(tmp_path, lab, wheel)
    try:
        yield h
    finally:
        h.stop()


def spec(mode: str) -> dict[str, Any]:
    return {"version": 1, "interfaces": [{"name": "mv-a", "parent": "eth1", "mode": mode}]}


def wait_for_mode(lab: Lab, host: Host, mode: str) -> None:
    wait_for(lambda: mode_of(lab, "mv-a") == mode, f"mv-a in mode {mode}", explain=host.explain)


def test_role_installs_delivers_validates_and_reloads(lab: Lab, host: Host) -> None:
    code, changed, output = host.play(spec("vepa"))
    assert code == 0 and changed > 0, output
    wait_for_mode(lab, host, "vepa")
    pid = host.daemon_pid()
    assert pid is not None, output
    assert (host.root / "opt/macvland/bin/macvland").exists()

    code, changed, output = host.play(spec("vepa"))
    assert (code, changed) == (0, 0), output  # nothing to do is reported as nothing

    ifindex = lab.links()["mv-a"]["ifindex"]
    code, changed, output = host.play(spec("private"))
    assert code == 0 and changed > 0, output
    assert "RUNNING HANDLER [macvland : Signal macvland to re-read its spec]" in output
    wait_for_mode(lab, host, "private")
    assert lab.links()["mv-a"]["ifindex"] == ifindex  # changed in place
    delivered = host.config.read_text()

    code, changed, output = host.play(spec("brige"))
    assert code != 0
    assert "failed to validate" in output, output
    assert "interfaces[0].mode: 'brige' is not one of" in output, output
    assert host.config.read_text() == delivered  # the old spec stays
    assert host.daemon_pid() == pid and mode_of(lab, "mv-a") == "private"

    code, changed, output = host.play(spec("private"))
    assert (code, changed) == (0, 0), output
    assert host.daemon_pid() == pid  # the same daemon followed every delivery


def fragment(*names: str, mode: str = "bridge") -> dict[str, Any]:
    return {"version": 1,
            "interfaces": [{"name": name, "parent": "eth1", "mode": mode} for name in names]}


def test_role_delivers_fragments_validated_together_and_removes_unlisted(
        lab: Lab, host: Host) -> None:
    spec_dir = host.root / "etc/macvland/spec.d"
    host.vars["macvland_config"] = str(spec_dir)
    text = "# from a template\nversion: 1\ninterfaces:\n  - {name: mv-b, parent: eth1}\n"
    code, changed, output = host.play(macvland_fragments={"a": fragment("mv-a"), "b": text})
    assert code == 0 and changed > 0, output
    wait_for_mode(lab, host, "bridge")
    assert sorted(p.name for p in spec_dir.iterdir()) == ["ansible-a.yaml", "ansible-b.yaml"]
    assert (spec_dir / "ansible-b.yaml").read_text() == text
    wait_for(lambda: "mv-b" in lab.links(), "mv-b", explain=host.explain)
    pid = host.daemon_pid()
    assert pid is not None, output
    # A fragment the role does not manage is part of the spec, and is left alone.
    (spec_dir / "local.yaml").write_text("version: 1\ninterfaces: []\n")

    code, changed, output = host.play(macvland_fragments={"a": fragment("mv-a"), "b": text})
    assert (code, changed) == (0, 0), output

    before = {p.name: p.read_text() for p in spec_dir.iterdir()}
    # Alone, each fragment is valid; together, mv-a is defined twice.
    code, changed, output = host.play(
        macvland_fragments={"a": fragment("mv-a"), "b": text, "c": fragment("mv-a")})
    assert code != 0, output
    assert "ansible-c.yaml" in output and "mv-a" in output, output
    code, changed, output = host.play(macvland_fragments={"a": fragment("mv-a", mode="brige")})
    assert code != 0, output
    assert "interfaces[0].mode: 'brige' is not one of" in output, output
    assert {p.name: p.read_text() for p in spec_dir.iterdir()} == before  # nothing landed
    assert host.daemon_pid() == pid and mode_of(lab, "mv-a") == "bridge"
    assert "mv-b" in lab.links()

    # Moving mv-b into a, dropping b: one set, validated as a whole, one reload.
    code, changed, output = host.play(
        macvland_fragments={"a": fragment("mv-a", "mv-b", mode="private")})
    assert code == 0 and changed > 0, output
    assert output.count("RUNNING HANDLER [macvland : Signal macvland to re-read its spec]") == 1
    assert sorted(p.name for p in spec_dir.iterdir()) == ["ansible-a.yaml", "local.yaml"]
    wait_for_mode(lab, host, "private")

    code, changed, output = host.play(macvland_fragments={"b": text})
    assert code == 0 and changed > 0, output
    # The removed fragment's interface is deleted.
    wait_for(lambda: "mv-a" not in lab.links(), "mv-a deleted", explain=host.explain)
    assert "mv-b" in lab.links() and host.daemon_pid() == pid


def test_role_passes_ansible_lint() -> None:
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "ANSIBLE_NOCOLOR": "1",
           "NO_COLOR": "1"}
    lint = subprocess.run(["ansible-lint", "--offline", "deploy/ansible/playbook.yml",
                           "deploy/ansible/roles/macvland"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600, check=False)
    assert lint.returncode == 0, lint.stdout + lint.stderr
