"""What the intake refuses to read, and why: permissions, special files, sizes, open writers.

Permission cases build real files and directories under pytest's tmp_path (whose parents,
/tmp with its sticky bit and pytest's own 0700 directories, are safe) and check the message
names the path, what is wrong and the fix. `validate` as a process, fed hostile files, must
fail in bounded memory with a short message and no traceback.
"""

from __future__ import annotations

import os
import resource
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from macvland.errors import PROBLEM_LIMIT, SpecError
from macvland.intake import (
    being_written,
    load_spec,
    parse_size,
    read_spec,
    unsafe_paths,
)
from tests.helpers import MACVLAND

GOOD = "version: 1\ninterfaces:\n  - name: mv0\n    parent: eth1\n"
NOBODY = 65534


def problems(path: Path, max_bytes: int = 1 << 20) -> list[str]:
    with pytest.raises(SpecError) as caught:
        read_spec(str(path), max_bytes)
    return [str(p) for p in caught.value.problems]


# --- permissions --------------------------------------------------------------------------


def world_writable_file(tmp: Path) -> tuple[Path, Path]:
    spec = tmp / "macvland.yaml"
    spec.write_text(GOOD)
    spec.chmod(0o646)
    return spec, spec


def group_writable_file(tmp: Path) -> tuple[Path, Path]:
    spec = tmp / "macvland.yaml"
    spec.write_text(GOOD)
    spec.chmod(0o664)
    return spec, spec


def file_owned_by_another_user(tmp: Path) -> tuple[Path, Path]:
    spec = tmp / "macvland.yaml"
    spec.write_text(GOOD)
    os.chown(spec, NOBODY, -1)
    return spec, spec


def directory_writable_by_everyone(tmp: Path) -> tuple[Path, Path]:
    directory = tmp / "etc"
    directory.mkdir()
    directory.chmod(0o777)
    spec = directory / "macvland.yaml"
    spec.write_text(GOOD)
    return spec, directory


def directory_above_owned_by_another_user(tmp: Path) -> tuple[Path, Path]:
    above = tmp / "srv"
    (above / "etc").mkdir(parents=True)
    os.chown(above, NOBODY, -1)
    spec = above / "etc" / "macvland.yaml"
    spec.write_text(GOOD)
    return spec, above


def symlink_to_an_unsafe_target(tmp: Path) -> tuple[Path, Path]:
    elsewhere = tmp / "elsewhere.yaml"
    elsewhere.write_text(GOOD)
    elsewhere.chmod(0o646)
    spec = tmp / "macvland.yaml"
    spec.symlink_to(elsewhere)
    return spec, elsewhere


def symlink_into_an_unsafe_directory(tmp: Path) -> tuple[Path, Path]:
    unsafe = tmp / "drop"
    unsafe.mkdir()
    (unsafe / "macvland.yaml").write_text(GOOD)
    unsafe.chmod(0o777)
    spec = tmp / "macvland.yaml"
    spec.symlink_to(unsafe / "macvland.yaml")
    return spec, unsafe


def configmap_with_an_unsafe_version_directory(tmp: Path) -> tuple[Path, Path]:
    version = tmp / "..2026_01"
    version.mkdir()
    (version / "macvland.yaml").write_text(GOOD)
    version.chmod(0o775)
    os.symlink("..2026_01", tmp / "..data")
    spec = tmp / "macvland.yaml"
    os.symlink("..data/macvland.yaml", spec)
    return spec, version


def unsafe_fragment(tmp: Path) -> tuple[Path, Path]:
    directory = tmp / "macvland.d"
    directory.mkdir()
    (directory / "10-a.yaml").write_text(GOOD)
    bad = directory / "20-b.yaml"
    bad.write_text("version: 1\ninterfaces: []\n")
    bad.chmod(0o622)
    return directory, bad


def unsafe_fragments_directory(tmp: Path) -> tuple[Path, Path]:
    directory = tmp / "macvland.d"
    directory.mkdir()
    (directory / "10-a.yaml").write_text(GOOD)
    directory.chmod(0o757)
    return directory, directory


