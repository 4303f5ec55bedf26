"""Task-role credentials end to end on the machine's dockerd: real controller and agent
processes, the agent's endpoint on a free loopback port, botocore's own ContainerProvider,
and STS AssumeRole against a local moto server.

The agent programs its DYK-CRED-<port> chains in the root namespace, at its start, only for
169.254.170.2:80 on this engine's bridge; every test stops it with SIGTERM, which removes
them (checked). The agent claims the engine, so no other agent can take 169.254.170.2 from it
meanwhile. Requests go to http://169.254.170.2 from inside the task's container (its network
namespace, or `docker exec` where the process must be the container's): the endpoint answers
only the containers of its own tasks, each about its own task.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent import netconfig
from dockyard.errors import ApiError
from tests.support import LocalCluster, docker, free_port, moto_server, wait_for

pytestmark = pytest.mark.docker


@contextlib.contextmanager
def _cluster(root: Path) -> Iterator[tuple[LocalCluster, int]]:
    lc = LocalCluster(root)
    port = free_port()
    try:
        lc.start_controller()
        lc.start_agent("a1", "--credentials-listen", f"127.0.0.1:{port}")
        lc.wait_connected("a1")
        yield lc, port
    finally:
        for proc in lc.agents.values():
            proc.kill(signal.SIGTERM)  # a clean stop removes the agent's iptables chains
        lc.stop()
        _drop_chains(port)


@pytest.fixture
def creds_cluster(tmp_path: Path, sample_images: list[str]) -> Iterator[tuple[LocalCluster, int]]:
    with _cluster(tmp_path) as found:
        yield found


def _drop_chains(port: int) -> None:
    """Belt and braces after a failed test: nothing of ours stays in the root namespace."""
    asyncio.run(netconfig.drop_chain(netconfig.chain_name(port)))


def _chains(table: str = "nat") -> str:
    return subprocess.run(
        ["iptables", "-w", "5", "-t", table, "-S"], capture_output=True, text=True
    ).stdout


def _taskdef(**extra: Any) -> dict[str, Any]:
    return {
        "family": "creds",
        "containerDefinitions": [
            {"name": "main", "image": "dockyard/sleeper", "memory": 32},
        ],
        **extra,
    }


def _env(lc: LocalCluster, container: str = "main") -> dict[str, str]:
    for cid in lc.containers("a1"):
        data = json.loads(docker("inspect", cid))[0]
        if data["Config"]["Labels"].get("com.amazonaws.ecs.container-name") == container:
            return dict(e.split("=", 1) for e in data["Config"]["Env"])
    return {}


def _cid(lc: LocalCluster, container: str = "main", family: str = "") -> str:
    for cid in lc.containers("a1"):
        lab = json.loads(docker("inspect", cid))[0]["Config"]["Labels"]
        if lab.get("com.amazonaws.ecs.container-name") == container and (
            not family or lab.get("com.amazonaws.ecs.task-definition-family") == family
        ):
            return cid
    raise AssertionError(f"no container {container} {family}")


def _in_netns(cid: str, argv: list[str], env: dict[str, str] | None = None) -> str:
    """Run argv (a host program) in the container's network namespace: its connections
    come from the container's address, as the container's own would."""
    pid = docker("inspect", "-f", "{{.State.Pid}}", cid)
    out = subprocess.run(
        ["nsenter", f"--net=/proc/{pid}/ns/net", *argv],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


_FETCH = """
import sys, urllib.request, urllib.error
try:
    r = urllib.request.urlopen(sys.argv[1], timeout=5)
    print(r.status, r.read().decode())
except urllib.error.HTTPError as e:
    print(e.code, e.read().decode())
"""


def _get(cid: str, path: str) -> tuple[int, dict[str, Any]]:
    """GET http://169.254.170.2<path> from container cid: (status, JSON body)."""
    out = _in_netns(cid, [sys.executable, "-c", _FETCH, f"http://169.254.170.2{path}"])
    status, _, body = out.partition(" ")
    return int(status), json.loads(body)


