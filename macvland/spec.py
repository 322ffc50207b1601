"""Read a macvland spec: YAML text to a DesiredState, with every problem reported at its place.

A spec is one YAML document, `version: 1` and a list of `interfaces`; what an interface may
say, and every check of a single setting, comes from the table in macvland.settings. This
module does the YAML side: shapes, places, and the checks across interfaces.

The parser never lets YAML build Python objects (no yaml.load). It composes the safe node
graph, which keeps each node's line and column, and walks it itself. That also lets it take
scalars as written: `name: 0123` stays "0123", and a MAC such as 12:00:00:00:00:01 is not read
as a YAML 1.1 base-60 integer.

The spec may also be a directory of such documents, one per `*.yaml` fragment, read in name
order as if they were one list: a fragment is a complete document, and the checks across
interfaces (one definition per name, passthru alone, bc_cutoff and MACs per parent) see every
fragment at once. A directory without fragments is an error, never "delete everything".

Problems are collected, not raised one by one, so the operator sees all of them in one
SpecError. Messages read `file:line:col: path: message`, with paths like `interfaces[2].mode`.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import re
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from macvland.errors import PROBLEM_LIMIT, SpecError, SpecProblem
from macvland.frozen import frozen
from macvland.model import (
    DesiredState,
    Key,
    Kind,
    MacvlanSpec,
    Mode,
    SpecSource,
    State,
    netns_label,
)
from macvland.settings import (
    ITEM_KEYS,
    SETTINGS,
    Integer,
    Invalid,
    InvalidFields,
    Record,
    SetOf,
    Setting,
    Text,
    ValueType,
    did_you_mean,
    kind_conflict,
    mode_conflict,
)

TYPE_CHECKING = False  # importing typing costs 5 ms of start-up; only mypy needs it
if TYPE_CHECKING:
    from typing import Any, AnyStr, TypeVar

    _T = TypeVar("_T")
    _H = TypeVar("_H", bound=Hashable)

__all__ = ["SPEC_VERSION", "ParseMemo", "parse_source", "parse_spec"]

SPEC_VERSION = 1
"""The only spec format this macvland reads."""

_TOP_KEYS = ("version", "interfaces")
_DECIMAL = re.compile(r"[-+]?(?:0|[1-9][0-9]*)")

_TAG = "tag:yaml.org,2002:"
_NULL_TAG = _TAG + "null"
_INT_TAG = _TAG + "int"
_KINDS = {
    "null": "null",
    "bool": "boolean",
    "int": "integer",
    "float": "float",
    "str": "string",
    "timestamp": "timestamp",
    "binary": "binary",
}
"""How a scalar's resolved YAML type is named in messages."""

def parse_spec(text: bytes | str, filename: str) -> DesiredState:
    """The state a spec asks for; SpecError lists every problem in it."""
    data = text.encode("utf-8") if isinstance(text, str) else text
    return _merge([(filename, text)], filename, hashlib.sha256(data).hexdigest())


ParseMemo = dict[tuple[object, ...], "_Parsed"]
"""Interfaces parsed before, by file, place and text: what a caller keeps between parses."""


def parse_source(source: SpecSource, memo: ParseMemo | None = None) -> DesiredState:
    """The state a spec asks for; SpecError lists every problem in it.

    With a `memo` (the daemon keeps one), an interface whose text and place are unchanged
    since the last parse is not walked again: at 1,000 interfaces that halves the parse, so a
    one-line edit is parsed within the debounce window. The memo is replaced by what this
    parse used.
    """
    return _merge(source.files, source.path, source.sha256, source.problems, memo)


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Composing builds a tree of tens of thousands of nodes with no cycle among them; the
    cycle collector, set off by the allocations, would walk it again and again for nothing
    (10-15% of a 1,000-interface parse). Mercurial's util.nogc does the same."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@_collector_paused()
def _merge(
    files: Iterable[tuple[str, bytes | str]],
    source: str,
    sha256: str,
    problems: Iterable[SpecProblem] = (),
    memo: ParseMemo | None = None,
) -> DesiredState:
    """Parse each file on its own, then check the interfaces of all of them together."""
    found = _Found()
    for problem in problems:
        found.add(problem)
    items: list[_Parsed] = []
    used: ParseMemo = {}
    for filename, text in files:
        items += _parse_file(text, _Report(filename, found), memo, used)
    if memo is not None:
        memo.clear()
        memo.update(used)
    for check in _CROSS_CHECKS:
        for problem in check(items):
            found.add(problem)
    if found.count:
        raise SpecError(found.kept, sha256, omitted=found.count - len(found.kept))
    return DesiredState(interfaces=tuple(item.spec for item in items), source=source, sha256=sha256)