UNSAFE: dict[str, tuple[Callable[[Path], tuple[Path, Path]], str, str]] = {
    # id: (make it, what is wrong, the fix)
    "world-writable-file": (world_writable_file, "writable by everyone (mode 0646)",
                            "chmod o-w"),
    "group-writable-file": (group_writable_file, "writable by group", "chmod g-w"),
    "file-owned-by-another-user": (file_owned_by_another_user, "owned by nobody (uid 65534)",
                                   "chown root"),
    "directory-writable-by-everyone": (directory_writable_by_everyone,
                                       "and everyone (mode 0777 and no sticky bit)",
                                       "chmod go-w"),
    "directory-above-owned-by-another-user": (directory_above_owned_by_another_user,
                                              "owned by nobody (uid 65534)", "chown root"),
    "symlink-to-an-unsafe-target": (symlink_to_an_unsafe_target, "writable by everyone",
                                    "chmod o-w"),
    "symlink-into-an-unsafe-directory": (symlink_into_an_unsafe_directory,
                                         "and everyone (mode 0777", "chmod go-w"),
    "configmap-version-directory": (configmap_with_an_unsafe_version_directory,
                                    "writable by group", "chmod g-w"),
    "unsafe-fragment": (unsafe_fragment,
                        "a fragment is writable by group root (gid 0) and everyone (mode 0622)",
                        "chmod go-w"),
    "unsafe-fragments-directory": (unsafe_fragments_directory, "writable by everyone",
                                   "chmod o-w"),
}


@pytest.mark.parametrize(("make", "wrong", "fix"), UNSAFE.values(), ids=UNSAFE.keys())
def test_a_spec_others_can_change_is_refused_naming_the_path_and_the_fix(
        tmp_path: Path, make: Callable[[Path], tuple[Path, Path]], wrong: str,
        fix: str) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to give files to another user")
    spec, culprit = make(tmp_path)
    (problem,) = problems(spec)
    assert problem.startswith(f"{culprit}: "), problem
    assert wrong in problem, problem
    assert f"fix: {fix} {culprit}" in problem, problem


def test_a_sticky_world_writable_directory_is_fine_for_a_root_owned_spec(
        tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    (shared / "macvland.yaml").write_text(GOOD)
    assert unsafe_paths(str(shared / "macvland.yaml")) == []
    assert [s.name for s in load_spec(str(shared / "macvland.yaml")).interfaces] == ["mv0"]


def test_a_safe_configmap_layout_is_accepted(tmp_path: Path) -> None:
    (tmp_path / "..2026_01").mkdir()
    (tmp_path / "..2026_01" / "macvland.yaml").write_text(GOOD)
    os.symlink("..2026_01", tmp_path / "..data")
    os.symlink("..data/macvland.yaml", tmp_path / "macvland.yaml")
    assert unsafe_paths(str(tmp_path / "macvland.yaml")) == []


def test_write_bits_on_a_read_only_mount_are_no_danger(tmp_path: Path) -> None:
    # A ConfigMap volume: a world-writable directory, mounted read-only into the container.
    volume = tmp_path / "volume"
    volume.mkdir()
    (volume / "macvland.yaml").write_text(GOOD)
    volume.chmod(0o777)
    script = ('mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" && '
              'exec "$2" validate -c "$1/macvland.yaml"')
    result = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                             script, "_", str(volume), MACVLAND],
                            capture_output=True, text=True, timeout=60)
    assert (result.returncode, result.stderr) == (0, ""), result.stderr
    assert unsafe_paths(str(volume / "macvland.yaml")) != []  # writable where it is not ro


def test_every_unsafe_path_is_reported_at_once(tmp_path: Path) -> None:
    directory = tmp_path / "etc"
    directory.mkdir()
    spec = directory / "macvland.yaml"
    spec.write_text(GOOD)
    spec.chmod(0o666)
    directory.chmod(0o777)
    assert sorted(p.split(":")[0] for p in problems(spec)) == [str(directory), str(spec)]


# --- what is read ---------------------------------------------------------------------------


def test_a_spec_above_the_limit_is_refused_before_it_is_read(tmp_path: Path) -> None:
    spec = tmp_path / "macvland.yaml"
    spec.write_text(GOOD + "#" * 2000 + "\n")
    (problem,) = problems(spec, max_bytes=1000)
    assert problem == (
        f"{spec}: it is {len(GOOD) + 2001:,} bytes, above the limit of 1,000 bytes; not read "
        "(raise the limit with --max-spec-bytes or $MACVLAND_MAX_SPEC_BYTES if the spec is "
        "meant to be this big)")


