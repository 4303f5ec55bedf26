"""placementStrategy: validation, normalisation and ECS's defaults."""

from __future__ import annotations

from collections.abc import Sequence

from dockyard.errors import invalid

from .model import Strategy

MAX_STRATEGIES = 5
BINPACK, SPREAD, RANDOM = "binpack", "spread", "random"
ATTRIBUTE_PREFIX = "attribute:"

# RunTask without placementStrategy: ECS places randomly.
DEFAULT_TASK_STRATEGIES: tuple[Strategy, ...] = (Strategy(RANDOM),)
# Services without placementStrategy: ECS spreads across zones, then across instances.
DEFAULT_SERVICE_STRATEGIES: tuple[Strategy, ...] = (
    Strategy(SPREAD, "attribute:ecs.availability-zone"),
    Strategy(SPREAD, "instanceId"),
)


def normalize(strategy: Strategy) -> Strategy:
    """Canonical spelling: binpack cpu|memory, spread instanceId|host|attribute:NAME."""
    kind = strategy.type.lower()
    field = strategy.field
    if kind == BINPACK:
        field = field.lower()
    elif kind == SPREAD and field.lower() in ("instanceid", "host"):
        field = "instanceId" if field.lower() == "instanceid" else "host"
    elif kind == SPREAD and field.lower().startswith(ATTRIBUTE_PREFIX):
        field = ATTRIBUTE_PREFIX + field[len(ATTRIBUTE_PREFIX) :]
    return Strategy(kind, field)


def validate_strategies(
    strategies: Sequence[Strategy], field: str = "placementStrategy"
) -> list[Strategy]:
    """Raise InvalidParameterException for unknown types/fields; return normalised strategies."""
    if len(strategies) > MAX_STRATEGIES:
        raise invalid(field, f"at most {MAX_STRATEGIES} strategies, got {len(strategies)}")
    out = []
    for n, raw in enumerate(strategies):
        s = normalize(raw)
        where = f"{field}[{n}]"
        if s.type == BINPACK and s.field not in ("cpu", "memory"):
            raise invalid(f"{where}.field", f"binpack takes cpu or memory, not {raw.field!r}")
        elif s.type == SPREAD and not _spread_field_ok(s.field):
            raise invalid(
                f"{where}.field",
                f"spread takes instanceId, host or attribute:NAME, not {raw.field!r}",
            )
        elif s.type == RANDOM and s.field:
            raise invalid(f"{where}.field", "random takes no field")
        elif s.type not in (BINPACK, SPREAD, RANDOM):
            raise invalid(f"{where}.type", f"must be binpack, spread or random, not {raw.type!r}")
        out.append(s)
    return out


def _spread_field_ok(field: str) -> bool:
    if field in ("instanceId", "host"):
        return True
    return field.startswith(ATTRIBUTE_PREFIX) and len(field) > len(ATTRIBUTE_PREFIX)
