"""A join token admits a new instance and never makes its bearer an existing one (issue 15).

The attack: a valid join token plus the id of an existing instance (ids are visible to
readonly keys, in `dockyard instances list` and in task metadata). Over TLS it used to buy
a certificate for that id; in plaintext (loopback) a Register with it was admitted. Either
way the caller fenced the real agent and got its desired state (task-role keys, secrets).
Each refusal is a `security` event naming the token id, the claimed id and the peer.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from agent import identity
from agent.enroll import AgentTls
from dockyard.sim.model import SimConfig, register_message
from dockyard.v1 import agent_pb2, agent_pb2_grpc
from tests.security_support import (
    RawAgent,
    SecureController,
    agent_argv,
    register_msg,
    running,
)
from tests.support import Proc, wait_for

CANARY = "canary-7d1f3e-not-for-the-attacker"
CANARY_TASK = {
    "family": "victim",
    "containerDefinitions": [
        {
            "name": "main",
            "image": "dockyard/sleeper",
            "memory": 64,
            "essential": True,
            "environment": [{"name": "SECRET_ISH", "value": CANARY}],
        }
    ],
}


@pytest.fixture
def tls_sc(tmp_path: Path) -> Iterator[SecureController]:
    with running(tmp_path / "controller", tls=True) as c:
        yield c


@pytest.fixture
def plain_sc(tmp_path: Path) -> Iterator[SecureController]:
    """Auth on, plaintext (loopback), and a short disconnect grace."""
    with running(tmp_path / "controller", disconnect_grace=2.0) as c:
        yield c


def _join(sc: SecureController) -> dict[str, str]:
    return sc.client().call("CreateJoinToken", {})["joinToken"]  # type: ignore[no-any-return]


def _enrolled(sc: SecureController, state_dir: Path) -> AgentTls:
    """A real agent's TLS side, enrolled with a token: its id is the one it was given."""
    join = _join(sc)
    ident = identity.load_or_create(state_dir)
    tls = AgentTls(sc.address, state_dir, ident, "default", join["token"], join["caHash"])
    asyncio.run(tls.ensure())
    return tls


def _mtls_agent(tls: AgentTls) -> RawAgent:
    return RawAgent(tls.connect_address(), tls.credentials())


