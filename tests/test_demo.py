"""`make demo`, as a newcomer runs it: scripts/demo.sh shows the daemon at work, each step with
the audit line it wrote, and leaves nothing behind, finished or interrupted."""

from __future__ import annotations

import os
import re
import signal
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "scripts" / "demo.sh"


def _namespaces() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], check=True, capture_output=True, text=True)
    return {line.split()[0] for line in out.stdout.splitlines() if line.strip()}


def _left_behind(pid: int, workdir: str) -> list[str]:
    """The demo's namespaces, its directory and any process still naming it."""
    left = sorted(ns for ns in _namespaces() if ns.startswith("mvdemo-") and
                  ns.endswith(f"-{pid}"))
    if os.path.exists(workdir):
        left.append(workdir)
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if workdir.encode() in cmdline:
                words = cmdline.decode(errors="replace").split("\0")
                left.append(f"process {entry.name}: {' '.join(words)}")
    return left


def _workdir(output: str) -> str:
    found = re.search(r"MACVLAND_CONFIG=(/\S+)/etc/macvland\.yaml", output)
    assert found, output[:2000]
    return found.group(1)


def _demo_pid(output: str) -> int:
    found = re.search(r"namespaces: mvdemo-host-(\d+)", output)
    assert found, output[:2000]
    return int(found.group(1))


def test_the_demo_shows_the_daemon_keeping_the_kernel_matching_and_cleans_up() -> None:
    done = subprocess.run([str(DEMO)], capture_output=True, text=True, timeout=300)
    out = done.stdout
    assert done.returncode == 0, f"{out[-3000:]}\n{done.stderr[-2000:]}"
    steps = [
        # The daemon starts and creates what the spec asks for.
        r"pass \([^)]*startup[^)]*\): 3 operation\(s\)",
        # A delete by hand is repaired, and how long it took is said.
        r"ip -n \S+ link del mv-web\n.*create: macvlan bridge on eth1.*\n.*pass \([^)]*drift",
        r"mv-web was back \d+ ms after 'ip link del' returned",
        # A mode changed by hand is put back in place, with the same ifindex.
        r"mode vepa -> bridge \(in place\)",
        r"mv-web keeps ifindex (\d+) \(it was \1\): changed, not re-created",
        # A spec edit is applied in place.
        r"mv-db in netns \S+: mtu 1450 -> 1400 \(in place\)",
        r"mv-db keeps ifindex (\d+) \(it was \1\)",
        # A namespace created later receives its interface.
        r"mv-late in netns \S+: create: .*\n.*pass \([^)]*namespace appeared",
        # A bad edit is rejected with its file:line:col, and the last good spec still rules.
        r"spec rejected: \S+ \(keeping spec [0-9a-f]+\)",
        r"macvland\.yaml:5:11: interfaces\[0\]\.mode: 'brigde' is not one of",
        r"link del mv-db .*\n.*create: macvlan bridge on eth1, mtu 1400, up",
        # status ends it: all in sync, and the tree under the parent, the hand-made one apart.
        r"mv-web in netns \S+: in sync\n\neth1\n",
        r"mv-manual .*\(not managed; kernel: mv-manual@eth1\)",
    ]
    at = 0
    for step in steps:
        found = re.compile(step).search(out, at)
        assert found, f"{step!r} not found after offset {at} in:\n{out}"
        at = found.start()
    assert "demo failed" not in out + done.stderr
    assert len(out.splitlines()) < 120, "short enough to read in a terminal"
    assert _left_behind(_demo_pid(out), _workdir(out)) == []


def test_an_interrupted_demo_leaves_nothing_behind() -> None:
    demo = subprocess.Popen([str(DEMO)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    seen = []
    try:
        assert demo.stdout is not None
        for line in demo.stdout:  # interrupted while the daemon runs
            seen.append(line)
            if "Delete mv-web by hand" in line:
                break
        demo.send_signal(signal.SIGINT)
        rest, errors = demo.communicate(timeout=60)
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
    out = "".join(seen) + rest
    assert demo.returncode == 130, out
    assert "demo failed (exit 130); its daemon, namespaces and files were removed" in errors
    assert _left_behind(demo.pid, _workdir(out)) == []
