"""Tries what macvland's unit forbids, from inside a service confined the same way.

The booted system test runs this (stdlib only, the container's python3) as a transient unit
with the [Service] hardening of the installed macvland.service, and prints one JSON object:
each attempt's outcome, "ok" or the errno name it failed with, plus what the process sees.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import mmap
import os
import socket
import stat
import sys
import time
from collections.abc import Callable

libc = ctypes.CDLL(None, use_errno=True)


def _libc(name: str, *args: object) -> None:
    if getattr(libc, name)(*args) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))


def _write(path: str) -> None:
    with open(path, "w", encoding="utf-8") as file:
        file.write("probe\n")
    os.unlink(path)


def _socket(family: int, kind: int = socket.SOCK_DGRAM) -> None:
    socket.socket(family, kind).close()


def _unshare(flag: int) -> None:
    pid = os.fork()  # a child, so that the probe itself stays where it was
    if pid == 0:
        try:
            _libc("unshare", flag)
        except OSError as error:
            os._exit(error.errno or 1)
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code:
        raise OSError(code, os.strerror(code))


def _setuid_file(directory: str) -> None:
    path = os.path.join(directory, "suid")
    with open(path, "w", encoding="utf-8"):
        pass
    try:
        os.chmod(path, 0o4755)
    finally:
        os.unlink(path)


def _open_device(path: str) -> None:
    os.close(os.open(path, os.O_RDWR | os.O_CLOEXEC))


def _change_node(path: str) -> None:
    """What macvland does to a macvtap's /dev/tapN: chown and chmod through an O_PATH
    descriptor (here to the owner and mode it has, so that nothing changes)."""
    fd = os.open(path, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        node = os.fstat(fd)
        os.chown(f"/proc/self/fd/{fd}", node.st_uid, node.st_gid)
        os.chmod(f"/proc/self/fd/{fd}", stat.S_IMODE(node.st_mode))
    finally:
        os.close(fd)


def _writable_mmap() -> None:
    mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC).close()


CLONE_NEWNS, CLONE_NEWUSER, CLONE_NEWNET, CLONE_NEWUTS = 0x20000, 0x10000000, 0x40000000, \
    0x4000000
PER_LINUX32 = 0x0008


def attempts(runtime_dir: str) -> dict[str, Callable[[], object]]:
    return {
        "write /run": lambda: _write("/run/probe"),
        "write /etc": lambda: _write("/etc/probe"),
        "write /usr": lambda: _write("/usr/probe"),
        "write /var": lambda: _write("/var/probe"),
        "write /sys": lambda: _write("/sys/kernel/probe"),
        "write /sys/fs/cgroup": lambda: os.mkdir("/sys/fs/cgroup/probe"),
        "write the runtime directory": lambda: _write(f"{runtime_dir}/probe"),
        "list /root": lambda: os.listdir("/root"),
        "list /home": lambda: os.listdir("/home"),
        "read /proc/sys": lambda: open("/proc/sys/kernel/hostname").close(),
        "read /proc/kmsg": lambda: open("/proc/kmsg").close(),
        "open /dev/kmsg": lambda: open("/dev/kmsg").close(),
        "open /dev/null": lambda: _open_device("/dev/null"),
        "open /dev/net/tun": lambda: _open_device("/dev/net/tun"),
        "chown and chmod /dev/net/tun": lambda: _change_node("/dev/net/tun"),
        "socket AF_INET": lambda: _socket(socket.AF_INET),
        "socket AF_INET6": lambda: _socket(socket.AF_INET6),
        "socket AF_PACKET": lambda: _socket(socket.AF_PACKET, socket.SOCK_RAW),
        "socket AF_NETLINK": lambda: _socket(socket.AF_NETLINK, socket.SOCK_RAW),
        "socket AF_UNIX": lambda: _socket(socket.AF_UNIX),
        "unshare a network namespace": lambda: _unshare(CLONE_NEWNET),
        "unshare a mount namespace": lambda: _unshare(CLONE_NEWNS),
        "unshare a user namespace": lambda: _unshare(CLONE_NEWUSER),
        "unshare a UTS namespace": lambda: _unshare(CLONE_NEWUTS),
        "mount": lambda: _libc("mount", b"none", b"/tmp", b"tmpfs", 0, None),
        "sethostname": lambda: socket.sethostname("probe"),
        "set the clock": lambda: time.clock_settime(time.CLOCK_REALTIME, time.time()),
        "realtime scheduling": lambda: os.sched_setscheduler(0, os.SCHED_FIFO,
                                                             os.sched_param(1)),
        "writable and executable memory": _writable_mmap,
        "personality": lambda: _libc("personality", PER_LINUX32),
        "a setuid file": lambda: _setuid_file(runtime_dir),
        "load a kernel module": lambda: _libc("init_module", None, 0, b""),
    }


def main() -> int:
    runtime_dir = os.environ["RUNTIME_DIRECTORY"]
    results: dict[str, object] = {}
    for name, attempt in attempts(runtime_dir).items():
        try:
            attempt()
            results[name] = "ok"
        except OSError as error:
            results[name] = errno.errorcode.get(error.errno or 0, str(error.errno))
    status = {}
    with open("/proc/self/status", encoding="utf-8") as file:
        for line in file:
            key, _, value = line.partition(":")
            status[key] = value.strip()
    devices = []
    with contextlib.suppress(OSError):
        for entry in os.scandir("/dev"):
            mode = entry.stat(follow_symlinks=False).st_mode
            if stat.S_ISBLK(mode) or stat.S_ISCHR(mode):
                devices.append(entry.name)
    created = os.path.join(runtime_dir, "umask")
    with open(created, "w", encoding="utf-8"):
        pass
    tmp = os.stat("/tmp")
    json.dump({"attempts": results,
               "new file mode": oct(os.stat(created).st_mode & 0o777),
               "tmp": [tmp.st_dev, tmp.st_ino],
               "status": {k: status[k] for k in ("CapEff", "CapBnd", "CapPrm", "NoNewPrivs",
                                                  "Seccomp", "Seccomp_filters")},
               "pid": os.getpid(),
               "visible": sorted(int(p) for p in os.listdir("/proc") if p.isdigit()),
               "devices": sorted(devices)}, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
