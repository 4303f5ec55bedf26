"""The ECS API over HTTPS off loopback, `dockyard env` in a real shell, and CLI errors that
say what is wrong - each against a real `dockyard controller` process, with the real aws
CLI and boto3 from this interpreter's environment."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
import requests
from cryptography import x509

from dockyard import auth, endpoints
from dockyard.shellenv import Target, exports
from tests.support import BOTO_DEFAULT_RETRIES, Proc, aws_client, free_port, wait_for

BIN = Path(sys.executable).parent
BOTO_SCRIPT = "import boto3; print(len(boto3.client('ecs').list_clusters()['clusterArns']))"


def _tool(name: str) -> str:
    found = BIN / name if (BIN / name).exists() else shutil.which(name)
    assert found, f"{name} is not installed next to {sys.executable} nor on PATH"
    return str(found)


def off_loopback_address() -> str:
    """An address of this machine that is not loopback (the one its default route uses)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # no packet is sent: this only picks a source
            address = str(s.getsockname()[0])
        except OSError:
            address = ""
    if not address or address.startswith("127."):
        pytest.skip("this machine has no non-loopback IPv4 address")
    return address


def clean_env(home: Path) -> dict[str, str]:
    """The environment of a new user's shell: nothing of Dockyard's or AWS's, an empty home,
    and stale AWS settings that `dockyard env` must override."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DOCKYARD_", "AWS_")) and k != "DOCKER_HOST"
    }
    env.update(HOME=str(home), PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}")
    env.update(AWS_PROFILE="nowhere", AWS_SESSION_TOKEN="stale", AWS_CONFIG_FILE=str(home / "c"))
    env.update(AWS_IGNORE_CONFIGURED_ENDPOINT_URLS="true")
    return env


@dataclass
class RealController:
    data_dir: Path
    grpc: str
    http: str
    proc: Proc

    @property
    def ca(self) -> Path:
        return self.data_dir / "ca.crt"

    def admin(self) -> auth.Credentials:
        creds = auth.load_credentials(env={}, path=self.data_dir / "admin-credentials")
        assert creds is not None
        return creds


def start_controller(root: Path, host: str, *extra: str) -> Iterator[RealController]:
    """`dockyard controller` as an operator starts it (--auth on --tls auto by default)."""
    grpc_addr, http_addr = f"{host}:{free_port(host)}", f"{host}:{free_port(host)}"
    data = root / "controller"
    argv = [sys.executable, "-m", "dockyard.cli.main", "controller", "--data-dir", str(data)]
    argv += ["--listen", grpc_addr, "--http", http_addr, *extra]
    root.mkdir(parents=True, exist_ok=True)
    proc = Proc("controller", argv, root / "controller.log")
    proc.start()
    try:
        try:
            wait_for(lambda: endpoints.read(data), 20, what="the controller's endpoints.json")
        except AssertionError as err:
            log = (root / "controller.log").read_text(errors="replace")[-3000:]
            raise AssertionError(f"{err}\ncontroller.log:\n{log}") from None
        yield RealController(data, grpc_addr, http_addr, proc)
    finally:
        proc.kill()


@pytest.fixture
def tls_ctl(tmp_path: Path) -> Iterator[RealController]:
    host = off_loopback_address()
    yield from start_controller(tmp_path, host, "--advertise-address", host)


@pytest.fixture
def plain_ctl(tmp_path: Path) -> Iterator[RealController]:
    yield from start_controller(tmp_path, "127.0.0.1")


def _boto(ctl: RealController, verify: str | bool) -> object:
    return aws_client(
        "ecs", f"https://{ctl.http}", ctl.admin(), verify=verify, retries=BOTO_DEFAULT_RETRIES
    )


# ---------------------------------------------------------------- A: HTTPS off loopback


def test_ecs_api_off_loopback_is_https_from_the_cluster_ca_and_refuses_plain_http(
    tls_ctl: RealController, tmp_path: Path
) -> None:
    ctl = tls_ctl
    host = ctl.http.rpartition(":")[0]
    # the certificate is the cluster CA's, for the listen address
    pem = ssl.get_server_certificate((host, int(ctl.http.rpartition(":")[2])))
    cert = x509.load_pem_x509_certificate(pem.encode())
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert host in [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)]
    assert cert.issuer == x509.load_pem_x509_certificate(ctl.ca.read_bytes()).subject

    # boto3 with verify= the CA, unchanged otherwise
    ecs = _boto(ctl, str(ctl.ca))
    arn = ecs.create_cluster(clusterName="over-tls")["cluster"]["clusterArn"]  # type: ignore[attr-defined]
    assert arn.endswith("cluster/over-tls")
    # and boto3 without the CA refuses the certificate
    with pytest.raises(Exception, match=r"CERTIFICATE_VERIFY_FAILED|SSL"):
        _boto(ctl, True).list_clusters()  # type: ignore[attr-defined]

    # the aws CLI, as the README says: --endpoint-url https://HOST:PORT --ca-bundle ca.crt
    env = clean_env(tmp_path)
    creds = ctl.admin()
    env.update(AWS_ACCESS_KEY_ID=creds.access_key_id, AWS_SECRET_ACCESS_KEY=creds.secret_access_key)
    del env["AWS_PROFILE"], env["AWS_SESSION_TOKEN"]
    aws = [_tool("aws"), "ecs", "list-clusters", "--region", "us-east-1"]
    out = subprocess.run(
        [*aws, "--endpoint-url", f"https://{ctl.http}", "--ca-bundle", str(ctl.ca)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert arn in json.loads(out.stdout)["clusterArns"]

    # /healthz and /metrics on the same port, over TLS
    health = requests.get(f"https://{ctl.http}/healthz", verify=str(ctl.ca), timeout=10)
    assert health.json()["status"] == "ok"
    metrics = requests.get(f"https://{ctl.http}/metrics", verify=str(ctl.ca), timeout=10)
    assert "dockyard_agents_connected" in metrics.text

    # a signed request sent in plaintext (what an eavesdropper could replay) gets nothing
    with pytest.raises(requests.ConnectionError):
        requests.post(f"http://{ctl.http}/", data=b"{}", timeout=10)
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://{ctl.http}/healthz", timeout=10)


def test_advertised_names_are_in_the_certificate_and_in_endpoints(tmp_path: Path) -> None:
    host = off_loopback_address()
    gen = start_controller(
        tmp_path, host, "--advertise-address", "ctl.example.test", "--advertise-address", host
    )
    ctl = next(gen)
    try:
        ep = endpoints.read(ctl.data_dir)
        assert ep is not None
        assert ep.ecs_url == f"https://ctl.example.test:{ctl.http.rpartition(':')[2]}"
        assert ep.controller == f"ctl.example.test:{ctl.grpc.rpartition(':')[2]}" and ep.tls
        pem = ssl.get_server_certificate((host, int(ctl.http.rpartition(":")[2])))
        cert = x509.load_pem_x509_certificate(pem.encode())
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert "ctl.example.test" in sans.get_values_for_type(x509.DNSName)
    finally:
        gen.close()


def test_a_wildcard_bind_certificate_covers_this_machines_addresses(tmp_path: Path) -> None:
    """`--http 0.0.0.0:7080` (controller.env.example): https://VM-ADDRESS:7080 verifies
    with the CA alone, no --advertise-address needed."""
    address = off_loopback_address()
    gen = start_controller(tmp_path, "0.0.0.0")
    ctl = next(gen)
    try:
        port = ctl.http.rpartition(":")[2]
        health = requests.get(f"https://{address}:{port}/healthz", verify=str(ctl.ca), timeout=10)
        assert health.json()["status"] == "ok"
        ep = endpoints.read(ctl.data_dir)
        assert ep is not None and ep.ecs_url == f"https://127.0.0.1:{port}"
    finally:
        gen.close()


def test_loopback_ecs_api_stays_plain_http(plain_ctl: RealController) -> None:
    health = requests.get(f"http://{plain_ctl.http}/healthz", timeout=10)
    assert health.json()["status"] == "ok"
    ep = endpoints.read(plain_ctl.data_dir)
    assert ep is not None and ep.ecs_url == f"http://{plain_ctl.http}" and not ep.tls


# ---------------------------------------------------------------- B: dockyard env


def _eval_and_run(env_cmd: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`eval "$(ENV_CMD)"` in a real bash, then the CLI, the aws CLI and boto3 with no
    extra arguments; each prints a marker line so the test can tell them apart."""
    script = f"""
set -e
eval "$({env_cmd})"
aws ecs create-cluster >/dev/null  # `default` exists once needed (ECS); no agent joined here
echo "== dockyard clusters"; dockyard clusters list
echo "== dockyard tasks"; dockyard tasks list
echo "== aws"; aws ecs list-clusters
echo "== boto3"; {sys.executable} -c "{BOTO_SCRIPT}"
"""
    return subprocess.run(
        ["bash", "-c", script], env=env, capture_output=True, text=True, timeout=120
    )


