"""The ECS JSON protocol layer, driven by real clients: boto3, the `aws ecs` CLI, raw HTTP.

The service behind the endpoint is a small fake with canned ECS bodies: these tests are
about the protocol (routing, validation, errors, serialisation, metrics), not the cluster.
The endpoint runs with check_responses=True, so every body it sends is also checked
against botocore's output shapes.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import http.client
import json
import logging
import os
import subprocess
import threading
from collections.abc import Iterator
from typing import Any

import aiohttp
import boto3
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from botocore.config import Config
from botocore.exceptions import ClientError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from controller.ecs_http import METRICS_KEY, make_app, metrics_handler_for
from controller.ecs_paging import paginate
from controller.ops.chain import OperationChain
from dockyard.arns import ArnFactory
from dockyard.errors import ApiError
from tests.support import tool

TARGET = "AmazonEC2ContainerServiceV20141113."
ARNS = ArnFactory(region="us-east-1", account="123456789012")
CREATED = dt.datetime(2024, 1, 2, 3, 4, 5, 500000, tzinfo=dt.UTC)


class FakeService:
    """A stand-in for the service layer: canned ECS bodies, ApiErrors for some inputs."""

    def __init__(self) -> None:
        self.clusters = ["alpha", "bravo", "charlie", "default", "echo"]
        self.seen: list[tuple[str, dict[str, Any]]] = []

    def operations(self) -> set[str]:
        return {"ListClusters", "DescribeClusters", "RunTask"}

    def chain(self) -> OperationChain:
        """The endpoint's way in: the real operations chain over this fake's handlers."""
        return OperationChain(
            {op: functools.partial(self.call, op) for op in self.operations()},
            require_all=False,
        )

    async def call(self, operation: str, body: dict[str, Any]) -> dict[str, Any]:
        self.seen.append((operation, body))
        return getattr(self, operation)(body)  # type: ignore[no-any-return]

    def ListClusters(self, body: dict[str, Any]) -> dict[str, Any]:
        arns = [ARNS.cluster(name) for name in self.clusters]
        page, token = paginate(arns, body.get("nextToken"), body.get("maxResults"))
        return {"clusterArns": page, "nextToken": token}

    def DescribeClusters(self, body: dict[str, Any]) -> dict[str, Any]:
        names = [ref.rsplit("/", 1)[-1] for ref in body.get("clusters", ["default"])]
        found = [self._cluster(n) for n in names if n in self.clusters]
        missing = [n for n in names if n not in self.clusters]
        failures = [{"arn": ARNS.cluster(n), "reason": "MISSING"} for n in missing]
        return {"clusters": found, "failures": failures}

    def _cluster(self, name: str) -> dict[str, Any]:
        return {
            "clusterArn": ARNS.cluster(name),
            "clusterName": name,
            "status": "ACTIVE",
            "registeredContainerInstancesCount": 0,
            "runningTasksCount": 0,
            "pendingTasksCount": 0,
            "activeServicesCount": 0,
        }

    def RunTask(self, body: dict[str, Any]) -> dict[str, Any]:
        cluster = body.get("cluster", "default")
        if cluster not in self.clusters:
            raise ApiError("ClusterNotFoundException", f"Cluster not found: {cluster}")
        if body["taskDefinition"] == "crash":
            raise RuntimeError("a bug in the service layer")
        task = {
            "taskArn": ARNS.task(cluster, "0f1e2d3c"),
            "clusterArn": ARNS.cluster(cluster),
            "taskDefinitionArn": ARNS.task_definition(body["taskDefinition"], 1),
            "lastStatus": "PROVISIONING",
            "desiredStatus": "RUNNING",
            "launchType": "EC2",
            "createdAt": CREATED,
            "containers": [{"name": "web", "lastStatus": "PENDING", "exitCode": None}],
        }
        if body["taskDefinition"] == "badshape":
            task["launchType"] = "SUBMARINE"
        return {"tasks": [task], "failures": []}


class ThreadedServer:
    """The endpoint on aiohttp's TestServer, in a loop of its own so blocking clients
    (boto3, a subprocess) can call it from the test's thread."""

    def __init__(self, app: web.Application) -> None:
        self.app = app
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.server: TestServer | None = None

    def _run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=30)

    async def _start(self) -> TestServer:
        server = TestServer(self.app, host="127.0.0.1")
        await server.start_server()
        return server

    def start(self) -> str:
        self.thread.start()
        self.server = self._run(self._start())
        return str(self.server.make_url("/"))

    def stop(self) -> None:
        try:
            if self.server is not None:
                self._run(self.server.close())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout=30)
            self.loop.close()