def test_the_fragments_of_a_directory_count_together_against_the_limit(
        tmp_path: Path) -> None:
    directory = tmp_path / "macvland.d"
    directory.mkdir()
    for name in ("a", "b", "c"):
        (directory / f"{name}.yaml").write_text(GOOD.replace("mv0", name) + "#" * 400 + "\n")
    size = sum(fragment.stat().st_size for fragment in directory.iterdir())
    assert len(load_spec(str(directory), max_bytes=size).interfaces) == 3
    (problem,) = problems(directory, max_bytes=size - 1)
    assert f"{directory}: its fragments add up to {size:,} bytes, above the limit" in problem


def test_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "macvland.yaml"
    os.mkfifo(fifo, 0o600)
    assert problems(fifo) == [f"{fifo}: cannot read: a FIFO, not a regular file"]


def test_too_many_problems_are_counted_not_kept() -> None:
    from macvland.spec import parse_spec

    text = "version: 1\ninterfaces:\n" + "  - {name: mv0, mode: x}\n" * 200
    with pytest.raises(SpecError) as caught:
        parse_spec(text, "spec.yaml")
    error = caught.value
    assert len(error.problems) == PROBLEM_LIMIT
    # Each item: parent missing, mode bad (without a parent, no cross check sees it).
    assert error.omitted == 200 * 2 - PROBLEM_LIMIT
    assert str(error).splitlines()[-1] == f"... and {error.omitted:,} more problem(s)"


@pytest.mark.parametrize(("text", "expected"), [
    ("4194304", 4194304), ("4M", 4 << 20), ("512k", 512 << 10), ("1G", 1 << 30)])
def test_sizes_take_binary_suffixes(text: str, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "0", "-1", "4MB", "1.5M", "lots"])
def test_a_size_that_is_not_one_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="positive number of bytes"):
        parse_size(text)


def test_a_file_open_for_writing_is_being_written(tmp_path: Path) -> None:
    spec = tmp_path / "macvland.yaml"
    spec.write_text(GOOD)
    assert being_written(str(spec)) is False
    with open(spec, "a") as writer:
        assert being_written(str(spec)) is True
        writer.write("# more\n")
    assert being_written(str(spec)) is False
    with open(spec):  # readers do not count
        assert being_written(str(spec)) is False


# --- hostile files through `macvland validate` ----------------------------------------------


