"""The command line: validate, plan, apply, status, run (the daemon), and reload.

Exit codes: 0 success (for `plan`: nothing would change), 1 error or not converged, 2 `plan`
found something to change.
"""

from __future__ import annotations

import argparse
import gc
import math
import os
import sys
from collections.abc import Sequence

from macvland.errors import MacvlandError, SpecError

# Each command imports what it uses, in its own body: start-up is most of a one-shot
# command's time, and `validate` needs neither netlink nor the planner, nor `run`'s watchers.
TYPE_CHECKING = False  # importing typing costs 5 ms of start-up; only mypy needs it
if TYPE_CHECKING:
    from typing import Any, NoReturn

    from macvland.apply import Outcome
    from macvland.model import DesiredState, Link, ObservedState
    from macvland.plan import Plan, Verdict

DEFAULT_CONFIG = "/etc/macvland/macvland.yaml"


class UsageError(MacvlandError):
    """A setting given to the command that cannot be used."""


def _config(args: argparse.Namespace) -> str:
    return str(args.config or os.environ.get("MACVLAND_CONFIG") or DEFAULT_CONFIG)


def _max_bytes(args: argparse.Namespace) -> int:
    from macvland.intake import max_bytes_from_env

    if args.max_spec_bytes is not None:
        return int(args.max_spec_bytes)
    try:
        return max_bytes_from_env()
    except ValueError as error:
        raise UsageError(str(error)) from None


def _load(args: argparse.Namespace, kept: bool = True) -> DesiredState:
    """The spec; with `kept`, the last parse of the same bytes if the state directory has it
    (see parsed.py). `validate` always parses: checking is its whole job."""
    from macvland.intake import load_spec

    if not kept:
        return load_spec(_config(args), _max_bytes(args))
    from macvland.ledger import state_directory

    return load_spec(_config(args), _max_bytes(args), state_directory())


def _verdict_line(v: Verdict) -> str:
    from macvland.model import interface_label

    detail = f": {v.detail}" if v.detail else ""
    return f"{interface_label(v.spec.name, v.spec.netns)}: {v.condition}{detail}"


def _verdict_dict(v: Verdict) -> dict[str, Any]:
    return {"name": v.spec.name, "netns": v.spec.netns, "parent": v.spec.parent,
            "condition": str(v.condition), "detail": v.detail, "origin": v.spec.origin}


def _problems(p: Plan) -> list[Verdict]:
    from macvland.plan import Condition

    return [v for v in p.verdicts if v.condition not in (Condition.IN_SYNC, Condition.DRIFTED)]


def cmd_validate(args: argparse.Namespace) -> int:
    desired = _load(args, kept=False)
    print(f"{desired.source}: valid, {len(desired.interfaces)} interface(s)")
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    from macvland.ledger import Ledger
    from macvland.netns import Namespaces
    from macvland.plan import plan
    from macvland.reconcile import observe_for

    desired = _load(args)
    with Namespaces() as namespaces:
        p = plan(desired, observe_for(desired, namespaces, Ledger()))
    if args.json:
        import json

        json.dump({"operations": [op.to_dict() for op in p.operations],
                   "verdicts": [_verdict_dict(v) for v in p.verdicts]}, sys.stdout, indent=2)
        print()
    else:
        for op in p.operations:
            print(op.describe())
        for v in _problems(p):
            print(_verdict_line(v), file=sys.stderr)
        if not p.operations:
            print("nothing to do", file=sys.stderr)
    return 2 if p.operations else 0


def _print_outcome(outcome: Outcome) -> None:
    if outcome.ok:
        print(f"done: {outcome.operation.describe()}")
    elif outcome.skipped:
        print(f"skipped: {outcome.operation.describe()} (an earlier step failed)", file=sys.stderr)
    else:
        print(f"failed: {outcome.operation.describe()}: {outcome.error}", file=sys.stderr)


def cmd_apply(args: argparse.Namespace) -> int:
    from macvland.ledger import Ledger
    from macvland.netns import Namespaces
    from macvland.reconcile import reconcile

    desired = _load(args)
    with Namespaces() as namespaces:
        result = reconcile(desired, namespaces, Ledger(), _print_outcome)
    for op in result.remaining.operations:
        if any(o.ok and (o.operation.netns, o.operation.name) == (op.netns, op.name)
               for o in result.outcomes):
            print(f"not converged: {op.describe()} (the kernel kept the old value)",
                  file=sys.stderr)
    for v in _problems(result.remaining):
        print(_verdict_line(v), file=sys.stderr)
    if not result.plan.operations:
        print("nothing to do", file=sys.stderr)
    return 0 if result.converged else 1