def _assert_all_talked(out: subprocess.CompletedProcess[str]) -> None:
    assert out.returncode == 0, out.stdout + out.stderr
    aws_json = out.stdout.split("== aws\n")[1].split("== boto3")[0]
    assert "cluster/default" in json.loads(aws_json)["clusterArns"][0]
    assert out.stdout.split("== boto3\n")[1].strip() == "1"
    assert "default" in out.stdout.split("== dockyard clusters\n")[1]


def test_env_from_a_tls_controllers_data_dir_sets_up_dockyard_aws_and_boto3(
    tls_ctl: RealController, tmp_path: Path
) -> None:
    env = clean_env(tmp_path)
    printed = subprocess.run(
        [_tool("dockyard"), "env", "--data-dir", str(tls_ctl.data_dir)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert f"AWS_ENDPOINT_URL_ECS=https://{tls_ctl.http}" in printed
    assert f"AWS_CA_BUNDLE={tls_ctl.ca}" in printed and f"DOCKYARD_CA_CERT={tls_ctl.ca}" in printed
    out = _eval_and_run(f"dockyard env --data-dir {tls_ctl.data_dir}", env)
    _assert_all_talked(out)


def test_env_for_a_plain_controller_unsets_a_stale_ca(
    plain_ctl: RealController, tmp_path: Path
) -> None:
    env = clean_env(tmp_path)
    env.update(DOCKYARD_CA_CERT=str(tmp_path / "old-ca.crt"), AWS_CA_BUNDLE="/nonexistent")
    out = _eval_and_run(f"dockyard env --data-dir {plain_ctl.data_dir}", env)
    _assert_all_talked(out)


def test_env_for_the_make_up_cluster_needs_no_flags(tmp_path: Path) -> None:
    """`dockyard env` alone: the cluster `make up` keeps in DOCKYARD_QUICKSTART_DIR."""
    quick = tmp_path / "quick"
    gen = start_controller(quick, "127.0.0.1")
    next(gen)
    try:
        env = clean_env(tmp_path)
        env["DOCKYARD_QUICKSTART_DIR"] = str(quick)
        _assert_all_talked(_eval_and_run("dockyard env", env))
    finally:
        gen.close()


def test_env_from_an_address_plus_files(tls_ctl: RealController, tmp_path: Path) -> None:
    """An operator away from the controller: copies of ca.crt and of a key file."""
    ca, key_file = tmp_path / "copy-ca.crt", tmp_path / "key"
    shutil.copy(tls_ctl.ca, ca)
    auth.write_credentials(key_file, tls_ctl.admin())
    env = clean_env(tmp_path)
    cmd = f"dockyard env --controller {tls_ctl.grpc} --ca-cert {ca} --credentials-file {key_file}"
    cmd += f" --endpoint-url https://{tls_ctl.http}"
    _assert_all_talked(_eval_and_run(cmd, env))


def test_env_without_a_cluster_says_what_is_missing(tmp_path: Path) -> None:
    out = subprocess.run(
        [_tool("dockyard"), "env", "--data-dir", str(tmp_path / "nothing")],
        env=clean_env(tmp_path),
        capture_output=True,
        text=True,
    )
    assert out.returncode == 1 and out.stdout == ""
    assert "endpoints.json not found" in out.stderr and "Traceback" not in out.stderr


# ---------------------------------------------------------------- C: errors


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_tool("dockyard"), *args], env=env, capture_output=True, text=True, timeout=60
    )