def _run(lc: LocalCluster, td: dict[str, Any]) -> str:
    c = lc.client()
    c.call("RegisterTaskDefinition", td)
    arn = str(c.call("RunTask", {"taskDefinition": td["family"]})["tasks"][0]["taskArn"])
    lc.wait_status([arn], "RUNNING")
    return arn


def test_roles_and_secrets_are_write_only(creds_cluster: tuple[LocalCluster, int]) -> None:
    lc, _ = creds_cluster
    c = lc.client()
    out = c.call(
        "CreateRole", {"roleName": "app", "accessKeyId": "AKIDAPP", "secretAccessKey": "s3cr3t"}
    )
    assert out["role"]["roleArn"] == "arn:aws:iam::000000000000:role/app"
    c.call("PutSecret", {"name": "db-pass", "value": "hunter2"})
    listed = json.dumps([c.call("ListRoles"), c.call("ListSecrets")])
    assert "app" in listed and "db-pass" in listed
    assert "s3cr3t" not in listed and "hunter2" not in listed and "AKIDAPP" not in listed
    with pytest.raises(ApiError, match="roleName: a role named app already exists"):
        c.call("CreateRole", {"roleName": "app", "accessKeyId": "x", "secretAccessKey": "y"})
    with pytest.raises(ApiError, match="secretAccessKey: is required"):
        c.call("CreateRole", {"roleName": "b", "accessKeyId": "x"})
    with pytest.raises(ApiError, match="source: must be one of"):
        c.call("CreateRole", {"roleName": "b", "source": "magic"})
    with pytest.raises(ApiError, match="source: cannot obtain credentials"):
        c.call("CreateRole", {"roleName": "b", "source": "process", "command": "false"})
    data = lc.root / "controller"
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    for f in data.glob("dockyard.db*"):
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f
    c.call("DeleteSecret", {"name": "db-pass"})
    c.call("DeleteRole", {"roleName": "app"})
    assert c.call("ListRoles")["roles"] == [] and c.call("ListSecrets")["secrets"] == []


def test_unknown_roles_and_secrets_fail_run_task(creds_cluster: tuple[LocalCluster, int]) -> None:
    lc, _ = creds_cluster
    c = lc.client()
    c.call("RegisterTaskDefinition", _taskdef(taskRoleArn="arn:aws:iam::000000000000:role/nope"))
    with pytest.raises(ApiError, match="InvalidParameterException: taskRoleArn: no role"):
        c.call("RunTask", {"taskDefinition": "creds"})
    c.call("RegisterTaskDefinition", _taskdef(executionRoleArn="ghost"))
    with pytest.raises(ApiError, match="executionRoleArn: no role ghost"):
        c.call("RunTask", {"taskDefinition": "creds"})
    c.call("CreateRole", {"roleName": "exec", "accessKeyId": "a", "secretAccessKey": "b"})
    td = _taskdef(executionRoleArn="exec")
    td["containerDefinitions"][0]["secrets"] = [{"name": "X", "valueFrom": "missing"}]
    c.call("RegisterTaskDefinition", td)
    with pytest.raises(ApiError, match=r"containerDefinitions\[0\].secrets\[0\].valueFrom: no"):
        c.call("RunTask", {"taskDefinition": "creds"})


