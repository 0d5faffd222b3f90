"""The standard services of every node, checked against real ROS 2.

* A client on another RMW: real rclpy (rmw_fastrtps_cpp) calls a node's
  service. ROS 2 services do not cross RMW vendors, so no reply can reach
  it; the node must say so in its log, once per client, with what to do,
  and keep serving rmw_cyclonedds clients (the Python cyclonedds client).
* ``~/get_type_description``: for every type a node uses (each publisher's,
  subscriber's and service's type, from the contract table), the node's
  answer must be exactly what rosidl generated for the ROS wheels
  (``share/<pkg>/{msg,srv}/<Name>.json``: the hash, and the description
  with its default values).
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from pathlib import Path

import pytest

import contract
from helpers import wait_until
from rosobs import msg_class

WARNING = "ignoring requests from a client on another ROS 2 middleware"


def warnings_in(log: Path):
    return [line for line in log.read_text(errors="replace").splitlines() if WARNING in line]


@pytest.mark.parametrize("c", [contract.BY_KEY["example"], contract.BY_KEY["dns"]], ids=["example", "dns"])
def test_a_client_on_another_rmw_is_told_what_to_do(c, nodes, ros, cyclone):
    running = nodes.start(c)
    ros.wait_node(c)
    lifecycle = cyclone.lifecycle_client(c.fqn)
    assert lifecycle.wait_ready(20), f"{c.fqn}: lifecycle services never became available"
    GetState = msg_class("lifecycle_msgs/srv/GetState")
    service = f"{c.fqn}/get_state"

    # Two rclpy clients (Fast DDS) calling every 0.2 s: no reply can come
    # back. They keep calling because a request sent before the node's
    # reader has matched the client's writer is lost (Cyclone learns of a
    # Fast DDS endpoint up to ~1 s after rclpy sees ours).
    clients = [ros.node.create_client(GetState, service) for _ in range(2)]
    for client in clients:
        client.wait_for_service(timeout_sec=10)
    futures = []
    log = running.proc.stderr_path

    def call_all_and_count():
        futures.extend(client.call_async(GetState.Request()) for client in clients)
        time.sleep(0.2)  # the pace of the calls
        return len(warnings_in(log)) >= 2

    wait_until(call_all_and_count, 15, "a warning for each rclpy client in the node's log")
    for _ in range(5):   # more calls from both: still one warning each
        futures.extend(client.call_async(GetState.Request()) for client in clients)

    # Meanwhile an rmw_cyclonedds client is served as usual.
    assert lifecycle.get_state().label == "active"
    assert lifecycle.change_state(label="deactivate") is True
    assert lifecycle.get_state().label == "inactive"

    time.sleep(1.0)  # a window for replies that must not come and warnings that must not repeat
    assert not any(f.done() for f in futures), "an rclpy client got a reply across RMW vendors?"
    lines = warnings_in(log)
    assert len(lines) == 2, "one warning per client, not per request:\n" + "\n".join(lines)
    clients_named = {re.search(r"client=(\S+)", line).group(1) for line in lines}
    assert len(clients_named) == 2, lines
    for line in lines:
        assert "RMW_IMPLEMENTATION=rmw_cyclonedds_cpp" in line, line
        assert "eProsima Fast DDS" in line, line
        assert f"service={service}" in line, line
    text = log.read_text(errors="replace")
    assert "malformed" not in text, "the old, misleading message is gone"
    for client in clients:
        ros.node.destroy_client(client)


def wheel_json(ros_type: str) -> dict:
    """rosidl's generated ``share/<pkg>/<kind>/<Name>.json``: from the ROS
    prefixes on AMENT_PREFIX_PATH (a sourced install), else from the venv
    (the wheels install their share/ there and set no AMENT_PREFIX_PATH)."""
    pkg, kind, name = ros_type.split("/")
    prefixes = [p for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p] + [sys.prefix]
    for prefix in prefixes:
        path = Path(prefix) / "share" / pkg / kind / f"{name}.json"
        if path.is_file():
            return json.loads(path.read_text())
    raise AssertionError(f"no {pkg}/{kind}/{name}.json under {prefixes}: is ros-jazzy-{pkg.replace('_', '-')} installed?")


def as_dict(individual) -> dict:
    """A served IndividualTypeDescription in the wheels' JSON shape."""
    return {
        "type_name": individual.type_name,
        "fields": [{"name": f.name,
                    "type": {"type_id": f.type.type_id, "capacity": f.type.capacity,
                             "string_capacity": f.type.string_capacity,
                             "nested_type_name": f.type.nested_type_name},
                    "default_value": f.default_value} for f in individual.fields],
    }


def used_types(c: contract.NodeContract):
    topics = {**c.all_publishers(), **c.all_subscribers()}
    return sorted({t.type for t in topics.values()} | set(c.all_services().values()))


@pytest.mark.parametrize("c", contract.NODES, ids=contract.ids(contract.NODES))
def test_type_descriptions_are_rosidls(c, nodes, ros, cyclone):
    nodes.start(c)
    ros.wait_node(c)
    client = cyclone.service_client(f"{c.fqn}/get_type_description",
                                    "type_description_interfaces/srv/GetTypeDescription")
    wait_until(client.is_ready, 20, f"{c.fqn}/get_type_description to be available")
    for ros_type in used_types(c):
        generated = wheel_json(ros_type)
        hash_ = next(h["hash_string"] for h in generated["type_hashes"] if h["type_name"] == ros_type)
        reply = client.call(5.0, type_name=ros_type, type_hash=hash_, include_type_sources=False)
        assert reply.successful, f"{c.fqn} does not describe {ros_type} ({hash_}): {reply.failure_reason}"
        want = generated["type_description_msg"]
        got = reply.type_description
        assert as_dict(got.type_description) == want["type_description"], ros_type
        assert [as_dict(d) for d in got.referenced_type_descriptions] == want["referenced_type_descriptions"], \
            ros_type
