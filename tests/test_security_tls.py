"""TLS off loopback: enrollment with a token and a CSR, mutual TLS for the agent stream,
CA pinning, expiry, renewal, identity binding and revocation - each refusal shown."""

from __future__ import annotations

import asyncio
import datetime
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from agent import identity
from agent.enroll import AgentTls, fetch_ca
from controller.security.pki import key_pem
from tests.security_support import (
    RawAgent,
    SecureController,
    agent_argv,
    register_msg,
    running,
)
from tests.support import Proc, wait_for


@pytest.fixture
def sc(tmp_path: Path) -> Iterator[SecureController]:
    with running(tmp_path / "controller", tls=True) as c:
        yield c


def _agent_address(sc: SecureController) -> str:
    assert sc.ctl is not None
    return f"127.0.0.1:{sc.ctl.security.agent_port}"


def _join(sc: SecureController) -> dict[str, str]:
    return sc.client().call("CreateJoinToken", {})["joinToken"]  # type: ignore[no-any-return]


def _tls(sc: SecureController, tmp: Path, name: str, token: str = "") -> AgentTls:
    """An agent's TLS side with its own state dir (`name`); its id comes from enrollment."""
    join = _join(sc)
    ident = identity.load_or_create(tmp / name)
    return AgentTls(
        sc.address, tmp / name, ident, "default", token or join["token"], join["caHash"]
    )


def _cert_for(
    sc: SecureController, iid: str, lifetime: float, age: float = 0
) -> tuple[bytes, bytes]:
    """(key, cert) PEM for `iid` issued by the controller's CA, `age` seconds ago."""
    assert sc.ctl is not None and sc.ctl.security.ca is not None
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, iid)])
    csr = x509.CertificateSigningRequestBuilder().subject_name(name).sign(key, hashes.SHA256())
    start = datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=age)
    cert = sc.ctl.security.ca.sign_csr(
        csr.public_bytes(serialization.Encoding.PEM),
        iid,
        datetime.timedelta(seconds=lifetime),
        not_before=start,
    )
    return key_pem(key), cert.public_bytes(serialization.Encoding.PEM)


def _mutual(sc: SecureController, key: bytes, cert: bytes) -> grpc.ChannelCredentials:
    return grpc.ssl_channel_credentials((sc.data_dir / "ca.crt").read_bytes(), key, cert)


def test_token_prints_the_ca_hash_and_enrollment_gives_a_private_key(
    sc: SecureController, tmp_path: Path
) -> None:
    tls = _tls(sc, tmp_path, "enrolled")
    made_locally = tls.instance_id
    asyncio.run(tls.ensure())
    assert (tls.key_path.stat().st_mode & 0o777) == 0o600
    cert = x509.load_pem_x509_certificate(tls.cert_path.read_bytes())
    iid = tls.instance_id  # assigned by the controller, kept in the state dir
    assert iid != made_locally and iid.startswith("i-")
    assert cert.subject.rfc4514_string() == f"CN={iid}"
    assert identity.load_or_create(tmp_path / "enrolled").instance_id == iid
    agent = RawAgent(tls.connect_address(), tls.credentials()).connect(register_msg(iid))
    try:
        assert agent.next().WhichOneof("body") == "registered"  # no token: the cert is the id
    finally:
        agent.close()


def test_wrong_ca_hash_is_refused_before_the_token_is_sent(sc: SecureController) -> None:
    with pytest.raises(SystemExit, match="does not match --ca-hash"):
        fetch_ca(sc.address, "sha256:" + "0" * 64)


def test_enroll_without_or_with_revoked_token_is_refused(
    sc: SecureController, tmp_path: Path
) -> None:
    with pytest.raises(Exception, match="join token refused: unknown join token"):
        asyncio.run(_tls(sc, tmp_path, "i-x", token="DYJ1.000000000000." + "0" * 40).ensure())
    join = _join(sc)
    sc.client().call("RevokeJoinToken", {"tokenId": join["tokenId"]})
    with pytest.raises(Exception, match="is revoked"):
        asyncio.run(_tls(sc, tmp_path, "i-y", token=join["token"]).ensure())


def test_stream_without_client_certificate_is_refused(sc: SecureController) -> None:
    server_only = grpc.ssl_channel_credentials((sc.data_dir / "ca.crt").read_bytes())
    token = _join(sc)["token"]
    agent = RawAgent(sc.address, server_only).connect(register_msg("i-nocert", token))
    try:
        refusal = agent.next().refusal
        assert refusal.code == "UNAUTHORIZED" and "client certificate" in refusal.message
    finally:
        agent.close()
    with pytest.raises(grpc.RpcError):  # the agent port wants a certificate at the TLS layer
        RawAgent(_agent_address(sc), server_only).connect(register_msg("i-nocert")).next()


def test_certificate_of_another_instance_is_refused(sc: SecureController) -> None:
    key, cert = _cert_for(sc, "i-victim", 3600)
    creds = _mutual(sc, key, cert)
    agent = RawAgent(_agent_address(sc), creds).connect(register_msg("i-impostor"))
    try:
        refusal = agent.next().refusal
        assert refusal.code == "UNAUTHORIZED" and "i-victim" in refusal.message
    finally:
        agent.close()