def test_credentials_secrets_and_revocation(creds_cluster: tuple[LocalCluster, int]) -> None:
    lc, port = creds_cluster
    c = lc.client()
    c.call("CreateRole", {"roleName": "app", "accessKeyId": "AKIDAPP", "secretAccessKey": "sk"})
    c.call("PutSecret", {"name": "db-pass", "value": "hunter2"})
    td = _taskdef(taskRoleArn="app", executionRoleArn="app")
    td["containerDefinitions"][0]["secrets"] = [{"name": "DB_PASS", "valueFrom": "db-pass"}]
    td["containerDefinitions"].append(
        {"name": "side", "image": "dockyard/sleeper", "memory": 32, "essential": False}
    )
    arn = _run(lc, td)
    main, side = _env(lc, "main"), _env(lc, "side")
    assert main["DB_PASS"] == "hunter2" and "DB_PASS" not in side  # only where declared
    rel = main["AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"]
    assert len(rel.rsplit("/", 1)[1]) >= 22  # >= 128 bits, base64url
    cid = _cid(lc, "main")
    status, doc = _get(cid, rel)
    assert status == 200
    assert doc["AccessKeyId"] == "AKIDAPP" and doc["SecretAccessKey"] == "sk"
    assert doc["RoleArn"] == "arn:aws:iam::000000000000:role/app" and doc["Expiration"]
    meta = main["ECS_CONTAINER_METADATA_URI_V4"].removeprefix("http://169.254.170.2")
    status, task = _get(cid, meta + "/task")
    assert status == 200 and task["TaskARN"] == arn and task["Family"] == "creds"
    assert {x["Name"] for x in task["Containers"]} == {"main", "side"}
    status, mine = _get(cid, meta)
    assert mine["Name"] == "main" and mine["DockerId"] and mine["KnownStatus"] == "RUNNING"
    assert _get(cid, f"/v2/credentials/{'A' * 32}")[0] == 400
    assert _get(cid, "/v2/credentials/")[1]["code"] == "NoIdInRequest"
    side_cid = _cid(lc, "side")  # the task's other container reads the task's credentials
    assert _get(side_cid, rel)[1]["AccessKeyId"] == "AKIDAPP"
    assert "DYK-CRED-" in _chains()
    c.call("StopTask", {"task": arn})
    lc.wait_status([arn], "STOPPED")
    # the task's containers are gone: whoever knows the id now has no container of a task
    keeper = _run(lc, _taskdef(family="keeper"))
    status, err = _get(_cid(lc, "main", "keeper"), rel)
    assert (status, err["code"]) == (400, "InvalidIdInRequest")  # revoked
    c.call("StopTask", {"task": keeper})
    lc.agents["a1"].kill(signal.SIGTERM)
    assert f"DYK-CRED-{port}" not in _chains()  # a clean stop removes its rules
    log = (lc.root / "agent-a1.log").read_text() + (lc.root / "controller.log").read_text()
    assert "hunter2" not in log and "AKIDAPP" not in log and rel not in log


def test_botocore_container_provider_loads_them(creds_cluster: tuple[LocalCluster, int]) -> None:
    lc, _ = creds_cluster
    c = lc.client()
    c.call("CreateRole", {"roleName": "sdk", "accessKeyId": "AKIDSDK", "secretAccessKey": "x"})
    _run(lc, _taskdef(taskRoleArn="sdk"))
    rel = _env(lc)["AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"]
    cid = _cid(lc)
    code = (
        "import json, botocore.credentials as c\n"
        "k = c.ContainerProvider().load().get_frozen_credentials()\n"
        "print(json.dumps([k.access_key, k.secret_key]))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_CONTAINER", "AWS_ACCESS"))}
    env["AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"] = rel  # as the container has it
    out = _in_netns(cid, [sys.executable, "-c", code], env=env)
    assert json.loads(out) == ["AKIDSDK", "x"]


@pytest.fixture
def moto() -> Iterator[str]:
    with moto_server() as url:
        yield url


def test_sts_assume_role_rotates(creds_cluster: tuple[LocalCluster, int], moto: str) -> None:
    import boto3

    lc, _ = creds_cluster
    c = lc.client()
    role_arn = "arn:aws:iam::123456789012:role/reader"
    c.call(
        "CreateRole",
        {
            "roleName": "reader",
            "roleArn": role_arn,
            "source": "sts-assume-role",
            "accessKeyId": "AKIDBASE",
            "secretAccessKey": "base",
            "endpointUrl": moto,
            "externalId": "ext-1",
            "durationSeconds": 20,
        },
    )
    assert "base" not in json.dumps(c.call("ListRoles"))
    _run(lc, _taskdef(taskRoleArn="reader"))
    url = _env(lc)["AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"]
    cid = _cid(lc)
    _, first = _get(cid, url)
    sts = boto3.client(
        "sts",
        endpoint_url=moto,
        region_name="us-east-1",
        aws_access_key_id=first["AccessKeyId"],
        aws_secret_access_key=first["SecretAccessKey"],
        aws_session_token=first["Token"],
    )
    who = sts.get_caller_identity()
    assert who["Arn"].startswith("arn:aws:sts::123456789012:assumed-role/reader/"), who
    # half-life rotation for short durations: new keys, later Expiration, same URL
    later = wait_for(
        lambda: (lambda d: d if d[1]["Expiration"] > first["Expiration"] else None)(_get(cid, url)),
        30,
        what="rotated credentials",
    )[1]
    assert later["AccessKeyId"] != first["AccessKeyId"]