def _enroll_as(sc: SecureController, instance_id: str, token: str) -> agent_pb2.EnrollReply:
    """The attack over TLS: Enroll with a valid token and someone else's instance id."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, instance_id)])
    csr = x509.CertificateSigningRequestBuilder().subject_name(name).sign(key, hashes.SHA256())
    request = agent_pb2.EnrollRequest(
        join_token=token,
        instance_id=instance_id,
        cluster="default",
        csr_pem=csr.public_bytes(serialization.Encoding.PEM),
    )
    creds = grpc.ssl_channel_credentials((sc.data_dir / "ca.crt").read_bytes())
    options = [("grpc.ssl_target_name_override", "dockyard-controller")]
    with grpc.secure_channel(sc.address, creds, options=options) as channel:
        reply: agent_pb2.EnrollReply = agent_pb2_grpc.AgentServiceStub(channel).Enroll(
            request, timeout=10
        )
        return reply


def _run_canary_task(sc: SecureController, owner: RawAgent) -> str:
    """A task on the victim whose desired state carries a value the attacker must not see."""
    client = sc.client()
    client.call("RegisterTaskDefinition", CANARY_TASK)
    run = client.call("RunTask", {"taskDefinition": "victim"})
    assert not run["failures"], run
    arn = str(run["tasks"][0]["taskArn"])
    while arn not in [t.task_arn for t in owner.next("desired").desired.tasks]:
        pass
    return arn


def _session_epoch(sc: SecureController, instance_arn: str) -> int | None:
    async def read() -> int | None:
        assert sc.ctl is not None
        session = sc.ctl.dispatcher.sessions.get(instance_arn)
        return None if session is None or session.closed else session.epoch

    return sc.on_loop(read)


def _keeps_its_stream(sc: SecureController, owner: RawAgent, registered: Any) -> None:
    """The real agent was not fenced: same session epoch, and its stream still answers."""
    assert _session_epoch(sc, registered.instance_arn) == registered.epoch
    owner.send(agent_pb2.AgentMessage(heartbeat=agent_pb2.Heartbeat(seq=7)))
    assert owner.next("heartbeat_ack").heartbeat_ack.seq == 7  # a fenced stream would end


def _connected(sc: SecureController, instance_id: str) -> bool | None:
    out = sc.client().call("DescribeContainerInstances", {"containerInstances": [instance_id]})
    found = out["containerInstances"]
    return bool(found[0]["agentConnected"]) if found else None


def _wait_disconnected(sc: SecureController, instance_id: str) -> None:
    wait_for(lambda: _connected(sc, instance_id) is False, 15, what=f"{instance_id} DISCONNECTED")


def _security_events(sc: SecureController) -> list[tuple[str, dict[str, Any]]]:
    return [
        (e.message, json.loads(e.detail_json or "{}"))
        for e in sc.client().watch_events()
        if e.kind == "security"
    ]


def _assert_refusal_recorded(sc: SecureController, token_id: str, claimed: str) -> None:
    events = [
        (m, d)
        for m, d in _security_events(sc)
        if d.get("claimedInstanceId") == claimed and d.get("code") == "IDENTITY_REFUSED"
    ]
    assert events, f"no IDENTITY_REFUSED event claims {claimed}: {_security_events(sc)}"
    message, detail = events[-1]
    assert detail["tokenId"] == token_id and detail["peer"].startswith("ipv4:127.0.0.1:")
    for part in (token_id, claimed, detail["peer"], "refused"):
        assert part in message, (part, message)


# ---------------------------------------------------------------- over TLS (Enroll)


def test_token_cannot_enroll_as_a_live_instance(tls_sc: SecureController, tmp_path: Path) -> None:
    victim = _enrolled(tls_sc, tmp_path / "victim")
    owner = _mtls_agent(victim).connect(register_msg(victim.instance_id))
    try:
        registered = owner.next("registered").registered
        _run_canary_task(tls_sc, owner)
        join = _join(tls_sc)
        with pytest.raises(grpc.RpcError) as refused:
            _enroll_as(tls_sc, victim.instance_id, join["token"])
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED  # type: ignore[attr-defined]
        assert "already exists" in refused.value.details()  # type: ignore[attr-defined]
        # without a certificate of its own, the token holder's stream is refused as before
        no_cert = RawAgent(
            tls_sc.address, grpc.ssl_channel_credentials((tls_sc.data_dir / "ca.crt").read_bytes())
        ).connect(register_msg(victim.instance_id, join["token"]))
        try:
            assert no_cert.next().refusal.code == "UNAUTHORIZED"
            assert list(no_cert.replies) == []  # the refusal is all it ever got
        finally:
            no_cert.close()
        _keeps_its_stream(tls_sc, owner, registered)
        _assert_refusal_recorded(tls_sc, join["tokenId"], victim.instance_id)
        uses = tls_sc.client().call("ListJoinTokens")["joinTokens"]
        assert [t["uses"] for t in uses if t["tokenId"] == join["tokenId"]] == [0]
    finally:
        owner.close()


def test_token_cannot_enroll_as_a_disconnected_instance(
    tls_sc: SecureController, tmp_path: Path
) -> None:
    victim = _enrolled(tls_sc, tmp_path / "victim")
    owner = _mtls_agent(victim).connect(register_msg(victim.instance_id))
    first = owner.next("registered").registered
    owner.close()
    _wait_disconnected(tls_sc, victim.instance_id)
    join = _join(tls_sc)
    with pytest.raises(grpc.RpcError) as refused:
        _enroll_as(tls_sc, victim.instance_id, join["token"])
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED  # type: ignore[attr-defined]
    _assert_refusal_recorded(tls_sc, join["tokenId"], victim.instance_id)
    # the instance's own certificate still brings it back (and renews)
    back = _mtls_agent(victim).connect(register_msg(victim.instance_id))
    try:
        again = back.next("registered").registered
        assert again.instance_arn == first.instance_arn and again.epoch > first.epoch
    finally:
        back.close()
    asyncio.run(victim.enroll())  # renewal over mutual TLS, no token
    assert victim.instance_id == first.instance_arn.rsplit("/", 1)[-1]


def test_enrollment_assigns_a_new_id_whatever_the_agent_asks_for(
    tls_sc: SecureController,
) -> None:
    join = _join(tls_sc)
    reply = _enroll_as(tls_sc, "i-chosen-by-me", join["token"])
    assert reply.instance_id.startswith("i-") and reply.instance_id != "i-chosen-by-me"
    cert = x509.load_pem_x509_certificate(reply.certificate_pem)
    assert cert.subject.rfc4514_string() == f"CN={reply.instance_id}"


def test_agent_whose_certificate_is_not_its_own_joins_as_new(
    tls_sc: SecureController, tmp_path: Path
) -> None:
    """identity.json and agent.crt that disagree (a state dir pieced together from copies)
    prove nothing: the agent enrolls again as a new instance instead of failing forever."""
    tls = _enrolled(tls_sc, tmp_path / "a")
    mine = tls.instance_id
    tls.identity.instance_id = "i-someone-else"
    asyncio.run(tls.ensure())
    assert tls.instance_id not in (mine, "i-someone-else")
    agent = _mtls_agent(tls).connect(register_msg(tls.instance_id))
    try:
        assert agent.next().WhichOneof("body") == "registered"
    finally:
        agent.close()


# ---------------------------------------------------------------- plaintext (loopback)


def _plaintext_attack(sc: SecureController, instance_id: str, token: str, secret: str) -> None:
    """Register as `instance_id` with a valid token: refused, and nothing else arrives."""
    attacker = RawAgent(sc.address).connect(register_msg(instance_id, token, secret=secret))
    try:
        first = attacker.next()
        assert first.WhichOneof("body") == "refusal", first
        assert first.refusal.code == "IDENTITY_REFUSED" and first.refusal.fatal
        assert "already exists" in first.refusal.message
        rest = list(attacker.replies)
        assert rest == [] and CANARY not in str(first)
    finally:
        attacker.close()


def test_token_cannot_register_as_a_live_instance_in_plaintext(
    plain_sc: SecureController,
) -> None:
    join = _join(plain_sc)
    owner = RawAgent(plain_sc.address).connect(register_msg("i-victim", join["token"]))
    try:
        registered = owner.next("registered").registered
        _run_canary_task(plain_sc, owner)
        attack_token = _join(plain_sc)
        for secret in ("", "0" * 64):  # no secret (an old agent) or a guessed one
            _plaintext_attack(plain_sc, "i-victim", attack_token["token"], secret)
        _keeps_its_stream(plain_sc, owner, registered)
        _assert_refusal_recorded(plain_sc, attack_token["tokenId"], "i-victim")
    finally:
        owner.close()


def test_token_cannot_register_as_a_disconnected_instance_in_plaintext(
    plain_sc: SecureController,
) -> None:
    join = _join(plain_sc)
    owner = RawAgent(plain_sc.address).connect(register_msg("i-victim", join["token"]))
    first = owner.next("registered").registered
    owner.close()
    _wait_disconnected(plain_sc, "i-victim")
    _plaintext_attack(plain_sc, "i-victim", join["token"], "f" * 64)
    _assert_refusal_recorded(plain_sc, join["tokenId"], "i-victim")
    # the agent itself, with the secret from its state dir, comes back as itself
    back = RawAgent(plain_sc.address).connect(register_msg("i-victim", join["token"]))
    try:
        again = back.next("registered").registered
        assert again.instance_arn == first.instance_arn and again.epoch > first.epoch
    finally:
        back.close()


def test_instance_from_before_secrets_cannot_be_claimed_while_connected(
    plain_sc: SecureController,
) -> None:
    """An instance that joined before the controller kept secrets binds its secret at its
    next registration; a token holder cannot do that in its place while it is connected."""
    join = _join(plain_sc)
    owner = RawAgent(plain_sc.address).connect(register_msg("i-legacy", join["token"]))
    try:
        registered = owner.next("registered").registered

        async def forget() -> None:  # as if it had joined before the upgrade
            assert plain_sc.ctl is not None and plain_sc.ctl.security.gate is not None
            del plain_sc.ctl.security.gate.secrets["i-legacy"]

        plain_sc.on_loop(forget)
        _plaintext_attack(plain_sc, "i-legacy", join["token"], "e" * 64)
        _keeps_its_stream(plain_sc, owner, registered)
    finally:
        owner.close()
    _wait_disconnected(plain_sc, "i-legacy")
    back = RawAgent(plain_sc.address).connect(register_msg("i-legacy", join["token"]))
    try:
        assert back.next("registered").registered.instance_arn == registered.instance_arn
    finally:
        back.close()
    _plaintext_attack(plain_sc, "i-legacy", join["token"], "e" * 64)  # now bound


def test_wiped_agent_joins_as_new_and_the_old_ones_service_task_is_replaced(
    plain_sc: SecureController, tmp_path: Path
) -> None:
    """State dir wiped = a lost host plus a new one: the old id is never taken back."""
    token = _join(plain_sc)["token"]
    client = plain_sc.client()
    client.call("RegisterTaskDefinition", CANARY_TASK)
    old_ident = identity.load_or_create(tmp_path / "state")
    old = RawAgent(plain_sc.address).connect(
        register_msg(old_ident.instance_id, token, secret=old_ident.secret)
    )
    old.next("registered")
    client.call(
        "CreateService", {"serviceName": "web", "taskDefinition": "victim", "desiredCount": 1}
    )
    while not [t for t in old.next("desired").desired.tasks if t.service]:
        pass
    old.close()
    shutil.rmtree(tmp_path / "state")
    new_ident = identity.load_or_create(tmp_path / "state")
    assert new_ident.instance_id != old_ident.instance_id
    new = RawAgent(plain_sc.address).connect(
        register_msg(new_ident.instance_id, token, secret=new_ident.secret)
    )
    try:
        new.next("registered")
        _wait_disconnected(plain_sc, old_ident.instance_id)
        assert _connected(plain_sc, new_ident.instance_id) is True
        # after the grace the service's task is replaced on the new instance
        while not [t for t in new.next("desired").desired.tasks if t.service]:
            pass
    finally:
        new.close()


def test_restarted_simulator_with_a_token_is_the_same_instances(
    plain_sc: SecureController,
) -> None:
    """Simulated hosts keep their ids across simulator restarts (their secret is derived
    from the token and the id), and another token still cannot take them."""
    join = _join(plain_sc)
    cfg = SimConfig(controller=plain_sc.address, join_token=join["token"])
    arns = []
    for _ in range(2):
        sim = RawAgent(plain_sc.address).connect(
            agent_pb2.AgentMessage(register=register_message(cfg, 0))
        )
        try:
            arns.append(sim.next("registered").registered.instance_arn)
        finally:
            sim.close()
    assert arns[0] == arns[1]
    other = SimConfig(controller=plain_sc.address, join_token=_join(plain_sc)["token"])
    taken = RawAgent(plain_sc.address).connect(
        agent_pb2.AgentMessage(register=register_message(other, 0))
    )
    try:
        assert taken.next().refusal.code == "IDENTITY_REFUSED"
    finally:
        taken.close()


# ---------------------------------------------------------------- a real agent


def _start_agent(
    sc: SecureController, tmp_path: Path, join: dict[str, str], n: int, tls: bool = True
) -> Proc:
    argv = agent_argv(sc, tmp_path / "agent", join, f"agent{n}", tls)
    proc = Proc(f"agent{n}", argv, tmp_path / f"agent{n}.log")
    proc.start()
    return proc


def _joined_as(sc: SecureController, tmp_path: Path, proc: Proc) -> str:
    """The id the agent registered as (from its state dir), once it is connected."""

    def connected_id() -> str | None:
        iid = json.loads((tmp_path / "agent" / "identity.json").read_text())["instance_id"]
        return str(iid) if _connected(sc, iid) else None

    return wait_for(connected_id, 30, what=f"{proc.name} connected")


@pytest.mark.docker
def test_real_agent_that_lost_its_keys_or_state_dir_joins_as_a_new_instance(
    tls_sc: SecureController, tmp_path: Path, sample_images: list[str]
) -> None:
    join = _join(tls_sc)
    state = tmp_path / "agent"
    proc = _start_agent(tls_sc, tmp_path, join, 1)
    try:
        first = _joined_as(tls_sc, tmp_path, proc)
        proc.kill()
        _wait_disconnected(tls_sc, first)
        # keys lost, identity.json restored (say from a copy): it no longer proves anything
        for path in state.iterdir():
            if path.name != "identity.json":
                path.unlink() if path.is_file() else shutil.rmtree(path)
        proc = _start_agent(tls_sc, tmp_path, join, 2)
        second = _joined_as(tls_sc, tmp_path, proc)
        assert second != first and _connected(tls_sc, first) is False
        proc.kill()
        _wait_disconnected(tls_sc, second)
        shutil.rmtree(state)  # the whole state dir wiped
        proc = _start_agent(tls_sc, tmp_path, join, 3)
        third = _joined_as(tls_sc, tmp_path, proc)
        assert third not in (first, second) and _connected(tls_sc, second) is False
    finally:
        proc.kill()


@pytest.mark.docker
def test_real_agent_on_loopback_comes_back_as_itself_and_only_it_does(
    plain_sc: SecureController, tmp_path: Path, sample_images: list[str]
) -> None:
    """Plaintext: the secret in the state dir, not the token, brings a restarted agent back."""
    join = _join(plain_sc)
    proc = _start_agent(plain_sc, tmp_path, join, 1, tls=False)
    try:
        first = _joined_as(plain_sc, tmp_path, proc)
        _plaintext_attack(plain_sc, first, join["token"], "a" * 64)
        proc.kill()
        _wait_disconnected(plain_sc, first)
        proc = _start_agent(plain_sc, tmp_path, join, 2, tls=False)
        assert _joined_as(plain_sc, tmp_path, proc) == first
    finally:
        proc.kill()