# --- collecting problems ------------------------------------------------------------------


class _Found:
    """Every problem counted, the first PROBLEM_LIMIT kept: a file of a million mistakes
    costs the memory of a few dozen messages, and is reported as "and N more"."""

    __slots__ = ("count", "kept")

    def __init__(self) -> None:
        self.kept: list[SpecProblem] = []
        self.count = 0

    def add(self, problem: SpecProblem) -> None:
        self.count += 1
        if len(self.kept) < PROBLEM_LIMIT:
            self.kept.append(problem)


class _Report:
    """Where the problems of one file go."""

    __slots__ = ("file", "found")

    def __init__(self, file: str, found: _Found) -> None:
        self.file = file
        self.found = found

    @property
    def count(self) -> int:
        """How many problems were found so far (in the whole spec)."""
        return self.found.count

    def add(self, line: int, column: int, path: str, message: str) -> None:
        """Record a problem at a 1-based line and column."""
        self.found.add(SpecProblem(self.file, line, column, path, message))

    def at(self, node: Node, path: str, message: str) -> None:
        """Record a problem where `node` starts."""
        self.add(_line(node), node.start_mark.column + 1, path, message)


def _line(node: Node) -> int:
    return int(node.start_mark.line) + 1


def _position(text: AnyStr, index: int, newline: AnyStr) -> tuple[int, int]:
    """1-based line and column of `index` in `text`."""
    line_start = text.rfind(newline, 0, index) + 1
    return text.count(newline, 0, index) + 1, index - line_start + 1


# --- text to one YAML node ----------------------------------------------------------------


def _parse_file(text: bytes | str, report: _Report, memo: ParseMemo | None,
                used: ParseMemo) -> list[_Parsed]:
    """The interfaces of one spec document, as far as they parse; problems go to `report`."""
    source = text if isinstance(text, str) else _decode(text, report)
    root = _compose(source, report) if source is not None else None
    if source is None or root is None:
        return []
    if memo is None:
        # Nobody keeps what this parse used: no item's text is cut out to be remembered.
        return _parse_document(root, report, lambda item, path: _parse_interface(
            item, path, report))
    return _parse_document(root, report, lambda item, path: _parse_remembered(
        item, path, report, source, memo, used))


def _decode(data: bytes, report: _Report) -> str | None:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        report.add(*_position(data, exc.start, b"\n"), "", f"not valid UTF-8: {exc.reason}")
        return None


# libyaml's composer is about ten times faster (40 ms against 0.45 s for 1,000 interfaces)
# and keeps the same marks; both are safe loaders. A document it rejects is composed again
# by the pure-Python loader, whose messages say more.
try:
    from yaml import CSafeLoader as _SafeBase
except ImportError:  # PyYAML built without libyaml
    from yaml import SafeLoader as _SafeBase  # type: ignore[assignment]


class _FastLoader(_SafeBase):
    """The safe loader, with the resolver's per-node work done once per document.

    The C composer calls back into Python three times per node: `resolve` for its tag, and
    `descend_resolver`/`ascend_resolver` around it for path resolvers; without these
    callbacks' work, composing 1,000 interfaces takes a tenth to a sixth less. This loader
    has no path resolvers (its own empty table: none that anyone adds to PyYAML's loaders),
    so the two path callbacks have nothing to do, and a tag depends only on the node's kind,
    its text and how it was written (plain or quoted): each distinct one is resolved once
    per document (keys and most values repeat: `name`, `parent`, `bridge`, `eth1`). The
    tags are the safe loader's, exactly.
    """

    yaml_path_resolvers: dict[Any, Any] = {}  # noqa: RUF012 (its own: none, whoever adds some)

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._tags: dict[tuple[object, ...], str] = {}

    def resolve(self, kind: type[Node], value: Any, implicit: Any) -> str:
        key = (kind, value, implicit)
        tag = self._tags.get(key)
        if tag is None:
            resolved: str = super().resolve(kind, value, implicit)  # type: ignore[no-untyped-call]
            tag = self._tags[key] = resolved
        return tag

    def descend_resolver(self, current_node: Any, current_index: Any) -> None:
        pass

    def ascend_resolver(self) -> None:
        pass


_FAST_LOADER = _FastLoader