def _signed_env(ctl: RealController, home: Path) -> dict[str, str]:
    env = clean_env(home)
    creds = ctl.admin()
    env.update(DOCKYARD_CONTROLLER=ctl.grpc, DOCKYARD_CA_CERT=str(ctl.ca))
    env.update(DOCKYARD_ACCESS_KEY_ID=creds.access_key_id)
    env.update(DOCKYARD_SECRET_ACCESS_KEY=creds.secret_access_key)
    return env


def _one_line(out: subprocess.CompletedProcess[str]) -> str:
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr  # no gRPC core noise before the message
    return lines[0]


def test_tls_trust_failures_say_what_to_set(tls_ctl: RealController, tmp_path: Path) -> None:
    env = _signed_env(tls_ctl, tmp_path)
    assert _cli(env, "clusters", "list").returncode == 0

    no_ca = dict(env)
    del no_ca["DOCKYARD_CA_CERT"]
    msg = _one_line(_cli(no_ca, "clusters", "list"))
    assert "serves TLS: set DOCKYARD_CA_CERT=" in msg and "dockyard env" in msg
    assert "cannot reach" not in msg

    other = tmp_path / "other" / "controller"
    other.mkdir(parents=True)
    from controller.security.pki import CertificateAuthority

    CertificateAuthority.load_or_create(other)  # a CA of another cluster
    wrong = dict(env, DOCKYARD_CA_CERT=str(other / "ca.crt"))
    msg = _one_line(_cli(wrong, "clusters", "list"))
    assert f"DOCKYARD_CA_CERT={other / 'ca.crt'} did not sign" in msg
    assert "cannot reach" not in msg

    http_port = dict(env, DOCKYARD_CONTROLLER=tls_ctl.http)
    msg = _one_line(_cli(http_port, "clusters", "list"))
    assert "--http port" in msg and "cannot reach" not in msg

    missing = dict(env, DOCKYARD_CA_CERT=str(tmp_path / "missing.crt"))
    msg = _one_line(_cli(missing, "clusters", "list"))
    assert f"DOCKYARD_CA_CERT={tmp_path / 'missing.crt'}: cannot read it" in msg


