"""Reading the spec from disk: only from safe places, only regular files, within a bound.

What macvland reads decides what it creates and deletes as root, so before a byte is parsed:

- **Permissions, like sshd's StrictModes.** The spec file, each fragment, the directory of
  fragments and every directory on the way to them (up to /) must be owned by root or by
  macvland's own user, and writable by nobody else. A directory writable by others is fine
  when it has the sticky bit (like /tmp): nobody but an entry's owner can rename or replace
  that entry; so are write bits on a read-only mount (a Kubernetes ConfigMap volume).
  Symlinks (kubelet's `..data` layout) are judged by their targets, and every directory the
  resolution passes through counts: whoever can write one of them can point the spec
  elsewhere. Each problem names the path, what is wrong and the command that fixes it.
- **Only regular files.** A FIFO, a device or a socket is refused, never opened for a blocking
  read (`/dev/zero` would never end, a FIFO never start).
- **A size bound.** A spec above `max_bytes` (a fragments directory: all fragments together)
  is refused before it is read, with its size and the limit; the parse's memory grows with
  the text, so the bound on the text is the bound on the memory.

`being_written` tells whether some process still has a file open for writing, for the daemon's
rule of acting only on a file whose writer is done.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import grp
import hashlib
import os
import pwd
import stat

from macvland.errors import SpecError, SpecProblem
from macvland.model import SpecSource

# The parser (and YAML) are imported where a spec is read: the CLI names this module's limits
# in its help, and a command's start-up is most of its time.
TYPE_CHECKING = False  # importing typing costs 5 ms of start-up; only mypy needs it
if TYPE_CHECKING:
    from macvland.model import DesiredState

__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEFAULT_SETTLE",
    "MAX_BYTES_ENV",
    "being_written",
    "load_spec",
    "max_bytes_from_env",
    "read_spec",
    "spec_files",
    "unsafe_paths",
]


DEFAULT_MAX_BYTES = 4 << 20
"""4 MiB: a spec of 10,000 interfaces with every setting is 1.4 MB (29,000 fit). Parsing
memory follows YAML nodes, which spec.MAX_NODES bounds too: the worst spec measured under
both limits peaks at about 215 MB; 10,000 real interfaces at about 105 MB."""

MAX_BYTES_ENV = "MACVLAND_MAX_SPEC_BYTES"

DEFAULT_SETTLE = 5.0
"""Seconds a spec still open for writing must stay unchanged to be read anyway (`run
--settle`); also how long a reload waits for a writer at work (see reader.py)."""

_SYMLINK_HOPS = 40
"""As many symlinks as the kernel follows in one path lookup (MAXSYMLINKS)."""


def max_bytes_from_env() -> int:
    """The size limit from $MACVLAND_MAX_SPEC_BYTES, or the default; ValueError if malformed."""
    text = os.environ.get(MAX_BYTES_ENV, "")
    try:
        return parse_size(text) if text else DEFAULT_MAX_BYTES
    except ValueError as error:
        raise ValueError(f"${MAX_BYTES_ENV}: {error}") from None


def parse_size(text: str) -> int:
    """A positive byte count, optionally with a K, M or G suffix (binary: 4M is 4 MiB)."""
    multiplier = 1
    if text[-1:].upper() in ("K", "M", "G"):
        multiplier = 1 << (10 * ("KMG".index(text[-1].upper()) + 1))
        text = text[:-1]
    if not text.isdigit() or int(text) <= 0:
        raise ValueError("expected a positive number of bytes, like 4194304 or 4M")
    return int(text) * multiplier


def load_spec(path: str, max_bytes: int = DEFAULT_MAX_BYTES,
              state_dir: str | None = None) -> DesiredState:
    """Read and parse the spec at `path`, a file or a directory of `*.yaml` fragments.

    An unsafe, unreadable or oversized spec, or a directory without fragments, is a SpecError.
    With `state_dir`, the bytes are read and checked as always, but a parse of exactly them
    kept there is taken instead of parsing again, and a new parse is kept (parsed.py).
    """
    source = read_spec(path, max_bytes)
    if state_dir is None:
        return _parse(source)
    from macvland import parsed

    desired = parsed.load(source, state_dir)
    if desired is None:  # only now the parser, and YAML (15 ms of start-up)
        desired = _parse(source)
        parsed.store(source, desired, state_dir)
    return desired


def _parse(source: SpecSource) -> DesiredState:
    from macvland.spec import parse_source

    return parse_source(source)


def read_spec(path: str, max_bytes: int = DEFAULT_MAX_BYTES) -> SpecSource:
    """The spec's bytes and their hash; SpecError when they must not or cannot be read."""
    problems = unsafe_paths(path)
    if problems:
        raise SpecError(problems)
    try:
        if os.path.isdir(path):
            return _read_directory(path, max_bytes)
        data = _read(path, max_bytes)
    except _TooLarge as large:
        raise SpecError([_too_large(path, large.size, max_bytes)]) from None
    except OSError as exc:
        raise SpecError([_unreadable(path, exc)]) from exc
    return SpecSource(path, ((path, data),), hashlib.sha256(data).hexdigest())


