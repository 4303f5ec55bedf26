"""ECS's cluster query language: parse to an immutable AST, evaluate against an instance.

Grammar (keywords and subject names are case-insensitive, attribute names are not):

    expr    := and (('||' | 'or') and)*
    and     := unary (('&&' | 'and') unary)*
    unary   := ('!' | 'not') unary | '(' expr ')' | cmp
    cmp     := subject op [value | list]
    list    := '[' value (',' value)* ']'  |  '(' value (',' value)* ')'
    value   := bare word (no blanks or any of ()[],'"=!<>&|)  |  'quoted'  |  "quoted"

Subjects: attribute:NAME, agentConnected, agentVersion, instanceId (alias ec2InstanceId),
registeredAt, runningTasksCount, task:group. Operators: == != > >= < <= exists !exists in !in
=~ !~ and their ECS word forms (equals, not_equals, greater_than, ..., matches, not_matches).

Semantics, chosen so that every negative operator is exactly the negation of its positive one:
- A missing attribute makes ==, in, =~, exists and the orderings false (and so !=, !in, !~,
  !exists true).
- == and the orderings compare numerically when both sides are numbers, as versions for
  agentVersion (1.9.0 < 1.14.5), as time intervals for registeredAt (a date means that whole UTC
  day, a timestamp or epoch number that second), otherwise as strings.
- =~ is a full match (Java's Pattern.matches, as ECS documents).
- task:group asks whether the instance runs a task of that group: `task:group == g` is true when
  it runs one, `!=` when it runs none; `in`/`=~` when it runs one of them; `exists` when it runs
  any grouped task.

`str(expr)` is canonical and re-parses to an equal AST; `expr.evaluate(view)` works on anything
with InstanceView's field names (placement passes views with in-call task deltas applied).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Protocol

MAX_LENGTH = 2000  # ECS's limit on an expression
MAX_DEPTH = 64  # nesting of parentheses / negations

ATTRIBUTE = "attribute"
AGENT_CONNECTED = "agentConnected"
AGENT_VERSION = "agentVersion"
INSTANCE_ID = "instanceId"
REGISTERED_AT = "registeredAt"
RUNNING_TASKS = "runningTasksCount"
TASK_GROUP = "task:group"

_SUBJECTS = {
    "agentconnected": AGENT_CONNECTED,
    "agentversion": AGENT_VERSION,
    "instanceid": INSTANCE_ID,
    "ec2instanceid": INSTANCE_ID,
    "registeredat": REGISTERED_AT,
    "runningtaskscount": RUNNING_TASKS,
    "task:group": TASK_GROUP,
}
_WORD_OPS = {
    "equals": "==",
    "not_equals": "!=",
    "greater_than": ">",
    "greater_than_equal": ">=",
    "less_than": "<",
    "less_than_equal": "<=",
    "exists": "exists",
    "not_exists": "!exists",
    "in": "in",
    "not_in": "!in",
    "matches": "=~",
    "not_matches": "!~",
}
_SYMBOL_OPS = {"==", "!=", ">", ">=", "<", "<=", "=~", "!~"}
_NEGATIONS = {"!=": "==", "!in": "in", "!~": "=~", "!exists": "exists"}
_ORDER = frozenset({"==", "!=", ">", ">=", "<", "<="})
_MATCH = frozenset({"==", "!=", "in", "!in", "=~", "!~"})
_VALID_OPS = {  # per ECS's documentation of each subject
    ATTRIBUTE: _ORDER | _MATCH | {"exists", "!exists"},
    AGENT_CONNECTED: _MATCH,
    AGENT_VERSION: _ORDER,
    INSTANCE_ID: _MATCH,
    REGISTERED_AT: _ORDER,
    RUNNING_TASKS: _ORDER,
    TASK_GROUP: _MATCH | {"exists", "!exists"},
}
_KEYWORDS = {"and", "or", "not", *_WORD_OPS}
_SPECIAL = "()[],'\"=!<>&|"
_BARE = re.compile(r"[^\s()\[\],'\"=!<>&|]+")
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_VERSION = re.compile(r"[vV]?(\d+(?:\.\d+)*)")


class QueryError(ValueError):
    """A parse failure at a character offset (0-based) of the expression."""

    def __init__(self, offset: int, problem: str) -> None:
        super().__init__(f"{problem} at offset {offset}")
        self.offset = offset
        self.problem = problem


class InstanceLike(Protocol):
    """The fields an expression reads (InstanceView has them all)."""

    instance_id: str
    connected: bool
    attributes: dict[str, str]
    agent_version: str
    registered_at: float
    running_tasks_count: int
    task_groups: dict[str, int]


Predicate = Callable[[Any], bool]


# ----------------------------------------------------------------------------- AST


class Expr:
    """Base of the AST nodes; subclasses are frozen dataclasses compared by value."""

    def evaluate(self, view: InstanceLike) -> bool:
        return self.predicate(view)

    @functools.cached_property
    def predicate(self) -> Predicate:
        """This expression compiled once to a Python lambda (placement evaluates it a lot)."""
        ns: dict[str, Any] = {}
        return eval(f"lambda v: {self.source(ns)}", ns)

    @functools.cached_property
    def dynamic(self) -> bool:
        """True when the result can change as tasks are placed (task:group, runningTasksCount)."""
        return any(c.subject in (TASK_GROUP, RUNNING_TASKS) for c in self.comparisons())

    @functools.cached_property
    def attribute_names(self) -> frozenset[str]:
        return frozenset(c.name for c in self.comparisons() if c.subject == ATTRIBUTE)

    def comparisons(self) -> Iterator[Cmp]:
        raise NotImplementedError

    def source(self, ns: dict[str, Any]) -> str:
        """A Python expression over `v`; helpers it calls are added to `ns`."""
        raise NotImplementedError


@dataclass(frozen=True, eq=True)
class Cmp(Expr):
    subject: str  # one of the subject constants; ec2InstanceId is stored as instanceId
    op: str  # canonical symbol: == != > >= < <= exists !exists in !in =~ !~
    args: tuple[str, ...] = ()
    name: str = ""  # the attribute name for attribute:NAME

    def __str__(self) -> str:
        subject = f"{ATTRIBUTE}:{self.name}" if self.subject == ATTRIBUTE else self.subject
        if self.op in ("exists", "!exists"):
            return f"{subject} {self.op}"
        if self.op in ("in", "!in"):
            return f"{subject} {self.op} [{', '.join(quote(a) for a in self.args)}]"
        return f"{subject} {self.op} {quote(self.args[0])}"

    def comparisons(self) -> Iterator[Cmp]:
        yield self

    def source(self, ns: dict[str, Any]) -> str:
        positive = _NEGATIONS.get(self.op, self.op)
        src = _inline_source(self.subject, self.name, positive, self.args, ns)
        if src is None:
            helper = f"_p{len(ns)}"
            ns[helper] = _compile_cmp(self.subject, self.name, positive, self.args)
            src = f"{helper}(v)"
        return f"(not {src})" if positive != self.op else src


@dataclass(frozen=True, eq=True)
class Not(Expr):
    item: Expr

    def __str__(self) -> str:
        return f"!({self.item})"

    def comparisons(self) -> Iterator[Cmp]:
        return self.item.comparisons()

    def source(self, ns: dict[str, Any]) -> str:
        return f"(not {self.item.source(ns)})"


@dataclass(frozen=True, eq=True)
class And(Expr):
    items: tuple[Expr, ...]

    def __str__(self) -> str:
        return " && ".join(f"({i})" if isinstance(i, Or) else str(i) for i in self.items)

    def comparisons(self) -> Iterator[Cmp]:
        for item in self.items:
            yield from item.comparisons()

    def source(self, ns: dict[str, Any]) -> str:
        return "(" + " and ".join(i.source(ns) for i in self.items) + ")"


@dataclass(frozen=True, eq=True)
class Or(Expr):
    items: tuple[Expr, ...]

    def __str__(self) -> str:
        return " || ".join(str(i) for i in self.items)

    def comparisons(self) -> Iterator[Cmp]:
        for item in self.items:
            yield from item.comparisons()

    def source(self, ns: dict[str, Any]) -> str:
        return "(" + " or ".join(i.source(ns) for i in self.items) + ")"


def quote(value: str) -> str:
    """A value as the canonical form writes it: bare when it lexes back as itself."""
    if _BARE.fullmatch(value) and value.lower() not in _KEYWORDS:
        return value
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


# ----------------------------------------------------------------------------- lexer


@dataclass(frozen=True)
class _Tok:
    kind: str  # "(" ")" "[" "]" "," op word str end
    text: str
    at: int


def _lex(src: str) -> list[_Tok]:
    toks: list[_Tok] = []
    i, n = 0, len(src)
    while i < n:
        ch = src[i]
        if ch.isspace():
            i += 1
        elif ch in "()[],":
            toks.append(_Tok(ch, ch, i))
            i += 1
        elif ch in "'\"":
            text, end = _lex_string(src, i)
            toks.append(_Tok("str", text, i))
            i = end
        elif ch in "=!<>&|":
            op = _lex_symbol(src, i)
            toks.append(_Tok("op", op, i))
            i += len(op)
        else:
            m = _BARE.match(src, i)
            assert m is not None  # any other character starts a bare word
            toks.append(_Tok("word", m.group(), i))
            i = m.end()
    toks.append(_Tok("end", "", n))
    return toks


def _lex_string(src: str, start: int) -> tuple[str, int]:
    quote_ch, out, i = src[start], [], start + 1
    while i < len(src):
        ch = src[i]
        if ch == "\\" and i + 1 < len(src) and src[i + 1] in (quote_ch, "\\"):
            out.append(src[i + 1])
            i += 2
        elif ch == quote_ch:
            return "".join(out), i + 1
        else:
            out.append(ch)
            i += 1
    raise QueryError(start, f"unterminated string starting with {quote_ch}")


def _lex_symbol(src: str, i: int) -> str:
    two = src[i : i + 2]
    if two in _SYMBOL_OPS or two in ("&&", "||"):
        return two
    ch = src[i]
    if ch in "<>!":
        return ch
    hint = {"=": "==", "&": "&&", "|": "||"}[ch]
    raise QueryError(i, f"unexpected '{ch}' (did you mean '{hint}'?)")


# ----------------------------------------------------------------------------- parser


class _Parser:
    def __init__(self, src: str) -> None:
        self.toks = _lex(src)
        self.pos = 0
        self.depth = 0

    @property
    def tok(self) -> _Tok:
        return self.toks[self.pos]

    def take(self) -> _Tok:
        tok = self.toks[self.pos]
        self.pos += 1
        return tok

    def is_word(self, *words: str) -> bool:
        return self.tok.kind == "word" and self.tok.text.lower() in words

    def is_op(self, *ops: str) -> bool:
        return self.tok.kind == "op" and self.tok.text in ops

    def fail(self, expected: str) -> QueryError:
        got = "end of expression" if self.tok.kind == "end" else repr(self.tok.text)
        return QueryError(self.tok.at, f"expected {expected}, found {got}")

    def parse(self) -> Expr:
        expr = self.parse_or()
        if self.tok.kind != "end":
            raise self.fail("'&&', '||', ')' or end of expression")
        return expr

    def parse_or(self) -> Expr:
        items = [self.parse_and()]
        while self.is_op("||") or self.is_word("or"):
            self.take()
            items.append(self.parse_and())
        return _flatten(Or, items)

    def parse_and(self) -> Expr:
        items = [self.parse_unary()]
        while self.is_op("&&") or self.is_word("and"):
            self.take()
            items.append(self.parse_unary())
        return _flatten(And, items)

    def parse_unary(self) -> Expr:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise QueryError(self.tok.at, f"expression nested deeper than {MAX_DEPTH} levels")
        try:
            if self.is_op("!") or self.is_word("not"):
                self.take()
                return Not(self.parse_unary())
            if self.tok.kind == "(":
                self.take()
                expr = self.parse_or()
                if self.tok.kind != ")":
                    raise self.fail("')'")
                self.take()
                return expr
            return self.parse_cmp()
        finally:
            self.depth -= 1

    def parse_cmp(self) -> Cmp:
        subject, name = self.parse_subject()
        op_tok = self.tok
        op = self.parse_operator()
        if op not in _VALID_OPS[subject]:
            shown = f"attribute:{name}" if subject == ATTRIBUTE else subject
            valid = " ".join(sorted(_VALID_OPS[subject]))
            raise QueryError(op_tok.at, f"operator '{op}' is not valid for {shown} (use {valid})")
        if op in ("exists", "!exists"):
            return Cmp(subject, op, (), name)
        if op in ("in", "!in"):
            values = self.parse_list()
        else:
            values = [self.parse_value()]
        for at, value in values:
            _check_value(subject, op, value, at)
        return Cmp(subject, op, tuple(v for _, v in values), name)

    def parse_subject(self) -> tuple[str, str]:
        tok = self.tok
        if tok.kind != "word":
            raise self.fail("a subject (attribute:NAME, agentConnected, instanceId, ...)")
        self.take()
        lowered = tok.text.lower()
        if lowered.startswith("attribute:"):
            name = tok.text[len("attribute:") :]
            if not name:
                raise QueryError(tok.at, "attribute: needs a name, e.g. attribute:zone")
            return ATTRIBUTE, name
        if lowered in _SUBJECTS:
            return _SUBJECTS[lowered], ""
        raise QueryError(
            tok.at,
            f"unknown subject {tok.text!r} (use attribute:NAME, agentConnected, agentVersion, "
            "instanceId, ec2InstanceId, registeredAt, runningTasksCount or task:group)",
        )

    def parse_operator(self) -> str:
        tok = self.tok
        if tok.kind == "op" and tok.text in _SYMBOL_OPS:
            self.take()
            return tok.text
        if tok.kind == "op" and tok.text == "!":
            self.take()
            if self.is_word("exists", "in"):
                return "!" + self.take().text.lower()
            raise self.fail("'exists' or 'in' after '!'")
        if tok.kind == "word" and tok.text.lower() in _WORD_OPS:
            self.take()
            return _WORD_OPS[tok.text.lower()]
        raise self.fail("an operator (== != > >= < <= exists !exists in !in =~ !~)")

    def parse_value(self) -> tuple[int, str]:
        tok = self.tok
        if tok.kind not in ("word", "str"):
            raise self.fail("a value")
        self.take()
        return tok.at, tok.text

    def parse_list(self) -> list[tuple[int, str]]:
        opener = self.tok
        if opener.kind not in ("[", "("):
            raise self.fail("a list like [a, b]")
        closer = "]" if opener.kind == "[" else ")"
        self.take()
        values = [self.parse_value()]
        while self.tok.kind == ",":
            self.take()
            values.append(self.parse_value())
        if self.tok.kind != closer:
            raise self.fail(f"',' or '{closer}'")
        self.take()
        return values


def _flatten(kind: type[And] | type[Or], items: list[Expr]) -> Expr:
    if len(items) == 1:
        return items[0]
    flat: list[Expr] = []
    for item in items:
        flat.extend(item.items if isinstance(item, kind) else (item,))
    return kind(tuple(flat))


def _check_value(subject: str, op: str, value: str, at: int) -> None:
    """Refuse arguments that can never mean anything, where they are."""
    if op in ("=~", "!~"):
        try:
            re.compile(value)
        except re.error as exc:
            raise QueryError(at, f"invalid regular expression {value!r}: {exc}") from None
    elif subject == RUNNING_TASKS and not _NUMBER.fullmatch(value):
        raise QueryError(at, f"runningTasksCount compares with a number, not {value!r}")
    elif subject == REGISTERED_AT and _time_interval(value) is None:
        raise QueryError(
            at, f"registeredAt needs a date like 2018-06-18 or 2018-06-18T22:28:28Z, not {value!r}"
        )
    elif subject == AGENT_CONNECTED and op in ("==", "!=", "in", "!in"):
        if value.lower() not in ("true", "false"):
            raise QueryError(at, f"agentConnected is true or false, not {value!r}")


@functools.lru_cache(maxsize=4096)
def parse(expression: str) -> Expr:
    """Parse an expression (cached: ASTs are immutable). Raises QueryError with the offset."""
    if len(expression) > MAX_LENGTH:
        raise QueryError(MAX_LENGTH, f"expression is longer than {MAX_LENGTH} characters")
    if not expression.strip():
        raise QueryError(0, "expression is empty")
    return _Parser(expression).parse()


# ----------------------------------------------------------------------------- evaluation


def _number(text: str) -> float | None:
    return float(text) if _NUMBER.fullmatch(text) else None


def _version(text: str) -> tuple[int, ...] | None:
    m = _VERSION.fullmatch(text)
    if not m:
        return None
    parts = [int(p) for p in m.group(1).split(".")]
    while len(parts) > 1 and parts[-1] == 0:
        parts.pop()  # 1.14 == 1.14.0
    return tuple(parts)


def _time_interval(text: str) -> tuple[float, float] | None:
    """[start, end) in epoch seconds: a whole UTC day for a date, one second otherwise."""
    number = _number(text)
    if number is not None:
        return number, number + 1
    try:
        if len(text) == 10:
            day = datetime.combine(date.fromisoformat(text), datetime.min.time(), UTC)
            return day.timestamp(), (day + timedelta(days=1)).timestamp()
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    start = moment.replace(microsecond=0).timestamp()
    return start, start + 1


def _compare(a: Any, b: Any, op: str) -> bool:
    if op == "==":
        return bool(a == b)
    if op == ">":
        return bool(a > b)
    if op == ">=":
        return bool(a >= b)
    if op == "<":
        return bool(a < b)
    return bool(a <= b)


def _string_cmp(value: str | None, arg: str, op: str, versions: bool) -> bool:
    """==/ordering between an instance's string and an argument: version, number or text."""
    if value is None:
        return False
    if versions:
        va, vb = _version(value), _version(arg)
        if va is not None and vb is not None:
            return _compare(va, vb, op)
    na, nb = _number(value), _number(arg)
    if na is not None and nb is not None:
        return _compare(na, nb, op)
    return _compare(value, arg, op)


