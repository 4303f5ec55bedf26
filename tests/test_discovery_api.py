"""The Cloud Map-compatible API (issue 21) on an in-process controller (real HTTP listener
and SQLite, no agents), driven by boto3's `servicediscovery` client unchanged (it speaks
Smithy RPC v2 CBOR) and by raw JSON 1.1 (what the aws CLI sends); every answer is checked
against botocore's model (the CBOR path always checks; the JSON one is checked here)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from botocore.exceptions import ClientError

from controller.ecs_shapes import check_response
from controller.server import Controller, ControllerConfig
from dockyard.errors import ApiError
from tests.support import cloud_map

SD = "servicediscovery"


@contextlib.asynccontextmanager
async def running_controller(path: Path) -> AsyncIterator[Controller]:
    """An in-process controller (no agents), stopped however the test ends."""
    c = Controller(ControllerConfig(path, listen="127.0.0.1:0", http="127.0.0.1:0"))
    await c.start()
    try:
        yield c
    finally:
        await c.stop()


@pytest.fixture
async def ctl(tmp_path: Path) -> AsyncIterator[Controller]:
    async with running_controller(tmp_path) as c:
        yield c


class Client:
    """boto3's client, called off the event loop (it blocks)."""

    def __init__(self, ctl: Controller) -> None:
        url = f"http://127.0.0.1:{ctl.http_port}"
        self.boto = cloud_map(url, "AKIDEXAMPLE", "secret", ctl.arns.region)

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self.boto, name)

        async def call(**kw: Any) -> Any:
            out = await asyncio.to_thread(method, **kw)
            out.pop("ResponseMetadata", None)
            return out

        return call


async def error_of(call: Any) -> str:
    with pytest.raises(ClientError) as err:
        await call
    return str(err.value.response["Error"]["Code"])