def test_expired_certificate_is_refused(sc: SecureController) -> None:
    key, cert = _cert_for(sc, "i-old", lifetime=60, age=3600)
    agent = RawAgent(_agent_address(sc), _mutual(sc, key, cert)).connect(register_msg("i-old"))
    with pytest.raises(grpc.RpcError) as err:
        agent.next()
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]
    agent.close()


def test_certificate_renews_over_mutual_tls_without_the_token(
    sc: SecureController, tmp_path: Path
) -> None:
    join = _join(sc)
    tls = _tls(sc, tmp_path, "renew", token=join["token"])
    asyncio.run(tls.ensure())
    first = x509.load_pem_x509_certificate(tls.cert_path.read_bytes())
    later = first.not_valid_after_utc - datetime.timedelta(hours=1)
    assert not tls.renewal_due() and tls.renewal_due(later)
    sc.client().call("RevokeJoinToken", {"tokenId": join["tokenId"]})  # renewal needs no token
    asyncio.run(tls.enroll())
    second = x509.load_pem_x509_certificate(tls.cert_path.read_bytes())
    assert second.serial_number != first.serial_number


def test_revoked_instance_cannot_enroll_or_connect(sc: SecureController, tmp_path: Path) -> None:
    tls = _tls(sc, tmp_path, "gone")
    asyncio.run(tls.ensure())
    iid = tls.instance_id
    agent = RawAgent(tls.connect_address(), tls.credentials()).connect(register_msg(iid))
    try:
        assert agent.next().WhichOneof("body") == "registered"
        sc.client().call("RevokeInstance", {"containerInstance": iid})
        assert agent.next("refusal").refusal.code == "INSTANCE_REVOKED"
    finally:
        agent.close()
    with pytest.raises(Exception, match="revoked"):
        asyncio.run(tls.enroll())
    again = RawAgent(tls.connect_address(), tls.credentials()).connect(register_msg(iid))
    try:
        assert again.next().refusal.code == "INSTANCE_REVOKED"
    finally:
        again.close()


@pytest.mark.docker
def test_real_agent_joins_over_mutual_tls(
    sc: SecureController, tmp_path: Path, sample_images: list[str]
) -> None:
    argv = agent_argv(sc, tmp_path / "agent", _join(sc), "mtls")
    proc = Proc("agent", argv, tmp_path / "agent.log")
    proc.start()
    try:
        wait_for(
            lambda: sc.client().call("ListContainerInstances")["containerInstanceArns"],
            30,
            what="the mTLS agent registered",
        )
        assert (tmp_path / "agent" / "agent.key").stat().st_mode & 0o777 == 0o600
    finally:
        proc.kill()


# docker: the agent claims its Docker engine (docker info, then one agent per engine) before
# it enrolls; outside the Docker lock it met the agent of a run going on beside it
@pytest.mark.docker
def test_real_agent_with_wrong_ca_hash_exits_with_advice(
    sc: SecureController, tmp_path: Path
) -> None:
    argv = [sys.executable, "-m", "dockyard.cli.main", "agent", "--controller", sc.address]
    argv += ["--state-dir", str(tmp_path / "agent"), "--tls", "always"]
    argv += ["--join-token", _join(sc)["token"], "--ca-hash", "sha256:" + "1" * 64]
    argv += ["--credentials-listen", "127.0.0.1:0"]
    proc = Proc("agent", argv, tmp_path / "agent.log")
    proc.start()
    try:
        assert proc.popen is not None
        proc.popen.wait(timeout=30)
        log = (tmp_path / "agent.log").read_text()
        assert "does not match --ca-hash" in log, log  # the whole line, not pytest's cut
    finally:
        proc.kill()


def test_a_test_not_marked_docker_cannot_start_a_real_agent(tmp_path: Path) -> None:
    """Run unlocked beside a Docker run, such a test's agent took the engine from the other
    run's agent (one agent per engine), or lost it: refused before anything starts."""
    argv = [sys.executable, "-m", "dockyard.cli.main", "agent", "--controller", "127.0.0.1:9"]
    proc = Proc("agent", argv, tmp_path / "agent.log")
    try:
        with pytest.raises(AssertionError, match=r"mark it @pytest\.mark\.docker"):
            proc.start()
        assert proc.popen is None
    finally:
        proc.kill()  # had it started


def test_connected_agent_renews_before_expiry(sc: SecureController, tmp_path: Path) -> None:
    assert sc.ctl is not None and sc.ctl.security.gate is not None
    tls_settings = sc.ctl.security.gate.tls
    assert tls_settings is not None
    tls_settings.lifetime = datetime.timedelta(seconds=6)  # renewal due after ~4 s
    tls = _tls(sc, tmp_path, "short")

    async def run() -> tuple[int, int]:
        channel = await tls.channel([])
        try:
            first = x509.load_pem_x509_certificate(tls.cert_path.read_bytes()).serial_number
            for _ in range(200):  # up to 20 s, checked every 0.1 s
                now = x509.load_pem_x509_certificate(tls.cert_path.read_bytes()).serial_number
                if now != first:
                    return first, now
                await asyncio.sleep(0.1)
            return first, first
        finally:
            await channel.close()
            assert tls._renewer is not None
            tls._renewer.cancel()

    first, renewed = asyncio.run(run())
    assert renewed != first, "the certificate was not renewed before it expired"