def test_cli_roles_and_secrets_never_print_keys(
    creds_cluster: tuple[LocalCluster, int], tmp_path: Path
) -> None:
    lc, _ = creds_cluster
    keys = tmp_path / "keys.env"
    keys.write_text("AWS_ACCESS_KEY_ID=AKIDCLI\nexport AWS_SECRET_ACCESS_KEY='cli-secret'\n")

    def cli(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "dockyard.cli.main", *args, "--controller", lc.address]
        return subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=60)

    made = cli("roles", "create", "cli-role", "--keys-file", str(keys))
    assert made.returncode == 0, made.stderr
    listed = cli("roles", "list", "--output", "json")
    assert json.loads(listed.stdout)["roles"][0]["roleName"] == "cli-role"
    put = cli("secrets", "put", "api-token", "--stdin", stdin="tok-123\n")
    assert put.returncode == 0, put.stderr
    shown = made.stdout + listed.stdout + put.stdout + cli("secrets", "list").stdout
    assert "api-token" in shown and "cli-role" in shown
    assert "AKIDCLI" not in shown and "cli-secret" not in shown and "tok-123" not in shown
    bad = cli("roles", "create", "nokeys")
    assert bad.returncode == 1 and "needs --keys-file or --keys-from-env" in bad.stderr
    assert cli("secrets", "delete", "api-token").returncode == 0
    assert cli("roles", "delete", "cli-role").returncode == 0


def _plant(port: int, jump: bool) -> None:
    """A DYK-CRED chain as an agent on `port` leaves it; `jump`: with a PREROUTING jump
    (on an interface that does not exist, so nothing real is diverted meanwhile)."""
    chain, match = f"DYK-CRED-{port}", ["-d", "169.254.170.2/32", "-p", "tcp", "--dport", "80"]
    rules = [
        ["-N", chain],
        ["-A", chain, *match, "-j", "DNAT", "--to-destination", f"127.0.0.1:{port}"],
    ]
    if jump:
        rules.append(["-A", "PREROUTING", "-i", "dyk-none0", *match, "-j", chain])
    for rule in rules:
        subprocess.run(["iptables", "-w", "5", "-t", "nat", *rule], check=True)


def test_routing_is_set_at_start_for_tasks_without_a_role(
    tmp_path: Path, sample_images: list[str]
) -> None:
    """Every task gets ECS_CONTAINER_METADATA_URI_V4, so the agent routes 169.254.170.2 at
    start (as ECS's does), and drops what killed agents left, keeping live agents' rules."""
    dead = free_port()  # an agent that was SIGKILLed: nothing listens there any more
    half = free_port()  # a dead agent's chain of which only the filter guard is left
    live = socket.create_server(("127.0.0.1", 0))  # an agent still running
    live_port = live.getsockname()[1]
    try:
        _plant(dead, jump=True)
        _plant(live_port, jump=False)
        for rule in (
            ["-N", f"DYK-CRED-{half}"],
            ["-A", "INPUT", "-p", "tcp", "--dport", str(half), "-j", f"DYK-CRED-{half}"],
        ):
            subprocess.run(["iptables", "-w", "5", *rule], check=True)
        with _cluster(tmp_path) as (lc, port):
            wait_for(lambda: f"DYK-CRED-{port}" in _chains(), 20, what="routing at agent start")
            assert f"DYK-CRED-{dead}" not in _chains()  # chain and jump
            assert f"DYK-CRED-{half}" not in _chains("filter")
            assert f"DYK-CRED-{live_port}" in _chains()
            assert f"removed DYK-CRED-{dead}" in (lc.root / "agent-a1.log").read_text()
            arn = _run(lc, _taskdef())
            env = _env(lc)
            assert "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI" not in env  # no role
            meta = env["ECS_CONTAINER_METADATA_URI_V4"]
            assert meta.startswith("http://169.254.170.2/v4/")
            _, task = _get(_cid(lc), meta.removeprefix("http://169.254.170.2") + "/task")
            assert task["TaskARN"] == arn
            lc.agents["a1"].kill(signal.SIGTERM)
            assert f"DYK-CRED-{port}" not in _chains()
    finally:
        live.close()
        for p in (dead, half, live_port):
            _drop_chains(p)