class Endpoint:
    def __init__(self, url: str, fake: FakeService, registry: CollectorRegistry) -> None:
        self.url = url
        self.fake = fake
        self.registry = registry

    def metric(self, name: str, **labels: str) -> float:
        return self.registry.get_sample_value(name, labels) or 0.0


async def _healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


@pytest.fixture
def endpoint() -> Iterator[Endpoint]:
    fake = FakeService()
    registry = CollectorRegistry()
    app = make_app(
        fake.chain(),
        registry=registry,
        metrics_handler=metrics_handler_for(registry),
        health_handler=_healthz,
        check_responses=True,
    )
    server = ThreadedServer(app)
    try:
        yield Endpoint(server.start(), fake, registry)
    finally:
        server.stop()


@pytest.fixture(scope="module")
def boto_session() -> boto3.session.Session:
    return boto3.session.Session(
        aws_access_key_id="AKIDDOCKYARDTEST",
        aws_secret_access_key="secret",
        region_name="us-east-1",
    )


def ecs(session: boto3.session.Session, url: str, **config: Any) -> Any:
    """A real boto3 ECS client aimed at the endpoint; no retries, so errors show at once."""
    cfg = Config(retries={"total_max_attempts": 1}, **config)
    return session.client("ecs", endpoint_url=url, config=cfg)


# ---------------------------------------------------------------- boto3


def test_boto3_calls_parse(endpoint: Endpoint, boto_session: Any) -> None:
    client = ecs(boto_session, endpoint.url)
    arns = client.list_clusters()["clusterArns"]
    assert arns[0] == "arn:aws:ecs:us-east-1:123456789012:cluster/alpha"
    described = client.describe_clusters(clusters=["bravo"])["clusters"]
    assert described[0]["clusterName"] == "bravo" and described[0]["status"] == "ACTIVE"
    task = client.run_task(taskDefinition="web", cluster="default")["tasks"][0]
    assert task["taskArn"] == "arn:aws:ecs:us-east-1:123456789012:task/default/0f1e2d3c"
    assert task["createdAt"] == CREATED  # epoch seconds on the wire, a datetime in boto3
    assert "exitCode" not in task["containers"][0]  # None members are left out
    op, body = endpoint.fake.seen[-1]
    assert op == "RunTask" and body["clientToken"]  # boto3 adds the idempotency token


def test_boto3_paginator_walks_every_page(endpoint: Endpoint, boto_session: Any) -> None:
    client = ecs(boto_session, endpoint.url)
    pages = list(client.get_paginator("list_clusters").paginate(PaginationConfig={"PageSize": 2}))
    assert [len(p["clusterArns"]) for p in pages] == [2, 2, 1]
    names = [arn.rsplit("/", 1)[-1] for p in pages for arn in p["clusterArns"]]
    assert names == endpoint.fake.clusters


def test_service_errors_surface_as_client_errors(endpoint: Endpoint, boto_session: Any) -> None:
    client = ecs(boto_session, endpoint.url)
    with pytest.raises(ClientError) as caught:
        client.run_task(taskDefinition="web", cluster="nope")
    error = caught.value.response["Error"]
    assert error["Code"] == "ClusterNotFoundException"
    assert error["Message"] == "Cluster not found: nope"
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert caught.value.response["ResponseMetadata"]["RequestId"]
    # the modelled exception class, as scripts catch it
    with pytest.raises(client.exceptions.ClusterNotFoundException):
        client.run_task(taskDefinition="web", cluster="nope")


def test_operation_not_implemented_is_a_clear_client_error(
    endpoint: Endpoint, boto_session: Any
) -> None:
    with pytest.raises(ClientError) as caught:
        ecs(boto_session, endpoint.url).list_services(cluster="default")
    assert caught.value.response["Error"]["Code"] == "ClientException"
    assert "ListServices is not supported by Dockyard" in str(caught.value)