def spec_files(path: str) -> list[str]:
    """The files whose bytes make up the spec: the file, or the directory's fragments."""
    try:
        if os.path.isdir(path):
            return [os.path.join(path, name) for name in _fragment_names(path)]
    except OSError:
        return []
    return [path]


def being_written(path: str) -> bool | None:
    """True while some process has `path` open for writing; None when the kernel cannot say.

    A read lease (fcntl F_SETLEASE, F_RDLCK) is refused with EAGAIN exactly while the file is
    open for writing anywhere: an exact answer with no scan of /proc. It needs the file to be
    ours (or CAP_LEASE) and a file system with leases; without, the answer is None. The lease
    is released at once; a writer opening the file in that instant waits for the release (and
    the kernel's SIGIO about it must be ignored by the caller: its default action kills).
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as exc:
        # EWOULDBLOCK: someone holds a write lease, i.e. is about to write it.
        return exc.errno == errno.EWOULDBLOCK
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return False
        try:
            fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_RDLCK)
        except OSError as exc:
            return True if exc.errno == errno.EAGAIN else None
        fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_UNLCK)
        return False
    finally:
        os.close(fd)


# --- permissions --------------------------------------------------------------------------


def unsafe_paths(path: str) -> list[SpecProblem]:
    """What makes the spec at `path` unsafe to act on: one problem per offending path.

    A path that does not exist is not a problem here; reading it says "cannot read".
    """
    checked: dict[str, SpecProblem | None] = {}
    target = _check_chain(path, "the spec", checked)
    if target is not None and os.path.isdir(target):
        try:
            names = _fragment_names(path)
        except OSError:
            names = []
        for name in names:
            _check_chain(os.path.join(path, name), "a fragment", checked)
    return [problem for problem in checked.values() if problem is not None]


def _check_chain(path: str, what: str, checked: dict[str, SpecProblem | None]) -> str | None:
    """Check `path`'s final target and every directory its resolution passes through; the
    target, or None when the path does not resolve. `what` the path is names it in messages."""
    directories: list[str] = []
    target = _resolve(path, directories)
    for directory in directories:
        if directory not in checked:
            checked[directory] = _problem(directory, f"a directory above {path}", True)
    if target is not None and target not in checked:
        if target != os.path.abspath(path):
            what = f"the target of {path}"
        checked[target] = _problem(target, what, os.path.isdir(target))
    return target


def _resolve(path: str, directories: list[str]) -> str | None:
    """`path` with every symlink followed, like the kernel's lookup; each directory a name is
    looked up in is appended to `directories`. None when a component is missing."""
    pending = [part for part in os.path.abspath(path).split("/") if part]
    current = "/"
    hops = 0
    while pending:
        part = pending.pop(0)
        if part == ".":
            continue
        if part == "..":
            current = os.path.dirname(current)
            continue
        if current not in directories:
            directories.append(current)
        candidate = os.path.join(current, part)
        try:
            info = os.lstat(candidate)
        except OSError:
            return None
        if stat.S_ISLNK(info.st_mode):
            hops += 1
            if hops > _SYMLINK_HOPS:
                return None  # ELOOP: reading it reports the loop
            try:
                link = os.readlink(candidate)
            except OSError:
                return None
            if link.startswith("/"):
                current = "/"
            pending = [p for p in link.split("/") if p] + pending
            continue
        current = candidate
    return current


def _problem(path: str, what: str, is_directory: bool) -> SpecProblem | None:
    try:
        info = os.stat(path)
    except OSError:
        return None
    euid = os.geteuid()
    wrong: list[str] = []
    fixes: list[str] = []
    if info.st_uid not in (0, euid):
        wrong.append(f"owned by {_user(info.st_uid)}")
        fixes.append(f"chown root {path}")
    writers = info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
    if writers and _read_only_mount(path):
        writers = 0  # a ConfigMap volume is 0777 on a read-only mount: nobody writes it here
    # Sticky: others may add entries, but not rename or replace one they do not own.
    if writers and not (is_directory and info.st_mode & stat.S_ISVTX):
        who = []
        if writers & stat.S_IWGRP:
            who.append(f"group {_group(info.st_gid)}")
        if writers & stat.S_IWOTH:
            who.append("everyone")
        mode = f"{stat.S_IMODE(info.st_mode):04o}"
        sticky = " and no sticky bit" if is_directory else ""
        wrong.append(f"writable by {' and '.join(who)} (mode {mode}{sticky})")
        fixes.append(f"chmod {'g' if writers & stat.S_IWGRP else ''}"
                     f"{'o' if writers & stat.S_IWOTH else ''}-w {path}")
    if not wrong:
        return None
    owner = "root" if euid == 0 else f"root or {_user(euid)}"
    message = (f"{what} is {' and '.join(wrong)}: macvland acts only on a spec that nobody "
               f"but {owner} can change; fix: {'; '.join(fixes)}")
    return SpecProblem(path, 0, 0, "", message)


def _read_only_mount(path: str) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def _user(uid: int) -> str:
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def _group(gid: int) -> str:
    try:
        return f"{grp.getgrgid(gid).gr_name} (gid {gid})"
    except KeyError:
        return f"gid {gid}"


# --- files and directories ----------------------------------------------------------------


class _TooLarge(Exception):
    def __init__(self, size: int) -> None:
        self.size = size


def _read(path: str, max_bytes: int) -> bytes:
    """A regular file's bytes; _TooLarge above `max_bytes`, OSError for anything else."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    with open(fd, "rb", closefd=True) as file:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            kind = "a directory" if stat.S_ISDIR(info.st_mode) else _special(info.st_mode)
            raise OSError(errno.EINVAL, f"{kind}, not a regular file")
        if info.st_size > max_bytes:
            raise _TooLarge(info.st_size)
        data = file.read(max_bytes + 1)  # it may have grown since fstat
    if len(data) > max_bytes:
        raise _TooLarge(len(data))
    return data