FLOOD = (
    "for n in 1 2 3 4 5 6; do "
    "(while :; do wget -q -O /dev/null $ECS_CONTAINER_METADATA_URI_V4 2>>/tmp/err; done) & "
    "done; trap 'exit 0' TERM; sleep 86400 & wait"
)


def _wget(cid: str, path: str) -> str:
    """busybox wget inside the container itself (its own process): body, or wget's error."""
    return docker("exec", cid, "sh", "-c", f"wget -q -O - http://169.254.170.2{path} 2>&1 || :")


def test_a_flooding_task_does_not_starve_another_tasks_credentials(
    creds_cluster: tuple[LocalCluster, int],
) -> None:
    """Issue 15 #3: with one bucket for the host, a roleless task fetching in a loop made
    another task's own fetch fail 16 of 20 with 429. Now each caller has its own."""
    lc, _ = creds_cluster
    c = lc.client()
    c.call("CreateRole", {"roleName": "calm", "accessKeyId": "AKIDCALM", "secretAccessKey": "s"})
    td = _taskdef(family="flood")
    td["containerDefinitions"][0]["command"] = ["sh", "-c", FLOOD]
    _run(lc, td)
    flooder = _cid(lc, "main", "flood")
    wait_for(
        lambda: "429" in docker("exec", flooder, "cat", "/tmp/err"), 30, what="flooder throttled"
    )
    _run(lc, _taskdef(family="calm", taskRoleArn="calm"))
    calm = _cid(lc, "main", "calm")
    rel = _env_of(calm)["AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"]
    got = [_get(calm, rel) for _ in range(20)]
    assert [s for s, _ in got] == [200] * 20
    assert all(d["AccessKeyId"] == "AKIDCALM" for _, d in got)
    assert "429" in docker("exec", flooder, "sh", "-c", "tail -n 3 /tmp/err")  # still flooding


def _env_of(cid: str) -> dict[str, str]:
    return dict(e.split("=", 1) for e in json.loads(docker("inspect", cid))[0]["Config"]["Env"])


def test_a_task_reads_only_its_own_credentials(creds_cluster: tuple[LocalCluster, int]) -> None:
    """Issue 15 #3: two tasks placed on one host; one that learns the other's credentials id
    (docker inspect, a log line, a shared volume) gets 403, and so does a container Dockyard
    did not start, bridge or host network."""
    lc, _ = creds_cluster
    c = lc.client()
    for name in ("alpha", "beta"):
        key = f"AKID{name.upper()}"
        c.call("CreateRole", {"roleName": name, "accessKeyId": key, "secretAccessKey": "s"})
    _run(lc, _taskdef(family="alpha", taskRoleArn="alpha"))
    _run(lc, _taskdef(family="beta", taskRoleArn="beta"))
    _run(lc, _taskdef(family="hosted", taskRoleArn="alpha", networkMode="host"))
    a, b, h = (_cid(lc, "main", f) for f in ("alpha", "beta", "hosted"))
    a_env, b_env = _env_of(a), _env_of(b)
    a_rel, b_rel = (e["AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"] for e in (a_env, b_env))
    assert _get(a, a_rel)[1]["AccessKeyId"] == "AKIDALPHA"
    assert _get(b, b_rel)[1]["AccessKeyId"] == "AKIDBETA"
    status, body = _get(a, b_rel)  # alpha knows beta's id
    assert status == 403 and "AKIDBETA" not in json.dumps(body)
    b_meta = b_env["ECS_CONTAINER_METADATA_URI_V4"].removeprefix("http://169.254.170.2")
    assert _get(a, b_meta + "/task")[0] == 403
    assert _get(b, b_meta + "/task")[1]["Family"] == "beta"
    # a host-network task is told apart by the process owning its socket
    assert "AKIDALPHA" in _wget(h, _env_of(h)["AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"])
    assert "403" in _wget(h, b_rel) and "AKIDBETA" not in _wget(h, b_rel)
    # containers Dockyard did not start get nothing, even with a valid id
    strangers = []
    try:
        for net in ("bridge", "host"):
            strangers.append(
                docker("run", "-d", "--rm", "--network", net, "dockyard/sleeper", "sleep", "300")
            )
            assert "403" in _wget(strangers[-1], b_rel)
            assert "AKIDBETA" not in _wget(strangers[-1], b_rel)
        # nor does a process of the host (this test's own)
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"http://169.254.170.2{b_rel}", timeout=5)
        assert refused.value.code == 403
    finally:
        if strangers:
            docker("rm", "-f", *strangers)
    log = (lc.root / "agent-a1.log").read_text()
    assert "another task's credentials" in log and b_rel not in log