def _alias_bomb(path: Path) -> None:
    lines = ["version: 1", 'a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
    lines += ["interfaces: *a9"]
    path.write_text("\n".join(lines) + "\n")


def _alias_bomb_of_interfaces(path: Path) -> None:
    path.write_text("version: 1\nx: &i {name: mv0, parent: eth1}\ninterfaces: ["
                    + ", ".join(["*i"] * 200_000) + "]\n")


def _huge(path: Path) -> None:
    item = "  - name: mv{0}\n    parent: eth1\n    mode: bridge\n    mtu: 1500\n"
    with open(path, "w") as file:
        file.write("version: 1\ninterfaces:\n")
        for i in range(100_000):
            file.write(item.format(i))


def _many_nodes(path: Path) -> None:
    path.write_text("version: 1\ninterfaces: [" + "a," * 1_500_000 + "a]\n")


def _deep(path: Path) -> None:
    path.write_text("version: 1\ninterfaces: " + "[" * 200_000 + "]" * 200_000 + "\n")


def _binary(path: Path) -> None:
    path.write_bytes(bytes(range(256)) * 4096)


def _nul_bytes(path: Path) -> None:
    path.write_bytes(GOOD.encode().replace(b"mv0", b"mv\x000"))


def _not_utf8(path: Path) -> None:
    path.write_bytes(GOOD.encode().replace(b"mv0", "mv\xe9".encode("latin-1")))


def _directory(path: Path) -> None:
    path.mkdir()
    (path / "notes.txt").write_text("not a fragment")


HOSTILE: dict[str, tuple[Callable[[Path], None], str]] = {
    "alias-bomb": (_alias_bomb, "interfaces[0]: expected a mapping, got a list"),
    "alias-bomb-of-interfaces": (_alias_bomb_of_interfaces,
                                 "interfaces[1]: repeats interfaces[0] through an alias"),
    "huge-file": (_huge, "above the limit of 4,194,304 bytes"),
    "millions-of-nodes": (_many_nodes, "more than 500,000 YAML nodes"),
    "deep-nesting": (_deep, "nested too deeply"),
    "binary": (_binary, "not valid UTF-8"),
    "nul-bytes": (_nul_bytes, "unacceptable character #x0000"),
    "not-utf-8": (_not_utf8, "not valid UTF-8"),
    "directory-where-a-file-should-be": (_directory, "no *.yaml fragments"),
}
"""What a hostile or broken spec looks like, and a part of the message that says so."""

PEAK_RSS_LIMIT_MB = 150
"""The bound on `validate`'s peak memory for any input (measured: under 60 MB for these)."""


def _validate(config: Path) -> tuple[int, str, float]:
    """Exit code, stderr and peak RSS in MB of `macvland validate -c config`."""
    env = {k: v for k, v in os.environ.items() if k != "MACVLAND_MAX_SPEC_BYTES"}
    process = subprocess.Popen([MACVLAND, "validate", "-c", str(config)], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert process.stderr is not None
    stderr = process.stderr.read()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    return process.returncode, stderr.decode(errors="replace"), usage.ru_maxrss / 1024


@pytest.mark.parametrize(("make", "message"), HOSTILE.values(), ids=HOSTILE.keys())
def test_validate_refuses_a_hostile_spec_briefly_in_bounded_memory(
        tmp_path: Path, make: Callable[[Path], None], message: str) -> None:
    config = tmp_path / "macvland.yaml"
    make(config)
    code, stderr, peak_mb = _validate(config)
    assert code == 1, stderr
    assert message in stderr, stderr[:2000]
    assert "Traceback" not in stderr
    assert len(stderr) < 20_000, f"{len(stderr)} characters of errors"
    assert len(stderr.splitlines()) <= PROBLEM_LIMIT + 1
    assert peak_mb < PEAK_RSS_LIMIT_MB, f"peak RSS {peak_mb:.0f} MB"
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss > 0  # the reading is real


def _run_validate(config: Path, *args: str, env: dict[str, str] | None = None,
                  ) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if k != "MACVLAND_MAX_SPEC_BYTES"}
    return subprocess.run([MACVLAND, "validate", "-c", str(config), *args], capture_output=True,
                          text=True, env={**environment, **(env or {})}, timeout=60)


@pytest.mark.parametrize(("args", "env"), [
    pytest.param(("--max-spec-bytes", "40"), {}, id="option"),
    pytest.param((), {"MACVLAND_MAX_SPEC_BYTES": "40"}, id="environment"),
    pytest.param(("--max-spec-bytes", "40"), {"MACVLAND_MAX_SPEC_BYTES": "4M"},
                 id="option-over-environment"),
])
def test_the_size_limit_is_set_by_option_or_environment(
        tmp_path: Path, args: tuple[str, ...], env: dict[str, str]) -> None:
    config = tmp_path / "macvland.yaml"
    config.write_text(GOOD)
    assert _run_validate(config).returncode == 0
    result = _run_validate(config, *args, env=env)
    assert result.returncode == 1
    assert result.stderr == (
        f"{config}: it is {len(GOOD)} bytes, above the limit of 40 bytes; not read (raise the "
        "limit with --max-spec-bytes or $MACVLAND_MAX_SPEC_BYTES if the spec is meant to be "
        "this big)\n")


def test_a_malformed_size_limit_in_the_environment_is_named(tmp_path: Path) -> None:
    config = tmp_path / "macvland.yaml"
    config.write_text(GOOD)
    result = _run_validate(config, env={"MACVLAND_MAX_SPEC_BYTES": "lots"})
    assert (result.returncode, result.stderr) == (1, (
        "macvland: $MACVLAND_MAX_SPEC_BYTES: expected a positive number of bytes, like "
        "4194304 or 4M\n"))


def test_validate_reports_an_unsafe_spec_as_it_reports_a_bad_one(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("the message names root as the only allowed writer only when run as root")
    config = tmp_path / "macvland.yaml"
    config.write_text(GOOD)
    config.chmod(0o646)
    result = _run_validate(config)
    assert result.returncode == 1
    assert result.stderr == (
        f"{config}: the spec is writable by everyone (mode 0646): macvland acts only on a "
        f"spec that nobody but root can change; fix: chmod o-w {config}\n")
