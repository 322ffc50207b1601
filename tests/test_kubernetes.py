"""The Kubernetes manifests and the image: kubernetes-validate in strict mode, the manifests
naming what the image holds, and the container check.

No container engine runs here and no base image can be pulled, so the container check runs
"the same root": a Debian root made by mmdebstrap with the Containerfile's runtime packages
(cached outside the checkout, keyed by that list), with the Containerfile's virtualenv, ENV,
ENTRYPOINT and directories laid over it, run with the DaemonSet's mounts (the ConfigMap as a
read-only directory in kubelet's `..data` layout, /run/netns with propagation from the host, a
read-only root), its capabilities (NET_ADMIN and SYS_ADMIN, every other one dropped, no new
privileges) and its environment, in a throwaway namespace playing the node's network.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import Lab
from tests.helpers import MACVLAND, Process, built_once, checkout_wheels
from tests.test_daemon import Expect, all_there, spec_text

REPO = Path(__file__).parent.parent
KUBE = REPO / "deploy" / "kubernetes"
BIN = Path(sys.executable).parent
KUBERNETES_VERSION = "1.37.0"
ROOT_CACHE = Path(os.environ.get("MACVLAND_TEST_CACHE", "/var/cache/macvland-tests"))
SUITE = "bookworm"  # the Containerfile's debian:bookworm-slim


# --- what the manifests and the Containerfile say ------------------------------------------


def manifests() -> dict[str, dict[str, Any]]:
    found = {}
    for path in sorted(KUBE.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            found[doc["kind"]] = doc
    return found


def container() -> dict[str, Any]:
    (only,) = manifests()["DaemonSet"]["spec"]["template"]["spec"]["containers"]
    return dict(only)


@dataclass(frozen=True)
class Image:
    """The final stage of the Containerfile."""

    packages: tuple[str, ...]
    env: dict[str, str]
    entrypoint: list[str]
    cmd: list[str]
    directories: tuple[str, ...]


def image() -> Image:
    text = (KUBE / "Containerfile").read_text().replace("\\\n", " ")
    final = re.split(r"^FROM .*$", text, flags=re.MULTILINE)[-1]
    install = re.search(r"apt-get install -y --no-install-recommends ([^&]+)", final)
    assert install, "the final stage installs its packages with apt-get"
    env = dict(re.findall(r"^ENV (\w+)=(\S+)$", final, flags=re.MULTILINE))
    entrypoint = re.search(r"^ENTRYPOINT (\[.*\])$", final, flags=re.MULTILINE)
    cmd = re.search(r"^CMD (\[.*\])$", final, flags=re.MULTILINE)
    mkdir = re.search(r"^RUN mkdir -p (.+)$", final, flags=re.MULTILINE)
    assert entrypoint and cmd and mkdir
    return Image(tuple(install.group(1).split()), env, json.loads(entrypoint.group(1)),
                 json.loads(cmd.group(1)), tuple(mkdir.group(1).split()))


def kubernetes_validate(*paths: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([BIN / "kubernetes-validate", "--strict", "-k", KUBERNETES_VERSION,
                           *map(str, paths)], cwd=REPO, capture_output=True, text=True,
                          check=False)


def test_every_manifest_passes_kubernetes_validate_in_strict_mode(tmp_path: Path) -> None:
    files = sorted(str(p.relative_to(REPO)) for p in KUBE.glob("*.yaml"))
    assert files == ["deploy/kubernetes/configmap.yaml", "deploy/kubernetes/daemonset.yaml",
                     "deploy/kubernetes/namespace.yaml"]
    checked = kubernetes_validate(*files)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.count(" passed for resource ") == 3, checked.stdout
    # Strict mode is what catches a misspelt field, which Kubernetes would drop silently.
    typo = tmp_path / "daemonset.yaml"
    typo.write_text((KUBE / "daemonset.yaml").read_text().replace(
        "hostNetwork: true", "hostNetwrk: true"))
    refused = kubernetes_validate(typo)
    assert refused.returncode != 0 and "hostNetwrk" in refused.stdout + refused.stderr


def test_the_daemonset_runs_what_the_image_holds() -> None:
    spec = manifests()["DaemonSet"]["spec"]
    pod = spec["template"]["spec"]
    c = container()
    built = image()
    assert "command" not in c, "the image's ENTRYPOINT runs"
    assert built.entrypoint == ["macvland"]
    assert c["args"][0] == built.cmd[0] == "run"
    probe = c["readinessProbe"]["exec"]["command"]
    assert probe == [*built.entrypoint, "status", "--ready"]
    assert pod["hostNetwork"] is True and pod["nodeSelector"]
    assert spec["updateStrategy"]["type"] == "RollingUpdate"
    assert spec["updateStrategy"]["rollingUpdate"]["maxUnavailable"] == 1
    security = c["securityContext"]
    assert security["privileged"] is False and security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"], "add": ["NET_ADMIN", "SYS_ADMIN"]}
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    assert all("subPath" not in m for m in mounts.values()), "a subPath never updates"
    assert mounts["/run/netns"]["mountPropagation"] == "HostToContainer"
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes[mounts["/etc/macvland"]["name"]]["configMap"]["name"] == \
        manifests()["ConfigMap"]["metadata"]["name"]
    assert set(mounts) == set(built.directories), "every mount point exists in the image"
    metrics = c["args"][c["args"].index("--metrics-file") + 1]
    assert os.path.dirname(metrics) in mounts
    assert c["resources"]["limits"]["memory"]


def test_the_configmaps_spec_validates(tmp_path: Path) -> None:
    for key, text in manifests()["ConfigMap"]["data"].items():
        path = tmp_path / key
        path.write_text(text)
        checked = subprocess.run([MACVLAND, "validate", "-c", str(path)],
                                 capture_output=True, text=True, check=False)
        assert checked.returncode == 0, checked.stderr


# --- the container check --------------------------------------------------------------------


@pytest.fixture(scope="module")
def base_root() -> Path:
    """A Debian root with the image's runtime packages (and venv, which the Containerfile's
    build stage has), made once per package list and kept outside the checkout."""
    if shutil.which("mmdebstrap") is None:
        pytest.fail("mmdebstrap is missing: `make deps` installs it")
    packages = (*image().packages, "python3-venv")
    key = hashlib.sha256(" ".join((SUITE, *packages)).encode()).hexdigest()[:16]

    def build(building: Path) -> None:
        made = subprocess.run(["mmdebstrap", "--variant=minbase", "--quiet",
                               f"--include={','.join(packages)}", SUITE, str(building)],
                              capture_output=True, text=True, timeout=1200, check=False)
        assert made.returncode == 0, made.stdout + made.stderr

    return built_once(ROOT_CACHE / f"root-{key}", build)


@pytest.fixture(scope="module")
def image_layer(base_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Containerfile's layers above the packages, as an overlay upper directory: the
    virtualenv with macvland and its dependencies (from wheels built here, the build stage's
    job) and the mount points."""
    wheels = checkout_wheels(tmp_path_factory)
    layer = tmp_path_factory.mktemp("layer")
    (layer / "upper").mkdir()
    (layer / "work").mkdir()
    (layer / "merged").mkdir()
    built = image()
    script = f"""
set -eu
mount -t overlay overlay -o lowerdir={base_root},upperdir={layer}/upper,workdir={layer}/work \
    {layer}/merged
mkdir -p {layer}/merged/wheels
mount --bind {wheels} {layer}/merged/wheels
mount --rbind /dev {layer}/merged/dev
mount --rbind /proc {layer}/merged/proc
chroot {layer}/merged python3 -m venv /opt/macvland
chroot {layer}/merged /opt/macvland/bin/pip install -q --no-cache-dir --no-index \
    --find-links /wheels macvland
chroot {layer}/merged mkdir -p {" ".join(built.directories)}
umount {layer}/merged/wheels
rmdir {layer}/merged/wheels
"""
    made = subprocess.run(["unshare", "--mount", "--propagation", "private", "bash", "-c",
                           script], capture_output=True, text=True, timeout=600, check=False)
    assert made.returncode == 0, made.stdout + made.stderr
    return layer