def _special(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "a special file"


def _read_directory(directory: str, max_bytes: int) -> SpecSource:
    """The fragments in name order; OSError when the directory cannot be listed."""
    names = _fragment_names(directory)
    if not names:
        message = "no *.yaml fragments (to manage no interfaces, add one with 'interfaces: []')"
        raise SpecError([SpecProblem(directory, 0, 0, "", message)])
    fragments: list[tuple[str, bytes]] = []
    problems: list[SpecProblem] = []
    # Names and contents are length-framed, so a rename changes the hash as an edit does.
    digest = hashlib.sha256()
    total = 0
    for name in names:
        path = os.path.join(directory, name)
        try:
            data = _read(path, max_bytes - total)
        except _TooLarge as large:
            raise _TooLarge(total + large.size + _rest(directory, names, name)) from None
        except OSError as exc:
            problems.append(_unreadable(path, exc))
            continue
        total += len(data)
        for part in (os.fsencode(name), data):
            digest.update(len(part).to_bytes(8, "big") + part)
        fragments.append((path, data))
    return SpecSource(directory, tuple(fragments), digest.hexdigest(), tuple(problems))


def _rest(directory: str, names: list[str], after: str) -> int:
    """The sizes of the fragments after `after`, for an error that gives the whole total."""
    size = 0
    for name in names[names.index(after) + 1:]:
        with contextlib.suppress(OSError):
            size += os.stat(os.path.join(directory, name)).st_size
    return size


def _too_large(path: str, size: int, limit: int) -> SpecProblem:
    what = "its fragments add up to" if os.path.isdir(path) else "it is"
    return SpecProblem(path, 0, 0, "", (
        f"{what} {size:,} bytes, above the limit of {limit:,} bytes; not read (raise the "
        f"limit with --max-spec-bytes or ${MAX_BYTES_ENV} if the spec is meant to be this big)"))


def _unreadable(path: str, exc: OSError) -> SpecProblem:
    return SpecProblem(path, 0, 0, "", f"cannot read: {exc.strerror or exc}")


def _fragment_names(directory: str) -> list[str]:
    """The names of the directory's fragments, sorted: the order their interfaces merge in."""
    with os.scandir(directory) as entries:
        return sorted(entry.name for entry in entries if _is_fragment(entry))


def _is_fragment(entry: os.DirEntry[str]) -> bool:
    """A visible `*.yaml` regular file, or a symlink to one.

    A dangling symlink counts too: left out, its interfaces would be deleted without a word,
    while read, it fails with "cannot read".
    """
    if entry.name.startswith(".") or not entry.name.endswith(".yaml"):
        return False
    return entry.is_file() or (entry.is_symlink() and not os.path.exists(entry.path))
