"""ECS pagination: every item exactly once, opaque tokens, bad tokens and sizes refused."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controller.ecs_paging import encode_token, paginate
from dockyard.errors import ApiError


def _walk(items: list[str], size: int | None, **kw: object) -> list[list[str]]:
    pages, token = [], None
    while True:
        page, token = paginate(items, token, size, **kw)  # type: ignore[arg-type]
        pages.append(page)
        if token is None:
            return pages


@given(st.lists(st.text(max_size=8), unique=True), st.integers(min_value=1, max_value=100))
def test_pages_cover_every_item_once_in_order(items: list[str], size: int) -> None:
    items.sort()
    pages = _walk(items, size)
    assert [x for page in pages for x in page] == items
    assert all(len(page) == size for page in pages[:-1])


def test_default_and_limit() -> None:
    items = [f"arn:{i:04}" for i in range(250)]
    assert [len(p) for p in _walk(items, None)] == [100, 100, 50]
    assert [len(p) for p in _walk(items, None, default=10, limit=100)][:2] == [10, 10]


def test_page_boundary_survives_inserts_and_deletes() -> None:
    items = ["a", "c", "e", "g"]
    first, token = paginate(items, None, 2)
    assert first == ["a", "c"]
    changed = ["a", "b", "d", "e", "g"]  # "c" deleted, "b" inserted before the boundary
    rest, token = paginate(changed, token, 10)
    assert rest == ["d", "e", "g"] and token is None


def test_descending_and_tuple_keys() -> None:
    revisions = [("web", 3), ("web", 2), ("web", 1), ("api", 9)]
    pages = _walk(revisions, 3, key=lambda r: r, descending=True)  # type: ignore[arg-type]
    assert pages == [revisions[:3], revisions[3:]]


@pytest.mark.parametrize("size", [0, -1, 101, True])
def test_bad_max_results_is_refused(size: int) -> None:
    with pytest.raises(ApiError) as caught:
        paginate(["a"], None, size)
    assert caught.value.name == "InvalidParameterException"
    assert caught.value.message.startswith("maxResults:")


@pytest.mark.parametrize(
    "token",
    [
        "garbage!",
        base64.urlsafe_b64encode(b"not json").decode(),
        base64.urlsafe_b64encode(b'{"v": 99, "after": "a"}').decode(),
        base64.urlsafe_b64encode(b"[1, 2]").decode(),
        encode_token(5),  # a token from a listing keyed by numbers
    ],
)
def test_bad_token_is_refused(token: str) -> None:
    with pytest.raises(ApiError) as caught:
        paginate(["a", "b"], token, 1)
    assert caught.value.name == "InvalidParameterException"
    assert caught.value.message.startswith("nextToken:")


def test_empty_token_means_first_page() -> None:
    assert paginate(["a", "b"], "", 1) == (["a"], encode_token("a"))