def _getter(subject: str, name: str) -> Callable[[Any], Any]:
    if subject == ATTRIBUTE:
        return lambda v: v.attributes.get(name)
    if subject == INSTANCE_ID:
        return lambda v: v.instance_id
    if subject == AGENT_VERSION:
        return lambda v: v.agent_version
    if subject == AGENT_CONNECTED:
        return lambda v: "true" if v.connected else "false"
    if subject == RUNNING_TASKS:
        return lambda v: v.running_tasks_count
    if subject == REGISTERED_AT:
        return lambda v: v.registered_at
    return lambda v: v.task_groups


def _inline_source(
    subject: str, name: str, op: str, args: tuple[str, ...], ns: dict[str, Any]
) -> str | None:
    """Plain Python for the common comparisons (no call per evaluation); None otherwise."""
    if subject == TASK_GROUP and op == "==":
        return f"(v.task_groups.get({args[0]!r}, 0) > 0)"
    if subject not in (ATTRIBUTE, INSTANCE_ID):
        return None
    get = f"v.attributes.get({name!r})" if subject == ATTRIBUTE else "v.instance_id"
    if op == "exists" and subject == ATTRIBUTE:
        return f"({name!r} in v.attributes)"
    if any(_number(a) is not None for a in args):
        return None  # numeric equality needs the helper
    if op == "==":
        return f"({get} == {args[0]!r})"
    if op == "in":
        helper = f"_s{len(ns)}"
        ns[helper] = frozenset(args)
        return f"({get} in {helper})"
    return None