def cmd_status(args: argparse.Namespace) -> int:
    import json

    from macvland.ledger import Ledger
    from macvland.netns import Namespaces
    from macvland.plan import Condition, plan, summary
    from macvland.reconcile import observe_for

    # What a readiness probe accepts: pending interfaces wait for a namespace or a parent
    # that is not there yet, which no pass can fix.
    ready = (Condition.IN_SYNC, Condition.PENDING)
    desired = _load(args)
    with Namespaces() as namespaces:
        observed = observe_for(desired, namespaces, Ledger())
    p = plan(desired, observed)
    if args.ready:
        # For probes: one line, the same as systemd's STATUS=.
        print(summary(p.verdicts))
        return 0 if all(v.condition in ready for v in p.verdicts) else 1
    if args.json:
        json.dump({"interfaces": [_verdict_dict(v) for v in p.verdicts],
                   "tree": _tree_dict(observed)}, sys.stdout, indent=2)
        print()
    else:
        for v in p.verdicts:
            print(_verdict_line(v))
        print()
        print(_tree_text(observed))
    return 0 if all(v.condition is Condition.IN_SYNC for v in p.verdicts) else 1


def cmd_schema(args: argparse.Namespace) -> int:
    from macvland.schema import schema_text

    sys.stdout.write(schema_text())
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    import logging

    from macvland import audit
    from macvland.ledger import Ledger
    from macvland.loop import Daemon
    from macvland.netns import Namespaces
    from macvland.systemd import JournalHandler, journal_is_stderr

    journal = args.log == "journal" or (args.log == "auto" and journal_is_stderr())
    audit.to_handler(JournalHandler() if journal else None,
                     logging.DEBUG if args.verbose else logging.INFO)
    metrics = None
    if args.metrics_file:
        from macvland.metrics import Metrics  # prometheus_client: only when asked for
        metrics = Metrics(args.metrics_file)
    ledger = Ledger()
    with Namespaces() as namespaces:
        daemon = Daemon(_config(args), namespaces, ledger, resync=args.resync,
                        debounce=args.debounce / 1000, metrics=metrics,
                        reloads=ledger.directory, max_bytes=_max_bytes(args),
                        settle=args.settle)
        return daemon.run()


def cmd_reload(args: argparse.Namespace) -> int:
    from macvland.ledger import state_directory
    from macvland.reload import request

    done = request(args.pid, state_directory(), args.timeout)
    kept = f"spec {done.in_force[:12]}" if done.in_force else "no spec"
    if done.rejected:
        print(f"macvland reload: the spec was rejected ({done.problems} problem(s); "
              f"`journalctl -u macvland -p err` lists them); {kept} stays in force",
              file=sys.stderr)
        return 1
    print(f"reloaded: {kept} in force; {done.status}")
    return 0


def _children(observed: ObservedState) -> dict[str, list[Link]]:
    """Macvlans grouped under their lower device, across namespaces."""
    from collections import defaultdict

    tree: dict[str, list[Link]] = defaultdict(list)
    for link in observed.all_links():
        if link.is_macvlan:
            tree[link.lower or "?"].append(link)
    return tree


def _tree_text(observed: ObservedState) -> str:
    from macvland.model import netns_label

    lines = []
    for lower, children in sorted(_children(observed).items()):
        lines.append(lower)
        for link in sorted(children, key=lambda lk: (lk.netns or "", lk.name)):
            owner = "managed" if link.owned else "not managed"
            state = "up" if link.up else "down"
            mode = f"macvtap {link.mode}" if link.kind == "macvtap" else str(link.mode)
            lines.append(f"  {link.name}  netns {netns_label(link.netns)}  {mode}  {state}"
                         f"  mtu {link.mtu}  {link.mac}  ({owner}; kernel: {link.shown_as})")
            addresses, routes = _layers_of(observed, link)
            if addresses:
                lines.append(f"    addresses {', '.join(addresses)}")
            if routes:
                lines.append(f"    routes {', '.join(routes)}")
            device = _device_of(observed, link)
            if device is not None:
                lines.append(f"    {_device_text(device)}")
    return "\n".join(lines) if lines else "no macvlan interfaces"