MAX_NODES = 500_000
"""YAML nodes a spec may have: 10,000 interfaces with every setting have 170,000. Memory
follows nodes, not bytes: a few megabytes of `[a,a,a,...]` are millions of nodes, and
composed, gigabytes; counted first, they cost no memory."""

_COUNT_ABOVE = 256 << 10
"""Texts smaller than this cannot hold enough nodes to matter, so they are not counted."""

_NODE_EVENTS = (yaml.ScalarEvent, yaml.AliasEvent, yaml.SequenceStartEvent,
                yaml.MappingStartEvent)


def _too_many_nodes(source: str) -> bool:
    """True when the text has more than MAX_NODES nodes; it stops counting there.

    The parser's events come one at a time, so counting them holds no tree. A text that does
    not parse is left to the composer, whose message says where. libyaml counts all of a
    text's events without making any (a sixth of the cost of iterating them from Python): a
    node is one event, so a text of no more events than MAX_NODES has no more nodes, and only
    one of more is counted node by node.
    """
    if len(source) <= _COUNT_ABOVE:
        return False
    raw_parse = getattr(_FAST_LOADER, "raw_parse", None)  # libyaml's, not the pure loader's
    if raw_parse is not None:
        loader = _FAST_LOADER(source)
        try:
            if raw_parse(loader) <= MAX_NODES:
                return False
        except yaml.YAMLError:
            return False
        finally:
            loader.dispose()
    count = 0
    try:
        for event in yaml.parse(source, Loader=_FAST_LOADER):
            if isinstance(event, _NODE_EVENTS):
                count += 1
                if count > MAX_NODES:
                    return True
    except yaml.YAMLError:
        return False
    return False


def _compose(source: str, report: _Report) -> Node | None:
    """The node of the spec's only document, or None when there is nothing to walk."""
    if _too_many_nodes(source):
        report.add(1, 1, "", f"the document has more than {MAX_NODES:,} YAML nodes; a spec of "
                   "10,000 interfaces with every setting has 170,000")
        return None
    try:
        documents = list(yaml.compose_all(source, Loader=_FAST_LOADER))
    except (yaml.YAMLError, RecursionError):
        try:
            documents = list(yaml.compose_all(source, Loader=yaml.SafeLoader))
        except yaml.MarkedYAMLError as exc:
            _report_syntax_error(exc, report)
            return None
        except yaml.reader.ReaderError as exc:
            # Raised for characters YAML forbids; it has a position, not a mark.
            code: int = exc.character
            message = f"unacceptable character #x{code:04x}: {exc.reason}"
            report.add(*_position(source, exc.position, "\n"), "", message)
            return None
        except RecursionError:
            # PyYAML's composer recurses once per nesting level; no spec nests 3 levels deep.
            report.add(1, 1, "", "the document is nested too deeply")
            return None
    root = documents[0] if documents else None
    extra = documents[1] if len(documents) > 1 else None
    if root is None or _is_null(root):
        report.add(
            1,
            1,
            "",
            "the document is empty; to manage no interfaces, write 'version: 1' and "
            "'interfaces: []'",
        )
        return None
    if extra is not None:
        report.at(extra, "", "found a second YAML document; a spec is a single document")
    _report_duplicate_keys(root, report)
    return root


def _report_syntax_error(exc: yaml.MarkedYAMLError, report: _Report) -> None:
    mark = exc.problem_mark or exc.context_mark
    line, column = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
    message = exc.problem or str(exc)
    where = exc.context_mark
    # The context ("while scanning a quoted scalar") helps when it started somewhere else.
    if exc.context and where is not None and (where.line, where.column) != (line - 1, column - 1):
        message += f" ({exc.context} at line {where.line + 1}, column {where.column + 1})"
    report.add(line, column, "", message)


def _report_duplicate_keys(root: Node, report: _Report) -> None:
    """Report every repeated key in every mapping of the document.

    PyYAML keeps the last of two equal keys without a word; in a spec that silently drops a
    setting the operator wrote, so each repetition is an error at the second key.
    """
    visited: set[int] = set()
    pending: list[tuple[Node, str]] = [(root, "")]
    while pending:
        node, path = pending.pop()
        # Aliases share one node; visiting each once keeps "billion laughs" documents cheap.
        if id(node) in visited:
            continue
        visited.add(id(node))
        if isinstance(node, SequenceNode):
            pending.extend((item, f"{path}[{i}]") for i, item in enumerate(node.value)
                           if not isinstance(item, ScalarNode))
        elif isinstance(node, MappingNode):
            first: dict[str, Node] = {}
            for key, value in node.value:
                if not isinstance(key, ScalarNode):
                    pending.extend([(key, path), (value, path)])
                    continue
                # A key's path is spelled only when needed: most keys are unique, with a
                # scalar value.
                name = key.value
                if name in first:
                    where = _line(first[name])
                    report.at(key, _join(path, name),
                              f"duplicate key {name!r} (first on line {where})")
                else:
                    first[name] = key
                if not isinstance(value, ScalarNode):  # only collections hold keys
                    pending.append((value, _join(path, name)))


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


