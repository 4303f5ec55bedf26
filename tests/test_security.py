"""Security refusals, each shown: join tokens, API signatures, roles, agent authorisation."""

from __future__ import annotations

import json
import stat
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from dockyard import auth
from dockyard.cli.main import main
from dockyard.client import Client
from dockyard.errors import ApiError
from dockyard.v1 import agent_pb2
from tests.security_support import RawAgent, SecureController, register_msg
from tests.support import Proc, wait_for

SLEEPER = {
    "family": "sleepy",
    "containerDefinitions": [
        {"name": "main", "image": "dockyard/sleeper", "memory": 64, "essential": True}
    ],
}


@pytest.fixture
def sc(tmp_path: Path) -> Iterator[SecureController]:
    c = SecureController(tmp_path / "controller")
    try:
        c.start()
        yield c
    finally:
        c.stop()


def _token(sc: SecureController) -> str:
    return str(sc.client().call("CreateJoinToken", {"description": "test"})["joinToken"]["token"])


def _refusal(sc: SecureController, msg: agent_pb2.AgentMessage) -> agent_pb2.Refusal:
    agent = RawAgent(sc.address).connect(msg)
    try:
        reply = agent.next()
        assert reply.WhichOneof("body") == "refusal", reply
        return reply.refusal
    finally:
        agent.close()


def _security_events(sc: SecureController) -> list[str]:
    return [e.message for e in sc.client().watch_events() if e.kind == "security"]


# ---------------------------------------------------------------- join tokens


def test_admin_credentials_are_private(sc: SecureController) -> None:
    path = sc.data_dir / "admin-credentials"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sc.client().call("ListAccessKeys")["accessKeys"][0]["role"] == "admin"


def test_agent_without_token_is_refused_with_an_event(sc: SecureController) -> None:
    refusal = _refusal(sc, register_msg("i-notoken"))
    assert refusal.fatal and refusal.code == "JOIN_TOKEN_REFUSED"
    assert "no join token presented" in refusal.message
    assert "dockyard tokens create" in refusal.message
    assert any("i-notoken" in m and "refused" in m for m in _security_events(sc))
    assert sc.client().call("ListContainerInstances")["containerInstanceArns"] == []


def test_wrong_and_malformed_tokens_are_refused(sc: SecureController) -> None:
    real = _token(sc)
    tid = real.split(".")[1]
    wrong = f"DYJ1.{tid}.{'0' * 40}"
    assert "unknown join token" in _refusal(sc, register_msg("i-wrong", wrong)).message
    assert "malformed" in _refusal(sc, register_msg("i-bad", "hunter2")).message


def test_revoked_and_expired_tokens_are_refused(sc: SecureController) -> None:
    token = _token(sc)
    tid = token.split(".")[1]
    sc.client().call("RevokeJoinToken", {"tokenId": tid})
    assert f"join token {tid} is revoked" in _refusal(sc, register_msg("i-rev", token)).message
    listed = sc.client().call("ListJoinTokens")["joinTokens"]
    assert [t["status"] for t in listed] == ["REVOKED"]
    assert "secret" not in json.dumps(listed) and token not in json.dumps(listed)


def test_valid_token_joins_and_counts_a_use(sc: SecureController) -> None:
    agent = RawAgent(sc.address).connect(register_msg("i-good", _token(sc)))
    try:
        assert agent.next().WhichOneof("body") == "registered"
    finally:
        agent.close()
    assert sc.client().call("ListJoinTokens")["joinTokens"][0]["uses"] == 1