def _device_of(observed: ObservedState, link: Link) -> dict[str, Any] | None:
    """A macvtap's /dev/tapN as it is (None for a macvlan, or where /dev was not read: it
    is, when the spec has macvtaps)."""
    if link.kind != "macvtap" or observed.taps is None:
        return None
    path = f"/dev/tap{link.ifindex}"
    node = observed.taps.get(link.ifindex)
    if node is None or node.link_name != link.name:
        # Another namespace's macvtap of the same number may hold it: then it is not this one's.
        return {"path": path, "present": False,
                "device_of": None if node is None else node.link_name or "another driver"}
    return {"path": path, "present": True, "owner": node.owner or str(node.uid),
            "group": node.group or str(node.gid), "uid": node.uid, "gid": node.gid,
            "mode": f"{node.mode:04o}"}


def _device_text(device: dict[str, Any]) -> str:
    if device["present"]:
        return f"{device['path']} {device['owner']}:{device['group']} {device['mode']}"
    if device["device_of"]:
        return f"{device['path']} missing (that node is the device of {device['device_of']})"
    return f"{device['path']} missing"


def _layers_of(observed: ObservedState, link: Link) -> tuple[list[str], list[str]]:
    """The static addresses and macvland's routes on a link, where they were read (only in
    namespaces whose interfaces have some in the spec)."""
    addresses = observed.addresses.get(link.netns, {}).get(link.ifindex)
    routes = observed.routes.get(link.netns, {}).get(link.ifindex, frozenset())
    return (sorted(map(str, addresses.static)) if addresses else [], sorted(map(str, routes)))


def _tree_dict(observed: ObservedState) -> list[dict[str, Any]]:
    return [{"lower": lower, "children": [
        {"name": c.name, "netns": c.netns, "ifindex": c.ifindex, "shown_as": c.shown_as,
         "kind": c.kind, "mode": str(c.mode),
         "up": c.up, "mtu": c.mtu, "mac": c.mac, "managed": c.owned,
         **dict(zip(("addresses", "routes"), _layers_of(observed, c), strict=True)),
         **({"tap": device} if (device := _device_of(observed, c)) is not None else {})}
        for c in children]}
        for lower, children in sorted(_children(observed).items())]


class _Formatter(argparse.HelpFormatter):
    """argparse's own, but asking the terminal's width without importing `shutil` (and the
    compression modules it imports): every `add_argument` makes a formatter, help or not."""

    def __init__(self, prog: str, indent_increment: int = 2, max_help_position: int = 24,
                 width: int | None = None) -> None:
        if width is None:
            try:
                width = int(os.environ.get("COLUMNS") or os.get_terminal_size().columns) - 2
            except (OSError, ValueError):
                width = 78
        super().__init__(prog, indent_increment, max_help_position, width)


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _Formatter)
        super().__init__(*args, **kwargs)


