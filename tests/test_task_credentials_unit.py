"""Pure pieces of task credentials: rate limit, refresh timing, revocation, parsing."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from agent import netconfig
from agent.credentials import TaskEndpoint, TokenBucket, next_credentials
from agent.netconfig import nat_rules, resolve_mode
from controller.roles import Issued, parse_role, registry_server, secret_name
from dockyard.errors import ApiError
from dockyard.v1 import agent_pb2


def test_token_bucket_allows_burst_then_steady_rate() -> None:
    b = TokenBucket(rate=40, burst=60)
    b.at = 0.0
    assert sum(b.take(0.0) for _ in range(100)) == 60
    assert sum(b.take(1.0) for _ in range(100)) == 40


def test_refresh_keeps_more_than_the_sdk_window_and_half_life_for_short_ones() -> None:
    hour = Issued("a", "s", "t", expiration=3600, issued_at=0)
    assert not hour.due(3600 - 21 * 60) and hour.due(3600 - 20 * 60)
    short = Issued("a", "s", "t", expiration=20, issued_at=0)
    assert not short.due(9) and short.due(10)


def test_stopped_tasks_lose_credentials_running_ones_keep_them_meanwhile() -> None:
    creds = agent_pb2.Credentials(id="x", access_key_id="A")
    running = agent_pb2.DesiredTask(desired_status="RUNNING")
    assert next_credentials(creds, running, "RUNNING") is creds
    assert next_credentials(creds, running, "STOPPED") is None
    stopping = agent_pb2.DesiredTask(desired_status="STOPPED")
    assert next_credentials(creds, stopping, "STOPPING") is None
    fresh = agent_pb2.DesiredTask(desired_status="RUNNING", credentials=creds)
    assert next_credentials(None, fresh, "PENDING") == creds


def test_parse_role_names_the_field() -> None:
    with pytest.raises(ApiError, match="durationSeconds"):
        parse_role(
            {"roleName": "r", "source": "sts-assume-role", "accessKeyId": "a",
             "secretAccessKey": "b", "durationSeconds": "long"},
            "000000000000",
        )  # fmt: skip
    with pytest.raises(ApiError, match="roleArn"):
        parse_role({"roleName": "r", "roleArn": "nope", "accessKeyId": "a"}, "000000000000")


def test_secret_refs_and_registry_hosts() -> None:
    assert secret_name("db") == ("db", "")
    assert secret_name("arn:aws:secretsmanager:us-east-1:1:secret:db:password::") == (
        "db",
        "password",
    )
    assert secret_name("arn:aws:ssm:us-east-1:1:parameter/app/db") == ("app/db", "")
    assert registry_server("10.0.0.1:5000/x/y:1") == "10.0.0.1:5000"
    assert registry_server("library/busybox") == ""


def test_dnat_rules_are_scoped_to_the_bridge_and_endpoint() -> None:
    rules = nat_rules("DYK-CRED-1", "docker0", "127.0.0.1", 1)
    assert ["PREROUTING", "-i", "docker0"] == rules[1][:3]
    assert all("169.254.170.2/32" in r for r in rules)


def test_mode_choice_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_mode("bridge") == ("bridge", "requested bridge")
    monkeypatch.setattr(netconfig, "iptables_problem", lambda: "not root")
    assert resolve_mode("auto") == ("bridge", "auto: cannot program iptables (not root)")
    monkeypatch.setattr(netconfig, "iptables_problem", lambda: "")
    assert resolve_mode("auto") == ("iptables", "auto: iptables can be programmed")
    with pytest.raises(ValueError, match="--credentials-mode: 'vpn' is not one of"):
        resolve_mode("vpn")


def test_leftover_chains_are_found_by_their_dnat_target_and_jumps() -> None:
    listing = [
        "-P OUTPUT ACCEPT",
        "-N DYK-CRED-5",
        "-A PREROUTING -d 169.254.170.2/32 -i docker0 -p tcp -m tcp --dport 80 -j DYK-CRED-5",
        "-A OUTPUT -d 169.254.170.2/32 -p tcp -m tcp --dport 80 -j DYK-CRED-5",
        "-A DOCKER -i docker0 -j DYK-CRED-5",  # not a chain of ours to edit
        "-A DYK-CRED-5 -d 169.254.170.2/32 -p tcp -j DNAT --to-destination 127.0.0.1:5",
        "-A DOCKER ! -i docker0 -p tcp -j DNAT --to-destination 172.17.0.2:80",
    ]
    assert netconfig.dnat_targets(listing) == {"DYK-CRED-5": ("127.0.0.1", 5)}
    jumps = netconfig.jumps_to("DYK-CRED-5", "nat", listing)
    assert [j[0] for j in jumps] == ["PREROUTING", "OUTPUT"]
    assert jumps[1] == listing[3].split()[1:]


def test_half_removed_chains_are_probed_on_the_port_in_their_name() -> None:
    """A chain left with only its filter guard (its nat half already gone) has no DNAT
    target to probe: its port comes from its name, so the next agent can remove it."""
    nat = ["-N DYK-CRED-5", "-A DYK-CRED-5 -p tcp -j DNAT --to-destination 10.0.0.1:5"]
    filter_ = [
        "-N DYK-CRED-5",
        "-N DYK-CRED-51680",
        "-A INPUT -p tcp -m tcp --dport 51680 -j DYK-CRED-51680",
        "-N DYK-CRED-junk",
    ]
    assert netconfig.probe_targets(nat, filter_) == {
        "DYK-CRED-5": ("10.0.0.1", 5),
        "DYK-CRED-51680": ("127.0.0.1", 51680),
    }


class _FlakyRedirect:
    """Fails the first `failures` applies, as when Docker is down at agent start."""

    def __init__(self, failures: int) -> None:
        self.failures, self.calls = failures, 0
        self.held = asyncio.Event()
        self.gateway, self.why, self.port = "", "test", 0

    async def apply(self) -> None:
        self.calls += 1
        if self.calls <= self.failures:
            raise OSError("Docker engine unreachable")
        self.held.set()

    async def remove(self) -> None:
        pass


async def test_start_time_routing_is_retried_until_it_holds(tmp_path: Path) -> None:
    endpoint = TaskEndpoint(
        "127.0.0.1:0", "iptables", tmp_path, "unix:///nowhere", _no_inspect, _none
    )
    flaky = _FlakyRedirect(failures=2)
    endpoint.redirect = flaky  # type: ignore[assignment]
    await endpoint.start()
    try:
        async with asyncio.timeout(20):  # backoff 0.5 s x 2^n, jittered: two waits < 3 s
            await flaky.held.wait()
        assert flaky.calls == 3
        await endpoint.ready()  # a task starting now does not try again
        assert flaky.calls == 3
    finally:
        await endpoint.stop()


async def _no_inspect(container_id: str) -> dict[str, Any]:
    return {}


async def _none() -> list[dict[str, Any]]:
    return []


async def test_a_port_taken_by_another_agent_disables_the_endpoint(tmp_path: Path) -> None:
    """Two agents on one host asking for the same port: the second runs without an endpoint
    (it used to die when the bind raced, under uvloop)."""
    first = TaskEndpoint(
        "127.0.0.1:0", "iptables", tmp_path / "a", "unix:///nowhere", _no_inspect, _none
    )
    first.redirect = _FlakyRedirect(failures=0)  # type: ignore[assignment]
    await first.start()
    try:
        second = TaskEndpoint(
            f"127.0.0.1:{first.port}",
            "iptables",
            tmp_path / "b",
            "unix:///nowhere",
            _no_inspect,
            _none,
        )
        await second.start()
        assert (second.serving, second.mode) == (False, "unavailable")
        assert first.serving and first.port > 0
    finally:
        await first.stop()