# --- scalar conversions: each raises Invalid with a message that needs no place ----------


def _is_null(node: Node) -> bool:
    return isinstance(node, ScalarNode) and node.tag == _NULL_TAG


def _describe(node: Node) -> str:
    """What a node is, for "expected X, got Y" messages."""
    if isinstance(node, MappingNode):
        return "a mapping"
    if isinstance(node, SequenceNode):
        return "a list"
    kind = _KINDS.get(node.tag.removeprefix(_TAG), f"value tagged {node.tag}")
    return "null" if kind == "null" else f"{kind} {node.value!r}"


def _text(node: Node) -> str:
    """A scalar as written, whatever YAML type it would resolve to (0123, off, 12:00:...)."""
    if not isinstance(node, ScalarNode) or node.tag == _NULL_TAG:
        raise Invalid(f"expected a string, got {_describe(node)}")
    return str(node.value)


def _integer(node: Node) -> int:
    if not (isinstance(node, ScalarNode) and node.tag == _INT_TAG):
        raise Invalid(f"expected an integer, got {_describe(node)}")
    if not _DECIMAL.fullmatch(node.value):
        # YAML 1.1 also reads 0x5dc, 1_500, 1:30 (base 60) and 01500 (octal: 832). An MTU
        # that silently means something else than it looks helps nobody.
        raise Invalid(f"expected a decimal integer, got {node.value!r}")
    return int(node.value)


def _version(node: Node) -> int:
    version = _integer(node)
    if version != SPEC_VERSION:
        raise Invalid(
            f"unsupported version {version} (this macvland reads version {SPEC_VERSION})"
        )
    return version


def _converter(kind: ValueType) -> Callable[[Node], Any]:
    """A function from a YAML node to a value of `kind`; it raises Invalid."""
    if isinstance(kind, Integer):
        return lambda node: kind.check(_integer(node))
    if isinstance(kind, Text):
        if kind.nullable:
            return lambda node: None if _is_null(node) else kind.check(_text(node))
        # As written: YAML 1.1 reads 12:00:00:00:00:01 as an integer, off as a boolean.
        return lambda node: kind.check(_text(node))
    if isinstance(kind, SetOf):
        return _converter(kind.item)
    if isinstance(kind, Record):
        # A list's item (a route); a setting's own mapping is walked by _read_record.
        keys = [f.key for f in kind.fields]
        converters = {f.key: _converter(f.type) for f in kind.fields}
        required = [f.key for f in kind.fields if f.required]
        return lambda node: _record(node, kind, keys, required, converters)
    raise TypeError(f"no YAML reading for {kind!r}")


def _record(node: Node, kind: Record, keys: Sequence[str], required: Sequence[str],
            converters: dict[str, Callable[[Node], Any]]) -> Any:
    """A mapping value (a route); InvalidFields names every key at fault at once."""
    if not isinstance(node, MappingNode):
        raise Invalid(f"expected a mapping with keys {', '.join(keys)}, got {_describe(node)}")
    problems: list[tuple[str | None, str]] = []
    values: dict[str, Any] = {}
    for key_node, value_node in node.value:
        key = str(key_node.value) if isinstance(key_node, ScalarNode) else None
        if key is None or key not in keys:
            problems.append((None, _unknown_key(str(key), keys)))
        elif key not in values:
            try:
                values[key] = converters[key](value_node)
            except Invalid as exc:
                problems.append((key, str(exc)))
    problems += [(None, f"missing required key {key!r}") for key in required
                 if key not in values and key not in (k for k, _ in problems)]
    if problems:
        raise InvalidFields(problems)
    return kind.build(**values)


_CONVERTERS = {setting.key: _converter(setting.type) for setting in SETTINGS}
"""Per setting, what converts its value (for a list: each item)."""

_DEFAULTS = {setting.key: setting.default for setting in SETTINGS}

_READING: dict[str, tuple[bool, Record | None, Callable[[Node], Any], Any]] = {
    setting.key: (isinstance(setting.type, SetOf),
                  setting.type if isinstance(setting.type, Record) else None,
                  _CONVERTERS[setting.key], None if setting.required else _DEFAULTS[setting.key])
    for setting in SETTINGS}