def test_a_second_agent_on_the_engine_refuses_to_start(
    creds_cluster: tuple[LocalCluster, int],
) -> None:
    """Issue 15 #5: a second agent on an engine took 169.254.170.2 from the first (its rules
    went first). Now it refuses, naming the first; the first keeps serving; a dead agent's
    claim does not block the next one."""
    lc, _ = creds_cluster
    c = lc.client()
    c.call("CreateRole", {"roleName": "one", "accessKeyId": "AKIDONE", "secretAccessKey": "s"})
    second_port = free_port()
    second = lc.start_agent("a2", "--credentials-listen", f"127.0.0.1:{second_port}")
    assert second.popen is not None and second.popen.wait(timeout=60) == 2
    said = (lc.root / "agent-a2.log").read_text()
    assert "another Dockyard agent already runs on this Docker engine" in said
    assert lc.instance_id("a1") in said and str((lc.root / "agent-a1").resolve()) in said
    assert f"DYK-CRED-{second_port}" not in _chains()  # it touched nothing
    _run(lc, _taskdef(taskRoleArn="one"))
    cid = _cid(lc)
    assert _get(cid, _env_of(cid)["AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"])[0] == 200
    lc.agents["a1"].kill(signal.SIGKILL)  # dies holding the claim
    lc.agents.pop("a2")
    third_port = free_port()
    lc.start_agent("a3", "--credentials-listen", f"127.0.0.1:{third_port}")
    try:
        lc.wait_connected("a3")
    finally:
        lc.agents["a3"].kill(signal.SIGTERM)
        _drop_chains(third_port)


def _localnet() -> Path:
    return Path("/proc/sys/net/ipv4/conf/docker0/route_localnet")


def test_route_localnet_is_restored_by_the_last_agent_needing_it(
    tmp_path: Path, sample_images: list[str]
) -> None:
    """Issue 15 #5: a clean stop of one agent reset docker0's route_localnet under another
    (whose DNAT to 127.0.0.1 then dropped every container's packets). Two agents sharing the
    engine (the test-only flag): the first to stop leaves it, the last restores it."""
    found = _localnet().read_text().strip()
    _localnet().write_text("0\n")
    lc = LocalCluster(tmp_path, shared_engine=True)
    ports = [free_port(), free_port()]
    try:
        lc.start_controller()
        for name, port in zip(("a1", "a2"), ports, strict=True):
            lc.start_agent(name, "--credentials-listen", f"127.0.0.1:{port}")
            lc.wait_connected(name)
            wait_for(lambda p=port: f"DYK-CRED-{p}" in _chains(), 30, what=f"{name} routing")
        assert _localnet().read_text().strip() == "1"
        lc.agents["a1"].kill(signal.SIGTERM)
        assert f"DYK-CRED-{ports[0]}" not in _chains()
        assert _localnet().read_text().strip() == "1"  # a2 still needs it
        lc.agents["a2"].kill(signal.SIGTERM)
        assert _localnet().read_text().strip() == "0"  # as found
    finally:
        lc.stop()
        for port in ports:
            _drop_chains(port)
        _localnet().write_text(found + "\n")
