"""Helpers the resource modules share: ECS pagination, the Describe* answer, include TAGS."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from controller.ecs_paging import paginate

NO_INSTANCES = "Container Instances cannot be empty."  # ECS's words


def page(
    items: list[Any],
    body: dict[str, Any],
    key: Callable[[Any], Any] = lambda x: x,
    render: Callable[[Any], Any] = lambda x: x,
    descending: bool = False,
) -> tuple[list[Any], dict[str, str]]:
    """ECS pagination of items already sorted by `key`: (rendered page, {nextToken})."""
    found, token = paginate(
        items, body.get("nextToken"), body.get("maxResults"), key=key, descending=descending
    )
    return [render(i) for i in found], ({"nextToken": token} if token else {})


def describe(
    refs: list[str], find: Callable[[str], Any], render: Callable[[Any], dict[str, Any]]
) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """ECS's Describe* shape: what was found, rendered, and a MISSING failure for the rest."""
    found, failures = [], []
    for ref in refs:
        obj = find(ref)
        if obj is None:
            failures.append({"arn": ref, "reason": "MISSING"})
        else:
            found.append(render(obj))
    return found, failures


def with_tags(body: dict[str, Any]) -> bool:
    """Whether a Describe* request asks for tags (ECS shows them only with include TAGS)."""
    return "TAGS" in (body.get("include") or [])