"""Per setting, how _parse_interface reads it (a list, a mapping, or a scalar), its
converter, and what a bad value leaves: one lookup per key written, instead of working it
out from the setting's type each time."""

_BY_KEY = {setting.key: setting for setting in SETTINGS}
_REQUIRED = tuple(setting.key for setting in SETTINGS if setting.required)
_MODE_BOUND = {mode: frozenset(s.key for s in SETTINGS
                               if s.item_modes is not None or mode not in s.modes)
               for mode in Mode}
"""Per mode, the keys _check_mode_settings has something to check for."""
_KIND_BOUND = {kind: frozenset(s.key for s in SETTINGS if kind not in s.kinds) for kind in Kind}
"""Per kind, the keys that kind does not have."""
_ABSENT: dict[str, Any] = {
    setting.key: None if setting.required or isinstance(setting.type, Record)
    else (None if setting.default is None else frozenset())
    if isinstance(setting.type, SetOf) else setting.default
    for setting in SETTINGS}
"""What an item that does not write a setting has for it (a list: None, "left alone", where
its default is None)."""


# --- mappings -----------------------------------------------------------------------------


class _Fields:
    """The entries of one YAML mapping by key, converted on demand, problems reported.

    Unknown and non-string keys are reported when the mapping is opened. A repeated key keeps
    its first value here; _report_duplicate_keys reports the repetition itself. `bad` names
    the keys whose value was missing or unusable.
    """

    def __init__(
        self, node: MappingNode, path: str, allowed: Sequence[str], report: _Report
    ) -> None:
        self.node = node
        self.path = path
        self.report = report
        self.bad: set[str] = set()
        self.entries: dict[str, tuple[Node, Node]] = {}
        for key, value in node.value:
            if not isinstance(key, ScalarNode):
                report.at(key, path, f"expected a key name, got {_describe(key)}")
            elif key.value not in allowed:
                report.at(key, self.path_of(key.value), _unknown_key(key.value, allowed))
            else:
                self.entries.setdefault(key.value, (key, value))

    def path_of(self, key: str) -> str:
        return _join(self.path, key)

    def key(self, key: str) -> Node | None:
        entry = self.entries.get(key)
        return entry[0] if entry else None

    def value(self, key: str) -> Node | None:
        entry = self.entries.get(key)
        return entry[1] if entry else None

    def get(self, key: str, convert: Callable[[Node], _T], default: _T) -> _T:
        """The converted value, or `default` when the key is absent or its value is bad."""
        entry = self.entries.get(key)  # not self.value(key): this is called for every value
        if entry is None:
            return default
        node = entry[1]
        try:
            return convert(node)
        except Invalid as exc:
            self.report.at(node, self.path_of(key), str(exc))
            self.bad.add(key)
            return default

    def require(self, key: str, convert: Callable[[Node], _T]) -> _T | None:
        """The converted value; None, and a problem at the mapping, when the key is absent."""
        if key not in self.entries:
            self.report.at(self.node, self.path, f"missing required key {key!r}")
            self.bad.add(key)
            return None
        return self.get(key, convert, None)

    def get_list(self, key: str, convert: Callable[[Node], _H]) -> list[tuple[str, Node, _H]]:
        """The good items of the list under `key` as (path, node, value), in order.

        Bad items and repeated values are reported and left out.
        """
        node = self.value(key)
        if node is None:
            return []
        if not isinstance(node, SequenceNode):
            self.report.at(node, self.path_of(key), f"expected a list, got {_describe(node)}")
            self.bad.add(key)
            return []
        items: list[tuple[str, Node, _H]] = []
        first: dict[_H, Node] = {}
        for index, item in enumerate(node.value):
            path = f"{self.path_of(key)}[{index}]"
            try:
                value = convert(item)
            except InvalidFields as exc:
                for sub, message in exc.problems:
                    at = _value_of(item, sub) if sub else item
                    self.report.at(at, _join(path, sub) if sub else path, message)
                self.bad.add(key)
                continue
            except Invalid as exc:
                self.report.at(item, path, str(exc))
                self.bad.add(key)
                continue
            if value in first:
                where = _line(first[value])
                self.report.at(item, path, f"'{value}' is listed twice (first on line {where})")
                self.bad.add(key)
                continue
            first[value] = item
            items.append((path, item, value))
        return items