async def json_call(ctl: Controller, op: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """A raw JSON 1.1 request, as `aws servicediscovery` sends it."""
    headers = {
        "X-Amz-Target": f"Route53AutoNaming_v20170314.{op}",
        "Content-Type": "application/x-amz-json-1.1",
    }
    async with aiohttp.ClientSession() as http:
        url = f"http://127.0.0.1:{ctl.http_port}/"
        async with http.post(url, data=json.dumps(body), headers=headers) as resp:
            return resp.status, await resp.json(content_type=None)


async def test_namespace_service_instance_lifecycle_with_boto3(ctl: Controller) -> None:
    sd = Client(ctl)
    op = await sd.create_private_dns_namespace(Name="apps.local", Vpc="vpc-1")
    got = await sd.get_operation(OperationId=op["OperationId"])
    assert got["Operation"]["Status"] == "SUCCESS"
    ns_id = got["Operation"]["Targets"]["NAMESPACE"]
    ns = (await sd.get_namespace(Id=ns_id))["Namespace"]
    assert ns["Name"] == "apps.local" and ns["Type"] == "DNS_PRIVATE"
    assert ns["Arn"].startswith("arn:aws:servicediscovery:")
    dns = {"DnsRecords": [{"Type": "A", "TTL": 10}, {"Type": "SRV", "TTL": 10}]}
    svc = (await sd.create_service(Name="web", NamespaceId=ns_id, DnsConfig=dns))["Service"]
    assert svc["Type"] == "DNS_HTTP" and svc["InstanceCount"] == 0
    attrs = {"AWS_INSTANCE_IPV4": "10.0.0.5", "AWS_INSTANCE_PORT": "8080", "color": "blue"}
    await sd.register_instance(ServiceId=svc["Id"], InstanceId="i-1", Attributes=attrs)
    await sd.register_instance(
        ServiceId=svc["Id"], InstanceId="i-2", Attributes={**attrs, "color": "red"}
    )
    found = await sd.discover_instances(NamespaceName="apps.local", ServiceName="web")
    assert sorted(i["InstanceId"] for i in found["Instances"]) == ["i-1", "i-2"]
    red = await sd.discover_instances(
        NamespaceName="apps.local", ServiceName="web", QueryParameters={"color": "red"}
    )
    assert [i["InstanceId"] for i in red["Instances"]] == ["i-2"]
    assert red["Instances"][0]["Attributes"]["AWS_INSTANCE_PORT"] == "8080"
    got_i = await sd.get_instance(ServiceId=svc["Id"], InstanceId="i-1")
    assert got_i["Instance"]["Attributes"] == attrs
    listed = await sd.list_instances(ServiceId=svc["Id"])
    assert len(listed["Instances"]) == 2
    assert (await sd.get_service(Id=svc["Id"]))["Service"]["InstanceCount"] == 2
    assert (await sd.list_namespaces())["Namespaces"][0]["ServiceCount"] == 1
    assert [s["Name"] for s in (await sd.list_services())["Services"]] == ["web"]
    # a namespace with services, a service with instances: in use
    assert await error_of(sd.delete_namespace(Id=ns_id)) == "ResourceInUse"
    assert await error_of(sd.delete_service(Id=svc["Id"])) == "ResourceInUse"
    await sd.deregister_instance(ServiceId=svc["Id"], InstanceId="i-1")
    await sd.deregister_instance(ServiceId=svc["Id"], InstanceId="i-2")
    assert (await sd.discover_instances(NamespaceName="apps.local", ServiceName="web"))[
        "Instances"
    ] == []
    ops = await sd.list_operations(Filters=[{"Name": "SERVICE_ID", "Values": [svc["Id"]]}])
    assert len(ops["Operations"]) == 4  # two registrations, two deregistrations
    await sd.delete_service(Id=svc["Id"])
    await sd.delete_namespace(Id=ns_id)
    assert (await sd.list_namespaces())["Namespaces"] == []


async def test_names_and_inputs_are_checked_as_cloud_map_does(ctl: Controller) -> None:
    sd = Client(ctl)
    assert await error_of(sd.create_private_dns_namespace(Name="bad_-.", Vpc="v")) == (
        "InvalidInput"
    )
    assert await error_of(sd.create_private_dns_namespace(Name="-x.local", Vpc="v")) == (
        "InvalidInput"
    )
    await sd.create_http_namespace(Name="plain")
    assert await error_of(sd.create_http_namespace(Name="plain")) == "NamespaceAlreadyExists"
    ns_id = (await sd.list_namespaces())["Namespaces"][0]["Id"]
    assert await error_of(sd.create_service(Name="-bad", NamespaceId=ns_id)) == "InvalidInput"
    dns = {"DnsRecords": [{"Type": "A", "TTL": 10}]}
    # DNS records in an HTTP namespace, and record types Dockyard does not serve
    assert await error_of(sd.create_service(Name="a", NamespaceId=ns_id, DnsConfig=dns)) == (
        "InvalidInput"
    )
    await sd.create_private_dns_namespace(Name="dns.local", Vpc="v")
    listed = await sd.list_namespaces(Filters=[{"Name": "TYPE", "Values": ["DNS_PRIVATE"]}])
    dns_ns = listed["Namespaces"][0]["Id"]
    aaaa = {"DnsRecords": [{"Type": "AAAA", "TTL": 10}]}
    assert await error_of(sd.create_service(Name="a", NamespaceId=dns_ns, DnsConfig=aaaa)) == (
        "InvalidInput"
    )
    svc = (await sd.create_service(Name="a", NamespaceId=dns_ns, DnsConfig=dns))["Service"]
    assert await error_of(sd.create_service(Name="a", NamespaceId=dns_ns, DnsConfig=dns)) == (
        "ServiceAlreadyExists"
    )
    # an A record needs an IPv4 address
    no_ip = sd.register_instance(ServiceId=svc["Id"], InstanceId="x", Attributes={"k": "v"})
    assert await error_of(no_ip) == "InvalidInput"
    assert await error_of(sd.get_namespace(Id="ns-nothere")) == "NamespaceNotFound"
    assert await error_of(sd.get_service(Id="srv-nothere")) == "ServiceNotFound"
    missing = sd.get_instance(ServiceId=svc["Id"], InstanceId="nope")
    assert await error_of(missing) == "InstanceNotFound"
    assert await error_of(sd.get_operation(OperationId="nope")) == "OperationNotFound"
    unknown = sd.discover_instances(NamespaceName="dns.local", ServiceName="zzz")
    assert await error_of(unknown) == "ServiceNotFound"
    # no custom health check: its health cannot be set
    await sd.register_instance(
        ServiceId=svc["Id"], InstanceId="x", Attributes={"AWS_INSTANCE_IPV4": "10.1.1.1"}
    )
    update = sd.update_instance_custom_health_status(
        ServiceId=svc["Id"], InstanceId="x", Status="UNHEALTHY"
    )
    assert await error_of(update) == "CustomHealthNotFound"


async def test_custom_health_and_tags(ctl: Controller) -> None:
    sd = Client(ctl)
    await sd.create_http_namespace(Name="h", Tags=[{"Key": "team", "Value": "a"}])
    ns = (await sd.list_namespaces())["Namespaces"][0]
    assert (await sd.list_tags_for_resource(ResourceARN=ns["Arn"]))["Tags"] == [
        {"Key": "team", "Value": "a"}
    ]
    svc = (
        await sd.create_service(
            Name="api", NamespaceId=ns["Id"], HealthCheckCustomConfig={"FailureThreshold": 1}
        )
    )["Service"]
    await sd.tag_resource(ResourceARN=svc["Arn"], Tags=[{"Key": "k", "Value": "v"}])
    await sd.untag_resource(ResourceARN=ns["Arn"], TagKeys=["team"])
    assert (await sd.list_tags_for_resource(ResourceARN=ns["Arn"]))["Tags"] == []
    assert (await sd.list_tags_for_resource(ResourceARN=svc["Arn"]))["Tags"][0]["Key"] == "k"
    for iid in ("a", "b"):
        await sd.register_instance(ServiceId=svc["Id"], InstanceId=iid, Attributes={"x": iid})
    await sd.update_instance_custom_health_status(
        ServiceId=svc["Id"], InstanceId="a", Status="UNHEALTHY"
    )
    status = await sd.get_instances_health_status(ServiceId=svc["Id"])
    assert status["Status"] == {"a": "UNHEALTHY", "b": "HEALTHY"}
    healthy = await sd.discover_instances(NamespaceName="h", ServiceName="api")
    assert [i["InstanceId"] for i in healthy["Instances"]] == ["b"]
    everyone = await sd.discover_instances(NamespaceName="h", ServiceName="api", HealthStatus="ALL")
    assert len(everyone["Instances"]) == 2
    await sd.update_service(Id=svc["Id"], Service={"Description": "the API"})
    assert (await sd.get_service(Id=svc["Id"]))["Service"]["Description"] == "the API"


async def test_json_protocol_answers_match_the_model_and_state_survives_restart(
    tmp_path: Path,
) -> None:
    ctl = Controller(ControllerConfig(tmp_path, listen="127.0.0.1:0", http="127.0.0.1:0"))
    await ctl.start()
    try:
        status, body = await json_call(ctl, "CreateHttpNamespace", {"Name": "j"})
        assert status == 200
        check_response("CreateHttpNamespace", body, SD)
        status, body = await json_call(ctl, "ListNamespaces", {})
        assert status == 200
        check_response("ListNamespaces", body, SD)
        ns_id = body["Namespaces"][0]["Id"]
        status, body = await json_call(ctl, "CreateService", {"Name": "s", "NamespaceId": ns_id})
        check_response("CreateService", body, SD)
        status, body = await json_call(ctl, "GetNamespace", {"Id": 5})
        assert status == 400 and body["__type"] == "InvalidInput"
        status, body = await json_call(ctl, "CreatePublicDnsNamespace", {"Name": "x.com"})
        assert status == 400 and "not supported" in body["message"]
    finally:
        await ctl.stop()
    again = Controller(ControllerConfig(tmp_path, listen="127.0.0.1:0", http="127.0.0.1:0"))
    await again.start()
    try:
        listed = await Client(again).list_services()
        assert [s["Name"] for s in listed["Services"]] == ["s"]
    finally:
        await again.stop()


async def test_ecs_service_registries_are_checked_and_listed_by_namespace(ctl: Controller) -> None:
    sd = Client(ctl)
    await ctl.api.call("CreateCluster", {})
    td = {
        "family": "reg",
        "containerDefinitions": [
            {
                "name": "main",
                "image": "dockyard/sleeper:latest",
                "memory": 32,
                "portMappings": [{"containerPort": 80}],
            }
        ],
    }
    await ctl.api.call("RegisterTaskDefinition", td)
    await sd.create_private_dns_namespace(Name="reg.local", Vpc="v")
    ns = (await sd.list_namespaces())["Namespaces"][0]
    dns = {"DnsRecords": [{"Type": "SRV", "TTL": 10}]}
    reg = (await sd.create_service(Name="r", NamespaceId=ns["Id"], DnsConfig=dns))["Service"]
    base = {"serviceName": "web", "taskDefinition": "reg", "desiredCount": 0}
    refused = {
        "arn:aws:servicediscovery:us-east-1:000000000000:service/srv-nope": "no Cloud Map service",
        reg["Arn"]: "containerName and containerPort",
    }
    for arn, words in refused.items():
        with pytest.raises(ApiError, match=words):
            await ctl.api.call(
                "CreateService", {**base, "serviceRegistries": [{"registryArn": arn}]}
            )
    wrong_port = {"registryArn": reg["Arn"], "containerName": "main", "containerPort": 81}
    with pytest.raises(ApiError, match="maps no containerPort 81"):
        await ctl.api.call("CreateService", {**base, "serviceRegistries": [wrong_port]})
    good = {"registryArn": reg["Arn"], "containerName": "main", "containerPort": 80}
    out = await ctl.api.call("CreateService", {**base, "serviceRegistries": [good]})
    check_response("CreateService", out)
    assert out["service"]["serviceRegistries"] == [good]
    listed = await ctl.api.call("ListServicesByNamespace", {"namespace": ns["Arn"]})
    check_response("ListServicesByNamespace", listed)
    assert listed["serviceArns"] == [out["service"]["serviceArn"]]
    with pytest.raises(ApiError) as err:
        await ctl.api.call("ListServicesByNamespace", {"namespace": "nope"})
    assert err.value.name == "NamespaceNotFoundException"


async def test_malformed_cbor_and_unknown_paths_get_clear_errors(ctl: Controller) -> None:
    from controller.cbor_wire import decode

    base = f"http://127.0.0.1:{ctl.http_port}/service/"
    async with aiohttp.ClientSession() as http:
        for path, body in [
            ("Route53AutoNaming_v20170314/operation/ListNamespaces", b"\xff\x00garbage"),
            ("Route53AutoNaming_v20170314/operation/NoSuchOp", b""),
            ("Elsewhere_v1/operation/ListNamespaces", b""),
        ]:
            async with http.post(base + path, data=body) as resp:
                assert 400 <= resp.status < 500, path
                error = decode(await resp.read())
                assert error["__type"] in ("SerializationException", "UnknownOperationException")
                assert error["message"]
