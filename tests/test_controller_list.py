"""`--controller a:7070,b:7070`: how agents, the simulator and the TLS decision read a list
of controllers (pure: no network)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from agent.enroll import channel_factory, tls_wanted
from agent.identity import Identity
from controller.ha_members import Member, agent_targets, api_targets
from dockyard import endpoints


def test_one_address_is_used_as_given_several_become_one_target_in_order() -> None:
    assert endpoints.grpc_target("ctl.example:7070") == "ctl.example:7070"
    assert endpoints.grpc_target("127.0.0.1:7070, localhost:7071") == (
        "ipv4:127.0.0.1:7070,127.0.0.1:7071"
    )
    assert endpoints.controller_list("a:1,,b:2 ") == ["a:1", "b:2"]


def test_several_controllers_retry_sooner_than_one() -> None:
    assert endpoints.backoff_cap("a:1", 5.0) == 5.0
    assert endpoints.backoff_cap("a:1,b:2", 5.0) == endpoints.FAILOVER_BACKOFF_CAP_S
    options = [("grpc.max_reconnect_backoff_ms", 2000), ("grpc.keepalive_time_ms", 1)]
    assert endpoints.channel_options("a:1", options) == options
    fast = dict(endpoints.channel_options("a:1,b:2", options))
    assert fast["grpc.max_reconnect_backoff_ms"] == 500 and fast["grpc.keepalive_time_ms"] == 1


def test_tls_auto_is_off_only_when_every_controller_is_on_loopback() -> None:
    assert not tls_wanted("auto", "127.0.0.1:7070,localhost:7071")
    assert tls_wanted("auto", "127.0.0.1:7070,10.0.0.2:7070")
    assert not tls_wanted("never", "10.0.0.1:7070,10.0.0.2:7070")


def test_an_agent_takes_several_controllers_over_tls(tmp_path: Path) -> None:
    """One CA for the cluster: the agent enrolls with whichever controller answers and
    keeps the agent ports the leader listed (several: one target walking them in order)."""
    config = SimpleNamespace(
        tls="always",
        controller="10.0.0.1:7070,10.0.0.2:7070",
        state_dir=tmp_path,
        cluster="",
        join_token="",
    )
    ident = Identity("i-1", "")
    factory = channel_factory(config, ident)
    assert factory is not None
    tls = factory.__self__
    assert tls.connect_address() == "ipv4:10.0.0.1:7070,10.0.0.2:7070"
    (tmp_path / "tls.json").write_text('{"connect_address": "10.0.0.2:7071,10.0.0.1:7071"}')
    assert tls.connect_address() == "ipv4:10.0.0.2:7071,10.0.0.1:7071"


def test_a_standbys_refusal_names_the_leader_the_agent_dials_next() -> None:
    hint = endpoints.leader_hint([("x", "y"), (endpoints.LEADER_HINT, b"10.0.0.2:7071")])
    assert hint == "10.0.0.2:7071"
    assert endpoints.leader_hint(None) == ""


def test_agents_and_join_commands_list_every_controller_the_leader_first() -> None:
    found = {
        "a:7070": Member("a:7070", "a:7071", "https://a:7080"),
        "b:7070": Member("b:7070", "b:7071", "https://b:7080"),
        "c:7070": Member("c:7070", "c:7071", "https://c:7080"),
    }
    assert agent_targets(found, "b:7070") == "b:7071,a:7071,c:7071"
    assert api_targets(found, "c:7070") == ["c:7070", "a:7070", "b:7070"]