def _value_of(mapping: Node, key: str) -> Node:
    """The value node of `key` in a mapping node (the mapping itself if it has none)."""
    if isinstance(mapping, MappingNode):
        for key_node, value in mapping.value:
            if isinstance(key_node, ScalarNode) and key_node.value == key:
                found: Node = value
                return found
    return mapping


def _unknown_key(key: str, allowed: Sequence[str]) -> str:
    hint = did_you_mean(key, allowed) or f" (expected one of {', '.join(allowed)})"
    return f"unknown key {key!r}{hint}"


# --- the document -------------------------------------------------------------------------


@frozen
class _Parsed:
    """One interface as far as it parsed, for the checks across interfaces.

    Settings that failed to parse hold their defaults in `spec` and are named in `bad`, so
    the cross checks skip them instead of reporting conflicts nobody wrote.

    It keeps the item's place, not its node: a memo of these then holds no YAML tree (tens
    of thousands of nodes at 1,000 interfaces), which the cycle collector would otherwise
    walk after every parse (3 ms) and keep walking while the daemon runs.
    """

    spec: MacvlanSpec
    file: str
    line: int
    """1-based, like `column`: where the item starts."""
    column: int
    path: str
    bad: frozenset[str]

    def usable(self, *keys: str) -> bool:
        return not self.bad or self.bad.isdisjoint(keys)

    def where(self, seen_from: _Parsed) -> str:
        """This item's place, as a message about `seen_from` names it."""
        place = f"line {self.line}" if self.file == seen_from.file else f"{self.file}:{self.line}"
        return f"{self.path} ({place})"

    def problem(self, message: str) -> SpecProblem:
        """A problem at the start of this item."""
        return SpecProblem(self.file, self.line, self.column, self.path, message)


def _parse_remembered(node: Node, path: str, report: _Report, source: str,
                      memo: ParseMemo, used: ParseMemo) -> _Parsed | None:
    """`_parse_interface`, or what it gave for the same text at the same place last time.

    Only items without problems are remembered, so every problem is found afresh.
    """
    start, end = node.start_mark, node.end_mark
    key = (report.file, path, start.line, start.column, source[start.index:end.index])
    parsed = memo.get(key)
    if parsed is None:
        before = report.count
        parsed = _parse_interface(node, path, report)
        if parsed is None or report.count != before:
            return parsed
    used[key] = parsed
    return parsed


def _parse_document(root: Node, report: _Report,
                    parse_item: Callable[[Node, str], _Parsed | None]) -> list[_Parsed]:
    if not isinstance(root, MappingNode):
        message = f"expected a mapping with keys 'version' and 'interfaces', got {_describe(root)}"
        report.at(root, "", message)
        return []
    top = _Fields(root, "", _TOP_KEYS, report)
    top.require("version", _version)
    interfaces = top.value("interfaces")
    if interfaces is None:
        # An empty spec makes macvland delete every interface it owns: that must be said
        # explicitly, never be the result of a typo or a truncated file.
        report.at(
            root,
            "",
            "missing required key 'interfaces' (a spec without interfaces must say "
            "'interfaces: []' explicitly)",
        )
        return []
    if not isinstance(interfaces, SequenceNode):
        hint = " (write 'interfaces: []' for none)" if _is_null(interfaces) else ""
        report.at(interfaces, "interfaces", f"expected a list, got {_describe(interfaces)}{hint}")
        return []
    parsed: list[_Parsed] = []
    first: dict[int, int] = {}
    for index, item in enumerate(interfaces.value):
        path = f"interfaces[{index}]"
        # An alias repeats a node, and so an interface: an error every time, found without
        # walking the node again (a list of a million aliases is a few megabytes of text).
        earlier = first.setdefault(id(item), index)
        if earlier != index:
            report.at(item, path, f"repeats interfaces[{earlier}] through an alias: that "
                      "defines the same interface twice")
            continue
        one = parse_item(item, path)
        if one is not None:
            parsed.append(one)
    return parsed


