"""The cluster query language: every operator, every subject, errors that say where."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from controller.placement import InstanceView, QueryError, parse


def view(**kw: object) -> InstanceView:
    base: dict[str, object] = dict(
        arn="arn:aws:ecs:us-east-1:0:container-instance/c/i-1",
        instance_id="i-1",
        status="ACTIVE",
        connected=True,
        attributes={"zone": "b", "ecs.instance-type": "t2.small", "cores": "16"},
        agent_version="1.14.5",
        registered_at=datetime(2018, 6, 18, 22, 28, 28, tzinfo=UTC).timestamp(),
        cpu_free=1024,
        memory_free=2048,
        tcp_ports_used=set(),
        udp_ports_used=set(),
        running_tasks_count=2,
        task_groups={"service:api": 2},
    )
    base.update(kw)
    return InstanceView(**base)  # type: ignore[arg-type]


def holds(expr: str, **kw: object) -> bool:
    return parse(expr).evaluate(view(**kw))


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("attribute:zone == b", True),
        ("attribute:zone == a", False),
        ("attribute:zone != a", True),
        ("attribute:zone equals b", True),
        ("attribute:zone not_equals b", False),
        ("attribute:cores > 4", True),  # numeric, although "16" < "4" as text
        ("attribute:cores >= 16", True),
        ("attribute:cores < 16", False),
        ("attribute:cores <= 16.0", True),
        ("attribute:cores == 16.0", True),
        ("attribute:zone > a", True),  # text ordering when not numbers
        ("attribute:zone greater_than_equal c", False),
        ("attribute:zone exists", True),
        ("attribute:gpu exists", False),
        ("attribute:gpu !exists", True),
        ("attribute:gpu not_exists", True),
        ("attribute:zone in [a, b]", True),
        ("attribute:zone in (a, c)", False),
        ("attribute:zone !in [a, c]", True),
        ("attribute:zone not_in [b]", False),
        ("attribute:ecs.instance-type =~ t2.*", True),
        ("attribute:ecs.instance-type =~ t2", False),  # full match, like Java's matches()
        ("attribute:ecs.instance-type !~ 'm[45]\\..*'", True),
        ("attribute:ecs.instance-type matches 't2\\.small'", True),
        ("attribute:ecs.instance-type not_matches t2.*", False),
    ],
)
def test_each_operator_on_attributes(expr: str, expected: bool) -> None:
    assert holds(expr) is expected


@pytest.mark.parametrize(
    "expr",
    ["attribute:gpu == x", "attribute:gpu > 1", "attribute:gpu in [x]", "attribute:gpu =~ .*"],
)
def test_a_missing_attribute_fails_positive_operators_and_passes_negations(expr: str) -> None:
    assert holds(expr) is False
    negated = expr.replace("==", "!=").replace(" in ", " !in ").replace("=~", "!~")
    if negated != expr:
        assert holds(negated) is True


def test_agent_connected() -> None:
    assert holds("agentConnected == true")
    assert holds("agentConnected == false", connected=False)
    assert not holds("agentConnected != TRUE")
    assert holds("agentConnected in [true, false]")


def test_agent_version_compares_as_versions() -> None:
    assert holds("agentVersion > 1.9.0")  # 1.14.5 > 1.9.0, unlike text order
    assert holds("agentVersion >= 1.14.5")
    assert holds("agentVersion == 1.14.5")
    assert holds("agentVersion < 1.15")
    assert holds("agentVersion == 1.14", agent_version="1.14.0")


def test_instance_id_and_its_ec2_alias() -> None:
    assert holds("instanceId == i-1")
    assert holds("ec2InstanceId in ['i-1', 'i-2']")
    assert holds("ec2InstanceId =~ i-.*")
    assert not holds("ec2InstanceId != i-1")
    assert str(parse("ec2InstanceId == i-1")) == "instanceId == i-1"


def test_registered_at_dates_days_and_epochs() -> None:
    assert holds("registeredAt == 2018-06-18")  # that whole UTC day
    assert holds("registeredAt > 2018-06-17")
    assert holds("registeredAt < 2018-06-19")
    assert not holds("registeredAt > 2018-06-18")
    assert holds("registeredAt >= 2018-06-18T22:28:28Z")
    assert holds("registeredAt <= 2018-06-18T22:28:28+00:00")
    assert holds("registeredAt == 2018-06-18T22:28:28")
    assert holds("registeredAt < 2018-06-19T00:00:00+02:00") is False  # 22:00 UTC the 18th
    epoch = int(view().registered_at)
    assert holds(f"registeredAt == {epoch}")


def test_running_tasks_count() -> None:
    assert holds("runningTasksCount == 2")
    assert holds("runningTasksCount > 1")
    assert not holds("runningTasksCount < 2")
    assert holds("runningTasksCount <= 0", running_tasks_count=0)


def test_task_group_asks_whether_the_instance_runs_one() -> None:
    assert holds("task:group == service:api")
    assert not holds("task:group != service:api")
    assert holds("task:group != service:db")
    assert holds("task:group in [service:db, service:api]")
    assert not holds("task:group !in [service:api]")
    assert holds("task:group =~ service:.*")
    assert holds("task:group exists")
    assert holds("task:group !exists", task_groups={"service:api": 0})
    assert holds("not(task:group == database)")


def test_compound_expressions_precedence_and_keywords() -> None:
    assert holds("attribute:zone == a || attribute:zone == b && runningTasksCount == 2")
    assert not holds("(attribute:zone == a || attribute:zone == b) && runningTasksCount == 3")
    assert holds("attribute:zone == b AND NOT attribute:zone == a")
    assert holds("!(attribute:zone == a) and (attribute:cores > 8 or attribute:gpu exists)")
    assert holds("ATTRIBUTE:zone EQUALS b")  # keywords and subjects are case-insensitive
    assert not holds("attribute:Zone == b")  # attribute names are not


@pytest.mark.parametrize(
    "expr",
    [
        "attribute:ecs.availability-zone in [us-east-1a, us-east-1b]",
        "task:group == service:production",
        "!(task:group == database)",
        "attribute:ecs.instance-type =~ t2.* && attribute:zone != 'a b'",
        "(attribute:a == 1 || attribute:b == 2) && !(attribute:c exists)",
        "attribute:x == 'it''s'".replace("''", "\\'"),
        "attribute:x == 'and' || registeredAt >= 2018-06-18T22:28:28Z",
    ],
)
def test_canonical_string_round_trips(expr: str) -> None:
    ast = parse(expr)
    assert parse(str(ast)) == ast
    assert str(parse(str(ast))) == str(ast)


@pytest.mark.parametrize(
    ("expr", "offset", "words"),
    [
        ("attribute:zone = a", 15, "'=='"),
        ("zone == a", 0, "unknown subject"),
        ("attribute:zone == 'a", 18, "unterminated"),
        ("(attribute:zone == a", 20, "')'"),
        ("attribute:zone == a b", 20, "found 'b'"),
        ("attribute:zone ==", 17, "a value"),
        ("attribute:zone =~ '('", 18, "regular expression"),
        ("runningTasksCount == many", 21, "number"),
        ("registeredAt > yesterday", 15, "date"),
        ("agentConnected > true", 15, "not valid for agentConnected"),
        ("agentConnected == maybe", 18, "true or false"),
        ("attribute:zone in [a, b", 23, "']'"),
        ("attribute:zone in a", 18, "list"),
        ("attribute: == a", 0, "needs a name"),
        ("attribute:zone == a &", 20, "'&&'"),
        ("   ", 0, "empty"),
    ],
)
def test_parse_errors_say_where(expr: str, offset: int, words: str) -> None:
    with pytest.raises(QueryError) as caught:
        parse(expr)
    assert caught.value.offset == offset
    assert words in str(caught.value)
    assert f"at offset {offset}" in str(caught.value)


def test_limits_on_length_and_nesting() -> None:
    with pytest.raises(QueryError, match="longer than 2000"):
        parse("attribute:a == " + "x" * 2000)
    with pytest.raises(QueryError, match="nested deeper"):
        parse("(" * 100 + "attribute:a == b" + ")" * 100)
