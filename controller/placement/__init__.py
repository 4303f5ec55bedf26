"""The placement engine: pure functions of a cluster snapshot (no I/O, no asyncio).

`place()` decides where a batch of tasks goes, ECS-style; `validate()` refuses bad constraints
and strategies with InvalidParameterException; `query.parse()` is the cluster query language,
also used by ListContainerInstances' `filter`.

Modules, as Nomad's scheduler splits them: `feasible` (the filters and one call's view),
`rank` (strategy scores and ranking trees), `binpack` (a binpack-led batch's packing plan),
`engine` (one decision: feasibility, then ranking), `standing` (trees kept between calls).
"""

from .engine import DEFAULT_EPHEMERAL_RANGE, FILTER_ORDER, place, validate
from .model import (
    Constraint,
    Failure,
    InstanceView,
    Placement,
    Strategy,
    TaskDemand,
)
from .query import Expr, QueryError, parse
from .strategies import DEFAULT_SERVICE_STRATEGIES, DEFAULT_TASK_STRATEGIES

__all__ = [
    "DEFAULT_EPHEMERAL_RANGE",
    "DEFAULT_SERVICE_STRATEGIES",
    "DEFAULT_TASK_STRATEGIES",
    "FILTER_ORDER",
    "Constraint",
    "Expr",
    "Failure",
    "InstanceView",
    "Placement",
    "QueryError",
    "Strategy",
    "TaskDemand",
    "parse",
    "place",
    "validate",
]