def _parse_interface(node: Node, path: str, report: _Report) -> _Parsed | None:
    """One list item; None when it is too broken to take part in the cross checks."""
    if not isinstance(node, MappingNode):
        report.at(node, path, f"expected a mapping, got {_describe(node)}")
        return None
    fields = _Fields(node, path, ITEM_KEYS, report)
    # Every setting is read before anything is given up on, so all its problems are reported.
    # Only the keys written are visited (a typical item writes 3 of 20); the rest are as absent.
    values: dict[str, Any] = dict(_ABSENT)
    lists: dict[str, list[tuple[str, Node, Any]]] = {}  # the list settings written
    for key in _REQUIRED:
        if key not in fields.entries:
            fields.require(key, _CONVERTERS[key])  # reports it missing
    for key in fields.entries:
        is_list, record, convert, default = _READING[key]
        if is_list:
            lists[key] = items = fields.get_list(key, convert)
            values[key] = frozenset(value for _, _, value in items)
        elif record is not None:
            values[key] = _read_record(fields, key, record)
        else:
            values[key] = fields.get(key, convert, default)
    if "mode" not in fields.bad:
        _check_mode_settings(fields, values["mode"], lists)
    _check_routes(fields, values["state"], lists.get("routes", []))
    if "kind" not in fields.bad:
        _check_kind_settings(fields, values["kind"])
    if values["name"] is None or values["parent"] is None:
        return None
    spec = MacvlanSpec(**values, origin=f"{report.file}:{_line(node)}")
    return _Parsed(spec, report.file, _line(node), node.start_mark.column + 1, path,
                   frozenset(fields.bad))


def _read_record(fields: _Fields, key: str, record: Record) -> object:
    """A mapping of settings, each read and checked like a setting of the interface."""
    node = fields.value(key)
    if node is None:
        return None
    if not isinstance(node, MappingNode):
        fields.report.at(node, fields.path_of(key), f"expected a mapping, got {_describe(node)}")
        fields.bad.add(key)
        return None
    inner = _Fields(node, fields.path_of(key), tuple(f.key for f in record.fields),
                    fields.report)
    values = {f.key: inner.require(f.key, _converter(f.type)) if f.required
              else inner.get(f.key, _converter(f.type), None) for f in record.fields}
    if inner.bad:
        fields.bad.add(key)
        return None
    try:
        return record.build(**values)
    except InvalidFields as exc:
        for sub, message in exc.problems:
            at = _value_of(node, sub) if sub else node
            fields.report.at(at, _join(fields.path_of(key), sub) if sub else fields.path_of(key),
                             message)
        fields.bad.add(key)
        return None


def _check_kind_settings(fields: _Fields, kind: Kind) -> None:
    """Settings that only one kind has (a macvtap's device)."""
    if _KIND_BOUND[kind].isdisjoint(fields.entries):
        return  # most items: nothing to report, known without a look at each key
    for key in fields.entries:
        if kind not in _BY_KEY[key].kinds:
            fields.report.at(fields.entries[key][0], fields.path_of(key),
                             kind_conflict(_BY_KEY[key], kind))


def _check_mode_settings(fields: _Fields, mode: Mode,
                         lists: dict[str, list[tuple[str, Node, Any]]]) -> None:
    """Settings, and items of list settings, that only mean something in some modes."""
    if _MODE_BOUND[mode].isdisjoint(fields.entries):
        return  # most items: nothing to report, known without a look at each key
    for key, (key_node, value) in fields.entries.items():
        setting = _BY_KEY[key]
        if setting.item_modes is not None:
            for path, node, item in lists[key]:
                only = setting.item_modes[item]
                if only is not mode:
                    noun = setting.item_noun
                    message = f"{noun} '{item}' only applies in mode {only}, not {mode}"
                    fields.report.at(node, path, message)
        if mode in setting.modes:
            continue
        # Only a non-empty list is a conflict: `source_macs: []` asks for nothing.
        if isinstance(setting.type, SetOf) and not (
                isinstance(value, SequenceNode) and value.value):
            continue
        fields.report.at(key_node, fields.path_of(key), mode_conflict(setting, mode))


def _check_routes(fields: _Fields, state: State, routes: list[tuple[str, Node, Any]]) -> None:
    """Routes the kernel could not hold as written."""
    if not routes:
        return
    key = fields.key("routes")
    if routes and key is not None and state is State.DOWN:
        fields.report.at(key, fields.path_of("routes"), "routes need state: up (the kernel "
                         "drops an interface's IPv4 routes while it is down)")
    first: dict[object, Node] = {}
    for path, node, route in routes:
        other = first.setdefault(route.key, node)
        if other is not node:
            fields.report.at(node, path, f"route {route} has the destination, metric and table "
                             f"of the route on line {_line(other)}; the kernel holds one")


# --- checks across interfaces, of every file: at the later item, naming the earlier ------