@pytest.mark.docker
def test_real_agent_logs_an_actionable_refusal(
    sc: SecureController,
    tmp_path: Path,
    sample_images: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    argv = [sys.executable, "-m", "dockyard.cli.main", "agent", "--controller", sc.address]
    argv += ["--state-dir", str(tmp_path / "agent"), "--hostname", "tokenless"]
    proc = Proc("agent", argv, tmp_path / "agent.log")
    monkeypatch.delenv("DOCKYARD_JOIN_TOKEN", raising=False)
    proc.start()
    try:
        wait_for(
            lambda: "join token refused" in (tmp_path / "agent.log").read_text(),
            20,
            what="the agent's refusal line",
        )
        assert "dockyard tokens create" in (tmp_path / "agent.log").read_text()
    finally:
        proc.kill()


# ---------------------------------------------------------------- revocation


def test_revoked_instance_is_cut_off_and_cannot_return(sc: SecureController) -> None:
    token = _token(sc)
    agent = RawAgent(sc.address).connect(register_msg("i-cut", token))
    try:
        assert agent.next().WhichOneof("body") == "registered"
        out = sc.client().call("RevokeInstance", {"containerInstance": "i-cut"})
        assert out["streamClosed"] is True
        refusal = agent.next("refusal").refusal
        assert refusal.code == "INSTANCE_REVOKED" and refusal.fatal
    finally:
        agent.close()
    again = _refusal(sc, register_msg("i-cut", token))
    assert again.code == "INSTANCE_REVOKED"


def test_deregistered_instance_is_cut_off_at_once(sc: SecureController) -> None:
    agent = RawAgent(sc.address).connect(register_msg("i-dereg", _token(sc)))
    try:
        assert agent.next().WhichOneof("body") == "registered"
        sc.client().call("DeregisterContainerInstance", {"containerInstance": "i-dereg"})
        assert agent.next("refusal").refusal.code == "INSTANCE_REVOKED"
    finally:
        agent.close()


# ---------------------------------------------------------------- agent authorisation


def test_agent_cannot_report_or_see_another_instances_task(sc: SecureController) -> None:
    token = _token(sc)
    a = RawAgent(sc.address).connect(register_msg("i-aaa", token))
    b = RawAgent(sc.address).connect(register_msg("i-bbb", token))
    try:
        a.next("registered"), b.next("registered")
        client = sc.client()
        client.call("RegisterTaskDefinition", SLEEPER)
        run = client.call("RunTask", {"taskDefinition": "sleepy"})
        assert not run["failures"], run
        task = run["tasks"][0]
        owner, other = (a, b) if task["containerInstanceArn"].endswith("i-aaa") else (b, a)
        forged = agent_pb2.TaskStatus(task_arn=task["taskArn"], last_status="STOPPED")
        other.send(agent_pb2.AgentMessage(status=agent_pb2.StatusBatch(tasks=[forged])))
        refusal = other.next("refusal").refusal
        assert refusal.code == "NOT_ASSIGNED" and not refusal.fatal
        described = client.call("DescribeTasks", {"tasks": [task["taskArn"]]})["tasks"][0]
        assert described["lastStatus"] != "STOPPED"
        # desired state (and so task credentials) goes only to the owner
        other.send(agent_pb2.AgentMessage(resync=agent_pb2.ResyncRequest()))
        full = other.next("desired").desired  # the answer to the resync
        assert full.full and task["taskArn"] not in [t.task_arn for t in full.tasks]
        while task["taskArn"] not in [t.task_arn for t in owner.next("desired").desired.tasks]:
            pass
    finally:
        a.close(), b.close()
    sc.validate()


# ---------------------------------------------------------------- API keys


def test_native_api_refuses_unsigned_wrong_and_unknown(sc: SecureController) -> None:
    admin = sc.admin()
    cases = {
        "AccessDeniedException": Client(sc.address, sign=False),
        "InvalidSignatureException": Client(
            sc.address, credentials=auth.Credentials(admin.access_key_id, "not-the-secret")
        ),
        "UnrecognizedClientException": Client(
            sc.address, credentials=auth.Credentials("DYAKAAAAAAAAAAAAAAAA", "x")
        ),
    }
    for name, client in cases.items():
        with pytest.raises(ApiError) as err:
            client.call("ListClusters")
        assert err.value.name == name
        with pytest.raises(ApiError) as err:
            list(client.watch_events())
        assert err.value.name == name


def test_readonly_key_reads_but_cannot_write(sc: SecureController) -> None:
    key = sc.client().call("CreateAccessKey", {"role": "readonly"})["accessKey"]
    ro = auth.Credentials(key["accessKeyId"], key["secretAccessKey"])
    assert "default" in json.dumps(Client(sc.address, credentials=ro).call("ListClusters"))
    for op, body in (("CreateCluster", {"clusterName": "x"}), ("CreateJoinToken", {})):
        with pytest.raises(ApiError) as err:
            Client(sc.address, credentials=ro).call(op, body)
        assert err.value.name == "AccessDeniedException"
    with pytest.raises(ApiError):
        Client(sc.address, credentials=ro).call("ListAccessKeys")  # security lists: admin only
    resp = sc.ecs("CreateCluster", {"clusterName": "y"}, creds=ro)
    assert resp.status_code == 403 and resp.json()["__type"] == "AccessDeniedException"
    assert sc.ecs("ListClusters", {}, creds=ro).status_code == 200
    names = sc.client().call("ListClusters")["clusterArns"]
    assert not any(n.endswith(("/x", "/y")) for n in names)


def test_ecs_endpoint_refuses_unsigned_and_wrongly_signed(sc: SecureController) -> None:
    unsigned = sc.ecs("ListClusters", {}, sign=False)
    assert unsigned.status_code == 403
    assert unsigned.json()["__type"] == "AccessDeniedException"
    bad = auth.Credentials(sc.admin().access_key_id, "wrong")
    wrong = sc.ecs("ListClusters", {}, creds=bad)
    assert wrong.status_code == 403 and wrong.json()["__type"] == "InvalidSignatureException"
    unknown = sc.ecs("ListClusters", {}, creds=auth.Credentials("DYAKBBBBBBBBBBBBBBBB", "x"))
    assert unknown.json()["__type"] == "UnrecognizedClientException"
    assert sc.ecs("ListClusters", {}).status_code == 200


def test_last_admin_key_cannot_be_deleted(sc: SecureController) -> None:
    admin = sc.admin().access_key_id
    with pytest.raises(ApiError, match="last admin key"):
        sc.client().call("DeleteAccessKey", {"accessKeyId": admin})


def test_cli_tokens_and_keys(
    sc: SecureController, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    admin = sc.admin()
    monkeypatch.setenv(auth.ACCESS_KEY_ENV, admin.access_key_id)
    monkeypatch.setenv(auth.SECRET_KEY_ENV, admin.secret_access_key)
    assert main(["tokens", "create", "--controller", sc.address]) == 0
    printed = capsys.readouterr().out
    assert f"dockyard agent --controller {sc.address} --join-token DYJ1." in printed
    assert main(["keys", "create", "--role", "readonly", "--controller", sc.address]) == 0
    assert "DOCKYARD_SECRET_ACCESS_KEY=" in capsys.readouterr().out
    assert main(["keys", "list", "--controller", sc.address]) == 0
    assert "readonly" in capsys.readouterr().out
    monkeypatch.setenv(auth.SECRET_KEY_ENV, "wrong")
    assert main(["tokens", "list", "--controller", sc.address]) == 1
    assert "InvalidSignatureException" in capsys.readouterr().err


# ---------------------------------------------------------------- limits


def test_both_apis_enforce_ecs_limits(sc: SecureController) -> None:
    """The CLI's API refuses what the ECS endpoint refuses, naming the field."""
    client = sc.client()
    arn = client.call("DescribeClusters", {"clusters": ["default"]})["clusters"][0]["clusterArn"]
    many_tags = [{"key": f"k{i}", "value": ""} for i in range(51)]
    native = [
        ("RunTask", {"taskDefinition": "x", "count": 11}, "count"),
        ("PutAttributes", {"attributes": [{"name": f"a{i}"} for i in range(11)]}, "attributes"),
        ("PutAttributes", {"attributes": [{"name": "n" * 129}]}, "attributes[0].name"),
        ("CreateCluster", {"clusterName": "bad name!"}, "clusterName"),
    ]
    native += [
        ("TagResource", {"resourceArn": arn, "tags": [{"key": "k" * 129}]}, "tags[0].key"),
        ("TagResource", {"resourceArn": arn, "tags": [{"key": "k", "value": "v" * 257}]}, "value"),
        ("TagResource", {"resourceArn": arn, "tags": many_tags}, "tags"),
    ]
    for op, body, field in native:
        with pytest.raises(ApiError) as err:
            client.call(op, body)
        assert err.value.name in ("InvalidParameterException", "ClientException"), (op, err.value)
        assert field in err.value.message, (op, err.value.message)
    for op, body, field in native:
        resp = sc.ecs(op, body)
        assert resp.status_code == 400 and field in resp.json()["message"], (op, resp.text)
    assert "tags" not in sc.ecs("ListTagsForResource", {"resourceArn": arn}).json()
