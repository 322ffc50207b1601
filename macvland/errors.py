"""Errors, sorted by who must act on them.

    MacvlandError
    ├── SpecError            the operator: the spec is wrong; every problem, with its place
    ├── KernelError          transient or environmental: a netlink request the kernel refused
    └── NamespaceUnavailable the environment: a namespace file that cannot be entered
        └── NamespaceMissing one that does not exist (yet): its interfaces are pending

Anything else is a bug and is allowed to crash (systemd restarts the daemon).
"""

from __future__ import annotations

import errno as errno_codes
import os

from macvland.frozen import frozen


class MacvlandError(Exception):
    """Base of every error macvland expects and reports."""


@frozen
class SpecProblem:
    """One thing wrong in a spec, with its place: file:line:col: path: message."""

    file: str
    line: int
    column: int
    path: str
    message: str

    def __str__(self) -> str:
        # A problem of the file as a whole (unsafe, unreadable, too large) has no line.
        where = f"{self.file}:{self.line}:{self.column}" if self.line else self.file
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


PROBLEM_LIMIT = 50
"""How many problems a SpecError keeps and shows; the rest are counted ("and N more")."""


class SpecError(MacvlandError):
    def __init__(self, problems: list[SpecProblem], sha256: str = "", omitted: int = 0) -> None:
        ordered = sorted(problems, key=lambda p: (p.file, p.line, p.column))
        self.problems = ordered[:PROBLEM_LIMIT]
        self.omitted = omitted + len(ordered) - len(self.problems)
        """Problems found beyond the ones kept."""
        self.sha256 = sha256
        """Hash of the rejected content ("" when it could not be read at all)."""
        more = [f"... and {self.omitted:,} more problem(s)"] if self.omitted else []
        super().__init__("\n".join([*map(str, self.problems), *more]))


class KernelError(MacvlandError):
    """The kernel answered a netlink request with an error."""

    def __init__(self, code: int, message: str = "") -> None:
        self.errno = code
        self.kernel_message = message
        name = errno_codes.errorcode.get(code, str(code))
        text = f"{name}: {os.strerror(code)}"
        super().__init__(f"{text} ({message})" if message else text)


class NamespaceUnavailable(MacvlandError):
    def __init__(self, netns: str, reason: str) -> None:
        self.netns = netns
        super().__init__(f"netns {netns}: {reason}")


class NamespaceMissing(NamespaceUnavailable):
    """The namespace file does not exist (yet): its interfaces are pending."""

    def __init__(self, netns: str) -> None:
        super().__init__(netns, "does not exist")