def test_a_ca_against_a_plain_controller_says_to_unset_it(
    plain_ctl: RealController, tmp_path: Path
) -> None:
    env = _signed_env(plain_ctl, tmp_path)
    msg = _one_line(_cli(env, "clusters", "list"))
    assert "without TLS" in msg and "unset DOCKYARD_CA_CERT" in msg
    assert "cannot reach" not in msg


def test_nothing_listening_is_still_cannot_reach(tmp_path: Path) -> None:
    env = clean_env(tmp_path)
    address = f"127.0.0.1:{free_port()}"
    msg = _one_line(_cli(env, "tasks", "list", "--controller", address))
    assert msg.startswith("ConnectionError: cannot reach the controller at " + address)


def test_signature_failures_name_the_key_and_its_source(
    plain_ctl: RealController, tmp_path: Path
) -> None:
    env = _signed_env(plain_ctl, tmp_path)
    del env["DOCKYARD_CA_CERT"]
    key = plain_ctl.admin().access_key_id

    wrong_secret = dict(env, DOCKYARD_SECRET_ACCESS_KEY="not-the-secret")
    msg = _one_line(_cli(wrong_secret, "tasks", "list"))
    assert msg.startswith("InvalidSignatureException:")
    assert f"access key {key} from $DOCKYARD_ACCESS_KEY_ID" in msg

    key_file = tmp_path / "creds"
    auth.write_credentials(key_file, auth.Credentials("DYAKNOSUCHKEY0000000", "x"))
    from_file = {k: v for k, v in env.items() if not k.startswith("DOCKYARD_ACCESS")}
    from_file = {k: v for k, v in from_file.items() if not k.startswith("DOCKYARD_SECRET")}
    from_file["DOCKYARD_CREDENTIALS_FILE"] = str(key_file)
    msg = _one_line(_cli(from_file, "tasks", "list"))
    assert msg.startswith("UnrecognizedClientException:")
    assert f"DYAKNOSUCHKEY0000000 from the credentials file {key_file}" in msg

    none = dict(from_file, DOCKYARD_CREDENTIALS_FILE=str(tmp_path / "absent"))
    msg = _one_line(_cli(none, "tasks", "list"))
    assert msg.startswith("AccessDeniedException:") and "found no access key" in msg
    assert str(tmp_path / "absent") in msg


def test_env_gives_each_tool_the_ca_only_where_its_port_serves_tls(tmp_path: Path) -> None:
    """--listen on loopback (plain gRPC), --http off loopback (HTTPS): the CLI must not be
    told to use TLS, aws must; and the other way round."""
    ca = tmp_path / "ca.crt"
    ca.write_text("pem")
    creds = auth.Credentials("DYAKX", "s e'cret")
    https_only = Target("127.0.0.1:7070", "https://10.0.0.5:7080", "eu-west-1", ca, creds)
    out = exports(https_only)
    assert f"export AWS_CA_BUNDLE={ca}" in out and "DOCKYARD_CA_CERT" in out.split("unset")[1]
    grpc_only = replace(https_only, ecs_url="http://127.0.0.1:7080", grpc_tls=True)
    out = exports(grpc_only)
    assert f"export DOCKYARD_CA_CERT={ca}" in out and "AWS_CA_BUNDLE" in out.split("unset")[1]
    # what the shell evaluates is exactly the values, quoted
    env = subprocess.run(
        ["bash", "-c", f"eval {shlex.quote(out)}; env"], capture_output=True, text=True
    ).stdout
    assert "AWS_SECRET_ACCESS_KEY=s e'cret" in env.splitlines()
    assert "AWS_DEFAULT_REGION=eu-west-1" in env.splitlines()