def parser() -> argparse.ArgumentParser:
    top = _Parser(prog="macvland", description=__doc__)
    commands = top.add_subparsers(dest="command", required=True, parser_class=_Parser)
    config = _Parser(add_help=False)
    config.add_argument("-c", "--config", help="spec file, or directory of *.yaml fragments "
                        f"(default: $MACVLAND_CONFIG or {DEFAULT_CONFIG})")
    from macvland.intake import DEFAULT_MAX_BYTES, DEFAULT_SETTLE, MAX_BYTES_ENV

    config.add_argument("--max-spec-bytes", type=_size, metavar="BYTES",
                        help="refuse a larger spec (a directory: all fragments together) "
                        f"before reading it; K, M, G suffixes (default: ${MAX_BYTES_ENV} or "
                        f"{DEFAULT_MAX_BYTES >> 20}M)")
    for name, func, doc, json_flag in (
        ("validate", cmd_validate, "check the spec; exit 1 with every error", False),
        ("plan", cmd_plan, "show what apply would do; exit 2 if something would change", True),
        ("apply", cmd_apply, "one reconcile pass; exit 0 when converged", False),
        ("status", cmd_status, "each interface's state and the parent/child tree", True),
    ):
        sub = commands.add_parser(name, parents=[config], help=doc, description=doc)
        sub.set_defaults(func=func)
        # argparse's help fails on an empty group: only commands with output options get one.
        output = sub.add_mutually_exclusive_group() if json_flag else sub
        if json_flag:
            output.add_argument("--json", action="store_true", help="machine-readable output")
        if name == "status":
            output.add_argument("--ready", action="store_true",
                             help="for readiness probes: one summary line; exit 0 when every "
                             "interface is in sync or pending, 1 otherwise")
    schema = commands.add_parser("schema", help="print the spec's JSON Schema",
                                 description="print the JSON Schema of a spec, for editors "
                                 "that validate YAML as it is typed")
    schema.set_defaults(func=cmd_schema)
    run = commands.add_parser("run", parents=[config], help="the daemon: keep the kernel "
                              "matching the spec", description="the daemon: keep the kernel "
                              "matching the spec, driven by file, netlink and namespace events")
    run.set_defaults(func=cmd_run)
    run.add_argument("--resync", type=_positive, default=300.0, metavar="SECONDS",
                     help="full resync interval (default 300)")
    run.add_argument("--debounce", type=_positive, default=50.0, metavar="MS",
                     help="the first event after a quiet spell starts a pass at once; what "
                     "follows within MS is gathered into the next pass, as are /run/netns "
                     "events (default 50)")
    run.add_argument("--settle", type=_positive, default=DEFAULT_SETTLE, metavar="SECONDS",
                     help="a spec is read once its writer is done (closed it, renamed it into "
                     "place); one a writer keeps open is read after it has not changed for "
                     "SECONDS, which also bounds how long a reload waits for a writer "
                     f"(default {DEFAULT_SETTLE:g})")
    run.add_argument("--metrics-file", type=_metrics_file, metavar="PATH",
                     help="write Prometheus metrics to PATH (*.prom, for node_exporter's "
                     "textfile collector) after each pass")
    run.add_argument("-v", "--verbose", action="store_true",
                     help="also log one line per pass: operations, netlink writes, time")
    run.add_argument("--log", choices=("auto", "journal", "stderr"), default="auto",
                     help="where the audit trail goes: journald natively with structured "
                     "fields, or stderr as lines; auto picks journald under systemd")
    reload = commands.add_parser(
        "reload", help="make the daemon re-read the spec, and wait until it is in force",
        description="send SIGHUP to the daemon and wait until the pass that re-read the spec "
        "is over: exit 0 when it is in force, 1 when it was rejected (the old one stays) or "
        "the daemon did not answer in time. systemd's ExecReload= runs this.")
    reload.set_defaults(func=cmd_reload)
    reload.add_argument("--pid", type=int, required=True,
                        help="the daemon's process id ($MAINPID under systemd)")
    reload.add_argument("--timeout", type=_positive, default=60.0, metavar="SECONDS",
                        help="how long to wait for the daemon's answer (default 60)")
    return top


def _size(text: str) -> int:
    from macvland.intake import parse_size

    try:
        return parse_size(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def _metrics_file(text: str) -> str:
    # Checked before the daemon starts: a typo here would otherwise be a warning per pass.
    if not text.endswith(".prom"):
        raise argparse.ArgumentTypeError(
            f"{text}: must end in .prom (node_exporter's textfile collector reads only those)")
    directory = os.path.dirname(os.path.abspath(text))
    if not os.path.isdir(directory):
        raise argparse.ArgumentTypeError(f"{text}: no such directory: {directory}")
    return text


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except MacvlandError as error:  # a bad spec, or an environment that refuses us
        print(error if isinstance(error, SpecError) else f"macvland: {error}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        # The reader went away (`macvland plan | head`): not an error of ours.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    return code


def entry() -> NoReturn:
    """The console script: `main`, and for a one-shot command a short process's shortcuts.

    Such a command lives for a fraction of a second and makes no garbage that needs the
    cycle collector, which would only walk its tens of thousands of objects again and again;
    and at exit the interpreter would collect and free them all once more. Together that is
    about a quarter of what `plan` costs at 1,000 interfaces, so a one-shot command runs
    without the collector and, its output flushed, leaves by os._exit. The daemon keeps both.
    """
    daemon = sys.argv[1:2] == ["run"]
    if daemon:
        sys.exit(main())
    gc.disable()
    code = main()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BrokenPipeError:
        pass  # the reader went away, as in main: not an error of ours
    os._exit(code)


if __name__ == "__main__":
    entry()