@pytest.mark.parametrize(
    ("kwargs", "member"),
    [
        ({"taskDefinition": 5}, "taskDefinition: expected string"),
        ({"cluster": "default"}, "taskDefinition: required member is missing"),
        ({"taskDefinition": "web", "count": "3"}, "count: expected integer"),
        (
            {"taskDefinition": "web", "placementStrategy": [{"type": "SUBMARINE"}]},
            'placementStrategy[0].type: "SUBMARINE"',  # (launchType gets ECS's own words)
        ),
        (
            {
                "taskDefinition": "web",
                "overrides": {"containerOverrides": [{"environment": [{"name": "A", "value": 1}]}]},
            },
            "overrides.containerOverrides[0].environment[0].value: expected string",
        ),
    ],
)
def test_bad_parameters_name_the_member(
    endpoint: Endpoint, boto_session: Any, kwargs: dict[str, Any], member: str
) -> None:
    client = ecs(boto_session, endpoint.url, parameter_validation=False)
    with pytest.raises(ClientError) as caught:
        client.run_task(**kwargs)
    assert caught.value.response["Error"]["Code"] == "InvalidParameterException"
    assert member in caught.value.response["Error"]["Message"]
    assert endpoint.fake.seen == []  # the service never saw it


def test_service_crash_is_a_500_and_logged_once(
    endpoint: Endpoint, boto_session: Any, caplog: pytest.LogCaptureFixture
) -> None:
    client = ecs(boto_session, endpoint.url)
    with caplog.at_level(logging.ERROR, logger="controller.ecs_http"):
        with pytest.raises(ClientError) as caught:
            client.run_task(taskDefinition="crash")
    assert caught.value.response["Error"]["Code"] == "ServerException"
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500
    assert "a bug in the service layer" not in str(caught.value)  # no internals leak
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and not errors[0].exc_info  # one line, the traceback at DEBUG
    assert "RuntimeError: a bug in the service layer" in errors[0].getMessage()
    assert client.list_clusters()["clusterArns"]  # and the endpoint carries on


def test_response_off_the_model_is_caught(endpoint: Endpoint, boto_session: Any) -> None:
    with pytest.raises(ClientError) as caught:
        ecs(boto_session, endpoint.url).run_task(taskDefinition="badshape")
    assert caught.value.response["Error"]["Code"] == "ServerException"
    assert "tasks[0].launchType: 'SUBMARINE'" in caught.value.response["Error"]["Message"]


# ---------------------------------------------------------------- raw HTTP


async def _post(url: str, target: str | None, data: bytes, ctype: str | None = None) -> Any:
    headers = {"Content-Type": ctype or "application/x-amz-json-1.1"}
    if target is not None:
        headers["X-Amz-Target"] = target
    async with aiohttp.ClientSession() as session:
        async with session.post(url, data=data, headers=headers) as resp:
            return resp.status, resp.headers.get("Content-Type"), await resp.json(content_type=None)


async def test_unsigned_raw_post_works(endpoint: Endpoint) -> None:
    status, ctype, body = await _post(
        endpoint.url, TARGET + "ListClusters", b'{"maxResults": 1, "nextToken": null}'
    )
    assert status == 200 and ctype == "application/x-amz-json-1.1"
    assert body["clusterArns"] == [ARNS.cluster("alpha")] and body["nextToken"]
    assert endpoint.fake.seen == [("ListClusters", {"maxResults": 1})]  # null means absent
    status, _, body = await _post(endpoint.url, TARGET + "ListClusters", b"", "application/json")
    assert status == 200 and len(body["clusterArns"]) == 5


@pytest.mark.parametrize(
    ("target", "data", "ctype", "code", "words"),
    [
        ("ListClusters", b'{"maxResults": 1', None, "SerializationException", "not valid JSON"),
        ("ListClusters", b"[1, 2]", None, "SerializationException", "JSON object, not array"),
        ("ListClusters", b"\xff\xfe", None, "SerializationException", "not valid JSON"),
        ("ListClusters", b"{}", "text/plain", "SerializationException", "Content-Type"),
        ("FlyToTheMoon", b"{}", None, "UnknownOperationException", "FlyToTheMoon"),
        (None, b"{}", None, "UnknownOperationException", "(missing)"),
        ("DescribeClusters", b'{"clusters": "alpha"}', None, "InvalidParameterException",
         "clusters: expected array, got string"),
        ("ListClusters", b'{"maxResult": 5}', None, "InvalidParameterException",
         "maxResult: unknown member"),
        ("ListClusters", b'{"nextToken": "garbage!"}', None, "InvalidParameterException",
         "nextToken"),
    ],
)  # fmt: skip
async def test_bad_requests_get_ecs_exceptions(
    endpoint: Endpoint, target: str | None, data: bytes, ctype: str | None, code: str, words: str
) -> None:
    status, _, body = await _post(endpoint.url, target and TARGET + target, data, ctype)
    assert status == 400
    assert body["__type"] == code and words in body["message"]