def _check_unique_identities(items: list[_Parsed]) -> Iterator[SpecProblem]:
    first: dict[Key, _Parsed] = {}
    for item in items:
        if not item.usable("netns"):
            continue
        other = first.setdefault(item.spec.key, item)
        if other is not item:
            label = netns_label(item.spec.netns)
            yield item.problem(
                f"interface {item.spec.name!r} in namespace {label} is already defined "
                f"by {other.where(item)}"
            )


def _siblings(items: list[_Parsed], *needed: str) -> dict[str, list[_Parsed]]:
    """The interfaces that will exist, by parent, in spec order."""
    groups: dict[str, list[_Parsed]] = {}
    for item in items:
        if item.usable("state", *needed) and item.spec.state is not State.ABSENT:
            groups.setdefault(item.spec.parent, []).append(item)
    return groups


def _check_passthru_alone(items: list[_Parsed]) -> Iterator[SpecProblem]:
    """The kernel lets nothing share a parent with a passthru interface.

    A passthru interface conflicts with the first sibling before it, and every interface
    after a passthru one conflicts with that passthru interface.
    """
    for parent, group in _siblings(items, "mode").items():
        first = group[0]
        passthru = first if first.spec.mode is Mode.PASSTHRU else None
        for item in group[1:]:
            if item.spec.mode is Mode.PASSTHRU:
                conflict = (
                    f"passthru interface {item.spec.name!r} shares parent {parent!r} "
                    f"with {first.spec.name!r} at {first.where(item)}"
                )
                passthru = passthru or item
            elif passthru is not None:
                conflict = (
                    f"parent {parent!r} already has the passthru interface "
                    f"{passthru.spec.name!r} at {passthru.where(item)}"
                )
            else:
                continue
            yield item.problem(f"{conflict}; a passthru interface must be alone")


def _check_parent_wide_settings_agree(items: list[_Parsed]) -> Iterator[SpecProblem]:
    """The kernel keeps one value per parent of these, so siblings that set one must agree."""
    for setting in _PARENT_WIDE:
        key = setting.key
        # Only the siblings that set it can disagree: the others are not grouped at all.
        setting_it = [item for item in items if getattr(item.spec, key) is not None]
        for parent, group in _siblings(setting_it, key).items():
            setters = [item for item in group if getattr(item.spec, key) is not None]
            for item in setters[1:]:
                first = setters[0]
                mine, theirs = getattr(item.spec, key), getattr(first.spec, key)
                if mine != theirs:
                    yield item.problem(
                        f"{key} {mine} disagrees with {key} {theirs} of {first.where(item)} "
                        f"on the same parent {parent!r}; the kernel keeps one {key} per parent"
                    )


def _check_unique_per_parent(items: list[_Parsed]) -> Iterator[SpecProblem]:
    """The kernel refuses two siblings with one value of these (a MAC)."""
    for setting in _UNIQUE_PER_PARENT:
        key = setting.key
        # Only the siblings that set it can clash: the others are not grouped at all.
        setting_it = [item for item in items if getattr(item.spec, key) is not None]
        for parent, group in _siblings(setting_it, key).items():
            first: dict[object, _Parsed] = {}
            for item in group:
                value = getattr(item.spec, key)
                if value is None:
                    continue
                other = first.setdefault(value, item)
                if other is not item:
                    yield item.problem(
                        f"{key} {value} is already used by {other.where(item)} on the same "
                        f"parent {parent!r}"
                    )


def _check_routes_unique_per_netns(items: list[_Parsed]) -> Iterator[SpecProblem]:
    """A namespace holds one route per destination, metric and table, whatever its device."""
    first: dict[tuple[object, ...], _Parsed] = {}
    for item in items:
        if not item.spec.routes:
            continue  # most items: no route to compare, whatever else is wrong with them
        if not item.usable("netns", "routes", "state") or item.spec.state is State.ABSENT:
            continue
        for route in sorted(item.spec.routes or (), key=str):
            other = first.setdefault((item.spec.netns, *route.key), item)
            if other is not item:
                yield item.problem(f"route {route} is also a route of {other.where(item)} in "
                                   f"the same namespace; the kernel holds one")


_PARENT_WIDE: tuple[Setting, ...] = tuple(s for s in SETTINGS if s.parent_wide)
_UNIQUE_PER_PARENT: tuple[Setting, ...] = tuple(s for s in SETTINGS if s.unique_per_parent)

_CROSS_CHECKS: tuple[Callable[[list[_Parsed]], Iterator[SpecProblem]], ...] = (
    _check_unique_identities,
    _check_passthru_alone,
    _check_parent_wide_settings_agree,
    _check_unique_per_parent,
    _check_routes_unique_per_netns,
)
