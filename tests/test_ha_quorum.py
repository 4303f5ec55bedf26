"""etcd losing two of its three members (real etcd, real controller processes with API
signatures and TLS, boto3 and the CLI): writes are refused at once with the reason, reads
are answered from a standby's memory, marked stale; with a member back a leader is elected,
writes work and the marking is gone."""

from __future__ import annotations

import time
from pathlib import Path

import botocore.exceptions
import pytest

from controller.ha import LOST_LEADERSHIP
from controller.stale_reads import STALE_HEADER, STALE_REVISION_HEADER, STALE_SINCE_HEADER
from dockyard.client import Client
from dockyard.errors import ApiError
from tests.etcd_fixture import etcd_cluster
from tests.support import wait_for
from tests.test_ha import Ctl, cli, controllers, leader_and_standby


def headers(reply: dict[str, object]) -> dict[str, str]:
    meta = reply["ResponseMetadata"]
    assert isinstance(meta, dict)
    return dict(meta["HTTPHeaders"])


def stale(ctl: Ctl) -> bool:
    return bool(ctl.health().get("stale"))


@pytest.mark.timeout(240)
def test_two_of_three_etcd_members_down_reads_stale_writes_refused_then_recovery(
    tmp_path: Path,
) -> None:
    with etcd_cluster(3) as etcd3, controllers(etcd3, tmp_path, "a", "b", auth=True) as ctls:
        a, b = leader_and_standby(ctls)
        wait_for(lambda: b.health().get("status") == "standby", 20, what="b answering")
        b.ecs().create_cluster(clusterName="one")  # relayed to a
        etcd3.members[0].stop()
        b.ecs().create_cluster(clusterName="two")  # one member down changes nothing
        assert STALE_HEADER not in headers(b.ecs().list_clusters())

        etcd3.members[1].stop()
        lost = time.monotonic()
        assert a.proc and a.proc.wait(timeout=15) == LOST_LEADERSHIP  # fail-stop, fenced
        wait_for(lambda: stale(b), 15, what="b noticing etcd has no quorum")
        print(f"quorum lost to stale reads on b: {time.monotonic() - lost:.1f}s")  # with -s
        ecs = b.ecs()
        listed = ecs.list_clusters()
        assert {arn.rsplit("/", 1)[-1] for arn in listed["clusterArns"]} == {"one", "two"}
        marks = headers(listed)
        assert marks[STALE_HEADER] == "true", marks
        assert marks[STALE_SINCE_HEADER].endswith("Z"), marks  # b saw the quorum before
        described = ecs.describe_clusters(clusters=["one"])["clusters"]
        assert [c["clusterName"] for c in described] == ["one"]
        unsigned = Client(f"127.0.0.1:{b.grpc_port}", timeout=10, sign=False, ca_cert=b.ca())
        with pytest.raises(ApiError) as denied:  # signatures are checked on stale reads too
            unsigned.call("ListClusters")
        assert denied.value.name != "ServerException", denied.value
        unsigned.close()

        started = time.monotonic()
        once = b.ecs_once()
        with pytest.raises(botocore.exceptions.ClientError) as refused:
            once.create_cluster(clusterName="refused")
        error = refused.value.response["Error"]
        assert error["Code"] == "ServerException", error
        assert "etcd has no quorum" in error["Message"], error
        assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
        took = time.monotonic() - started
        print(f"a write refused in {took:.2f}s")
        assert took < 5  # refused at once, not after etcd's timeouts

        listing = cli(b, "clusters", "list")
        assert listing.returncode == 0, listing.stderr
        assert "one" in listing.stdout and "two" in listing.stdout
        assert "warning: stale answer: etcd has no quorum" in listing.stderr, listing.stderr
        created = cli(b, "clusters", "create", "refused")
        assert created.returncode != 0
        assert "etcd has no quorum" in created.stderr, created.stderr

        a.start()  # its supervisor restarts the deposed leader: a standby, from a member's copy
        wait_for(lambda: stale(a), 30, what="a answering stale")
        from_a = a.ecs().list_clusters()
        assert {arn.rsplit("/", 1)[-1] for arn in from_a["clusterArns"]} == {"one", "two"}
        assert headers(from_a)[STALE_HEADER] == "true"
        assert int(headers(from_a)[STALE_REVISION_HEADER]) > 0
        with pytest.raises(botocore.exceptions.ClientError) as also_refused:
            a.ecs_once().create_cluster(clusterName="refused")
        assert "etcd has no quorum" in also_refused.value.response["Error"]["Message"]

        etcd3.restart(etcd3.members[1])  # the quorum is back: one leads, neither restarted
        wait_for(lambda: a.serving() or b.serving(), 30, what="a leader once etcd has a quorum")
        leader, other = (a, b) if a.serving() else (b, a)
        wait_for(lambda: not stale(other), 15, what="the standby relaying again")
        ecs = other.ecs()
        ecs.create_cluster(clusterName="three")
        again = ecs.list_clusters()
        assert STALE_HEADER not in headers(again)
        assert {arn.rsplit("/", 1)[-1] for arn in again["clusterArns"]} == {"one", "two", "three"}
        assert leader.clusters() == {"one", "two", "three"}
        plain = cli(other, "clusters", "list")
        assert plain.returncode == 0 and "stale" not in plain.stderr, plain.stderr