async def test_wrong_target_prefix_is_unknown(endpoint: Endpoint) -> None:
    status, _, body = await _post(endpoint.url, "DynamoDB_20120810.ListTables", b"{}")
    assert (status, body["__type"]) == (400, "UnknownOperationException")


async def test_oversized_body_is_refused(endpoint: Endpoint) -> None:
    big = json.dumps({"clusters": ["x" * 1000] * 2000}).encode()
    status, _, body = await _post(endpoint.url, TARGET + "DescribeClusters", big)
    assert (status, body["__type"]) == (413, "ClientException")


# ---------------------------------------------------------------- health and metrics


async def test_metrics_count_requests_errors_and_latency(endpoint: Endpoint) -> None:
    await _post(endpoint.url, TARGET + "ListClusters", b"{}")
    await _post(endpoint.url, TARGET + "ListClusters", b"{}")
    await _post(endpoint.url, TARGET + "RunTask", b'{"taskDefinition": "x", "cluster": "nope"}')
    await _post(endpoint.url, TARGET + "Nope", b"{}")
    assert endpoint.metric("dockyard_ecs_requests_total", operation="ListClusters") == 2
    assert (
        endpoint.metric(
            "dockyard_ecs_errors_total", operation="RunTask", exception="ClusterNotFoundException"
        )
        == 1
    )
    assert (
        endpoint.metric(
            "dockyard_ecs_errors_total", operation="unknown", exception="UnknownOperationException"
        )
        == 1
    )
    count = endpoint.metric("dockyard_ecs_request_duration_seconds_count", operation="RunTask")
    assert count == 1
    async with aiohttp.ClientSession() as session:
        async with session.get(endpoint.url + "metrics") as resp:
            text = await resp.text()
        assert 'dockyard_ecs_requests_total{operation="ListClusters"} 2.0' in text
        async with session.get(endpoint.url + "healthz") as resp:
            assert resp.status == 200 and (await resp.json())["status"] == "ok"


# ---------------------------------------------------------------- the aws CLI


def _aws(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", "/tmp"),
        "AWS_ACCESS_KEY_ID": "AKIDDOCKYARDTEST",
        "AWS_SECRET_ACCESS_KEY": "secret",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": "/dev/null",
        "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_PAGER": "",
        "AWS_MAX_ATTEMPTS": "1",
    }
    cmd = [tool("aws"), "ecs", *args, "--endpoint-url", url, "--output", "json"]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)


def test_aws_cli_lists_clusters(endpoint: Endpoint) -> None:
    done = _aws(endpoint.url, "list-clusters")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["clusterArns"] == [
        ARNS.cluster(n) for n in endpoint.fake.clusters
    ]


def test_aws_cli_reports_ecs_errors(endpoint: Endpoint) -> None:
    done = _aws(endpoint.url, "run-task", "--cluster", "nope", "--task-definition", "web")
    assert done.returncode == 255  # awscli v1's exit code for a service error
    assert "(ClusterNotFoundException)" in done.stderr and "Cluster not found: nope" in done.stderr


# ---------------------------------------------------------------- robustness

_TARGETS = st.sampled_from(["ListClusters", "DescribeClusters", "RunTask", "ListServices"]).map(
    lambda op: TARGET + op
) | st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=20)
_BODIES = st.binary(max_size=64) | st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=6),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.sampled_from(["cluster", "clusters", "taskDefinition", "count", "maxResults", "x"]),
            inner,
            max_size=3,
        )
    ),
    max_leaves=6,
).map(lambda doc: json.dumps(doc).encode())


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(target=_TARGETS, data=_BODIES)
def test_no_request_crashes_the_endpoint(endpoint: Endpoint, target: str, data: bytes) -> None:
    host, port = endpoint.url.removeprefix("http://").rstrip("/").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        headers = {"X-Amz-Target": target, "Content-Type": "application/x-amz-json-1.1"}
        conn.request("POST", "/", body=data, headers=headers)
        resp = conn.getresponse()
        body = json.loads(resp.read())
    finally:
        conn.close()
    assert resp.status in (200, 400), body
    assert resp.status == 200 or (body["__type"] and body["message"])


def test_apps_sharing_a_registry_share_counters() -> None:
    registry = CollectorRegistry()
    first, second = (
        make_app(FakeService().chain(), registry=registry),
        make_app(FakeService().chain(), registry=registry),
    )
    assert first[METRICS_KEY] is second[METRICS_KEY]  # no "Duplicated timeseries" error