class Pod(Process):
    """The image's root run the way the DaemonSet runs it, in the lab's home namespace."""

    def __init__(self, lab: Lab, layer: Path, base: Path, tmp_path: Path) -> None:
        super().__init__("the container", tmp_path / "pod.log")
        self.lab, self.layer, self.base = lab, layer, base
        self.node = tmp_path / "node"  # the node's side of the hostPath and ConfigMap volumes
        c = container()
        volumes = {v["name"]: v for v in manifests()["DaemonSet"]["spec"]["template"]
                   ["spec"]["volumes"]}
        self.sources: dict[str, Path] = {}
        for mount in c["volumeMounts"]:
            volume = volumes[mount["name"]]
            if "hostPath" in volume and volume["hostPath"]["path"] == "/run/netns":
                self.sources[mount["mountPath"]] = Path("/run/netns")  # the real one
            else:
                self.sources[mount["mountPath"]] = self.node / mount["name"]
                self.sources[mount["mountPath"]].mkdir(parents=True, mode=0o755)
        self.mounts = c["volumeMounts"]
        self.env = {**image().env, **{e["name"]: e["value"] for e in c["env"]}}
        caps = c["securityContext"]["capabilities"]["add"]
        self.setpriv = ["setpriv", "--bounding-set=-all," + ",".join(
            f"+{cap.lower()}" for cap in caps), "--inh-caps=-all", "--no-new-privs", "--"]
        self.command = [*image().entrypoint, *c["args"]]
        self.probe = c["readinessProbe"]["exec"]["command"]
        self.merged = tmp_path / "merged"
        self.merged.mkdir()

    def path(self, mount_path: str) -> Path:
        return self.sources[mount_path]

    def start(self) -> None:
        m = self.merged
        # Two lower layers and no upper one: a read-only root (readOnlyRootFilesystem).
        lines = ["set -eu",
                 f"mount -t overlay overlay -o lowerdir={self.layer}/upper:{self.base} {m}",
                 f"mount --rbind /proc {m}/proc",
                 f"mount --rbind /dev {m}/dev"]
        for mount in self.mounts:
            target = f"{m}{mount['mountPath']}"
            lines.append(f"mount --rbind {self.sources[mount['mountPath']]} {target}")
            if mount.get("mountPropagation") == "HostToContainer":
                lines.append(f"mount --make-rslave {target}")
            if mount.get("readOnly"):
                lines.append(f"mount -o remount,bind,ro {target}")
        env = [f"{k}={v}" for k, v in self.env.items()]
        lines.append(shlex.join(["exec", "chroot", str(m), "/usr/bin/env", "-i", *env,
                                 *self.setpriv, *self.command]))
        self.spawn(["ip", "netns", "exec", self.lab.home, "unshare", "--mount", "--propagation",
                    "slave", "bash", "-c", "\n".join(lines)])

    def exec(self, command: list[str]) -> subprocess.CompletedProcess[str]:
        """What kubelet's exec probe does: the command inside the container's namespaces and
        root, with its environment and capabilities."""
        env = [f"{k}={v}" for k, v in self.env.items()]
        return subprocess.run(["nsenter", "-t", str(self.pid), "-m", "-n", "-r", "-w",
                               "/usr/bin/env", "-i", *env, *self.setpriv, *command],
                              capture_output=True, text=True, timeout=60, check=False)


