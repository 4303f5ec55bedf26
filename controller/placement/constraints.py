"""placementConstraints: validation (ECS limits, where a parse fails) and compiled rules."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

from dockyard.errors import invalid

from . import model, query
from .model import Constraint

MAX_CONSTRAINTS = 10
DISTINCT_INSTANCE = "distinctInstance"
MEMBER_OF = "memberOf"
CONSTRAINT_TYPES = (DISTINCT_INSTANCE, MEMBER_OF)


def validate_constraints(
    constraints: Sequence[Constraint], field: str = "placementConstraints"
) -> None:
    """Raise InvalidParameterException naming the constraint and, for a bad expression, where."""
    if len(constraints) > MAX_CONSTRAINTS:
        raise invalid(field, f"at most {MAX_CONSTRAINTS} constraints, got {len(constraints)}")
    for n, c in enumerate(constraints):
        where = f"{field}[{n}]"
        if c.type not in CONSTRAINT_TYPES:
            raise invalid(f"{where}.type", f"must be distinctInstance or memberOf, not {c.type!r}")
        if c.type == DISTINCT_INSTANCE and c.expression:
            raise invalid(f"{where}.expression", "distinctInstance takes no expression")
        if c.type == MEMBER_OF:
            if not c.expression:
                raise invalid(f"{where}.expression", "memberOf needs an expression")
            try:
                query.parse(c.expression)
            except query.QueryError as exc:
                raise invalid(f"{where}.expression", str(exc)) from None


@dataclass(frozen=True)
class Rules:
    """The constraints of one placement call, compiled once."""

    distinct: bool
    member_of: tuple[query.Expr, ...]

    @functools.cached_property
    def dynamic(self) -> bool:
        """memberOf depends on tasks placed in the call (task:group, runningTasksCount)."""
        return any(e.dynamic for e in self.member_of)

    @functools.cached_property
    def predicate(self) -> query.Predicate:
        preds = tuple(e.predicate for e in self.member_of)
        if len(preds) == 1:
            return preds[0]
        return lambda v: all(p(v) for p in preds)

    def member_reason(self, view: query.InstanceLike) -> str | None:
        """None when every memberOf holds, else MissingAttribute or ATTRIBUTE."""
        for expr in self.member_of:
            if not expr.predicate(view):
                if any(name not in view.attributes for name in expr.attribute_names):
                    return model.MISSING_ATTRIBUTE
                return model.ATTRIBUTE
        return None


def compile_rules(constraints: Sequence[Constraint]) -> Rules:
    """Validated, parsed rules (cached per distinct constraint list)."""
    return _compile(tuple((c.type, c.expression) for c in constraints))


@functools.lru_cache(maxsize=1024)
def _compile(key: tuple[tuple[str, str], ...]) -> Rules:
    constraints = [Constraint(t, e) for t, e in key]
    validate_constraints(constraints)
    return Rules(
        distinct=any(t == DISTINCT_INSTANCE for t, _ in key),
        member_of=tuple(query.parse(e) for t, e in key if t == MEMBER_OF),
    )