def _compile_cmp(subject: str, name: str, op: str, args: tuple[str, ...]) -> Predicate:
    """A predicate for a positive operator (== > >= < <= in =~ exists)."""
    if subject == TASK_GROUP:
        return _compile_task_group(op, args)
    get = _getter(subject, name)
    if op == "exists":
        return lambda v: get(v) is not None
    if op == "=~":
        pattern = re.compile(args[0])
        return lambda v: (s := get(v)) is not None and pattern.fullmatch(str(s)) is not None
    if subject == RUNNING_TASKS:
        limit = float(args[0])
        return lambda v: _compare(get(v), limit, op)
    if subject == REGISTERED_AT:
        return _compile_time(get, op, _time_interval(args[0]) or (0.0, 0.0))
    if subject == AGENT_CONNECTED:
        wanted = {a.lower() for a in args}
        return lambda v: get(v) in wanted
    if op == "in":
        return _compile_in(get, args, subject == AGENT_VERSION)
    return _compile_string(get, op, args[0], subject == AGENT_VERSION)


def _compile_string(get: Callable[[Any], Any], op: str, arg: str, versions: bool) -> Predicate:
    if op == "==" and not versions and _number(arg) is None:
        return lambda v: get(v) == arg  # the fast, common case: plain text equality
    return lambda v: _string_cmp(get(v), arg, op, versions)


def _compile_in(get: Callable[[Any], Any], args: tuple[str, ...], versions: bool) -> Predicate:
    texts = frozenset(args)
    if not versions and all(_number(a) is None for a in args):
        return lambda v: get(v) in texts
    return lambda v: any(_string_cmp(get(v), a, "==", versions) for a in args)


def _compile_time(get: Callable[[Any], Any], op: str, interval: tuple[float, float]) -> Predicate:
    start, end = interval
    tests: dict[str, Predicate] = {
        "==": lambda t: start <= t < end,
        ">": lambda t: t >= end,
        ">=": lambda t: t >= start,
        "<": lambda t: t < start,
        "<=": lambda t: t < end,
    }
    test = tests[op]
    return lambda v: test(get(v))


def _compile_task_group(op: str, args: tuple[str, ...]) -> Predicate:
    if op == "exists":
        return lambda v: any(c > 0 for c in v.task_groups.values())
    if op == "=~":
        pattern = re.compile(args[0])
        return lambda v: any(c > 0 and pattern.fullmatch(g) for g, c in v.task_groups.items())
    wanted = args  # == has one argument, in has several
    return lambda v: any(v.task_groups.get(g, 0) > 0 for g in wanted)