@pytest.fixture
def pod(lab: Lab, image_layer: Path, base_root: Path, tmp_path: Path) -> Iterator[Pod]:
    p = Pod(lab, image_layer, base_root, tmp_path)
    try:
        yield p
    finally:
        p.kill()


_generation = iter(range(1, 1000))


def configmap_write(directory: Path, files: dict[str, str]) -> None:
    """kubelet's atomic writer: a new timestamped directory, `..data` renamed to point at it,
    one symlink per key through `..data`, then the old directory removed."""
    stamp = directory / f"..2026_12_01_21_00_00.{next(_generation):09d}"
    stamp.mkdir(mode=0o755)
    for key, text in files.items():
        (stamp / key).write_text(text)
        os.chmod(stamp / key, 0o644)  # the ConfigMap volume's defaultMode
    old = os.readlink(directory / "..data") if (directory / "..data").is_symlink() else None
    os.symlink(stamp.name, directory / "..data_tmp")
    os.rename(directory / "..data_tmp", directory / "..data")
    for key in files:
        if not (directory / key).is_symlink():
            os.symlink(f"..data/{key}", directory / key)
    if old is not None:
        shutil.rmtree(directory / old)


def drift_corrections(text: str) -> float:
    found = re.search(r"^macvland_drift_corrections_total (\S+)$", text, flags=re.MULTILINE)
    assert found, text
    return float(found.group(1))


def test_the_image_root_converges_and_follows_a_configmap_swap(lab: Lab, pod: Pod) -> None:
    red = lab.name("red")  # a namespace the node makes after the pod started
    spec_dir = pod.path("/etc/macvland")
    first = spec_text({"name": "mv-k1", "parent": "eth1", "mode": "bridge"},
                      {"name": "mv-k2", "parent": "eth2", "mode": "private", "netns": red})
    configmap_write(spec_dir, {"macvland.yaml": first})
    pod.start()
    pod.wait_for(lambda: all_there(lab, Expect("mv-k1", "eth1", "bridge")), "mv-k1")

    ready = pod.exec(pod.probe)
    assert (ready.returncode, ready.stdout.strip()) == (
        0, f"1 in sync, 1 pending: mv-k2 waits for netns {red}"), ready.stderr

    lab.add_netns("red")  # appears in the pod through the HostToContainer mount
    pod.wait_for(lambda: all_there(lab, Expect("mv-k2", "eth2", "private", red)), "mv-k2")

    configmap_write(spec_dir, {"macvland.yaml": first.replace("mode: bridge", "mode: vepa")})
    pod.wait_for(lambda: all_there(lab, Expect("mv-k1", "eth1", "vepa")), "mv-k1 in vepa")
    ready = pod.exec(pod.probe)
    assert (ready.returncode, ready.stdout.strip()) == (0, "2 in sync"), ready.stderr

    metrics = pod.path("/var/lib/macvland/metrics") / "macvland.prom"
    before = drift_corrections(metrics.read_text())
    lab.ip("link", "del", "mv-k1")
    pod.wait_for(lambda: all_there(lab, Expect("mv-k1", "eth1", "vepa")), "mv-k1 repaired")
    pod.wait_for(lambda: drift_corrections(metrics.read_text()) == before + 1,
                 "the repair in the metrics file on the node")
    assert 'macvland_interfaces{condition="in_sync"} 2.0' in metrics.read_text()

    # The capabilities were really dropped, and the root really is read-only.
    status = pod.exec(["sh", "-c", "grep CapEff /proc/self/status; touch /probe 2>&1 || :"])
    assert "CapEff:\t0000000000201000" in status.stdout, status.stdout  # NET_ADMIN, SYS_ADMIN
    assert "Read-only file system" in status.stdout, status.stdout
    assert pod.stop() == 0, pod.log()
