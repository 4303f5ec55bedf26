"""The agent warns when the kernel can take the host ports the controller hands tasks.

A task given a dynamic host port fails to start ("address already in use") when the kernel
has already put an outgoing connection or a port-0 listener on it: ECS users' known trap.
"""

from __future__ import annotations

from agent import host
from controller.placement import DEFAULT_EPHEMERAL_RANGE


def test_the_agent_and_the_controller_agree_on_the_dynamic_range() -> None:
    assert host.DYNAMIC_HOST_PORTS == DEFAULT_EPHEMERAL_RANGE


def test_linux_defaults_overlap_the_dynamic_range() -> None:
    assert host.ephemeral_overlap((32768, 60999), set()) == (49153, 60999)


def test_a_reserved_range_or_a_low_kernel_range_leaves_no_overlap() -> None:
    reserved = host.parse_port_list("22,49153-65535\n")
    assert host.ephemeral_overlap((32768, 60999), reserved) is None
    assert host.ephemeral_overlap((32768, 49152), set()) is None


def test_a_partial_reservation_reports_what_is_left() -> None:
    reserved = host.parse_port_list("49153-50000")
    assert host.ephemeral_overlap((32768, 60999), reserved) == (50001, 60999)


def test_the_install_step_keeps_the_kernel_out_of_the_range_on_this_machine() -> None:
    # deploy/ensure-docker.sh ends the kernel's range below it: without that, tests fail
    # intermittently when a test's own connection sits on the port a task is given
    assert host.ephemeral_warning() is None


def test_an_interfaces_ipv4_address_is_read_from_the_kernel() -> None:
    """Where the agent's resolver listens when dockerd names no bridge gateway (it does not
    after finding its bridge already addressed): the bridge interface's own address."""
    assert host.interface_ipv4("lo") == "127.0.0.1"
    assert host.interface_ipv4("no-such-if0") == ""
