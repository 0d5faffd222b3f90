"""What real ROS 2 (rclpy, rmw_fastrtps_cpp by default) sees of every node's
graph: `ros2 node list`, `ros2 node info`, `ros2 topic info -v`.

For every entry of contract.NODES: the node is listed, its publishers,
subscribers and services are *exactly* the table's (names and types), the
type hash each endpoint advertises equals the one a real rclpy endpoint of
the same type advertises, and its QoS looks like that of an rclpy endpoint
with the intended profile, seen from another process.
"""

import time

import pytest

import contract
from contract import NODES, ids
from rosobs import diff, expected_endpoints, visible_qos

GRAPH_TIMEOUT = 20.0   # process start + discovery of a debug build


def wait_endpoints(ros, c, timeout=GRAPH_TIMEOUT):
    """rclpy's view of node ``c`` once it equals the table (or the last view
    after ``timeout``, for the assertion to show)."""
    expected = expected_endpoints(c)
    deadline = time.monotonic() + timeout
    while True:
        seen = ros.endpoints(c)
        if seen == expected or time.monotonic() > deadline:
            return expected, seen
        time.sleep(0.1)


@pytest.mark.parametrize("c", NODES, ids=ids(NODES))
def test_node_listed_with_exactly_the_contracts_endpoints(c, ros, nodes):
    nodes.start(c)
    took = ros.wait_node(c, GRAPH_TIMEOUT)
    print(f"{c.fqn} in rclpy's node list {took:.2f} s after start")
    expected, seen = wait_endpoints(ros, c)
    assert seen == expected, f"{c.fqn} as rclpy sees it differs from contract.py:\n{diff(expected, seen)}"
    assert ros.node_names().count((c.name, c.namespace)) == 1, ros.node_names()


@pytest.mark.parametrize("c", NODES, ids=ids(NODES))
def test_type_hashes_and_offered_qos_match_rclpy_endpoints(c, ros, nodes):
    """Per endpoint: our node's advertised type and RIHS01 hash equal those of
    an rclpy endpoint of that type, and the QoS visible in discovery equals
    that of an rclpy endpoint with the table's profile in another process."""
    pubs = sorted(c.all_publishers().items())
    subs = sorted(c.all_subscribers().items())
    ref_pubs = [(f"/ntari_reference/pub{i}", t) for i, (_, t) in enumerate(pubs)]
    ref_subs = [(f"/ntari_reference/sub{i}", t) for i, (_, t) in enumerate(subs)]
    nodes.reference(ref_pubs, ref_subs, name="ntari_ros2_reference")
    nodes.start(c)
    ros.wait_node(c, GRAPH_TIMEOUT)
    _, seen = wait_endpoints(ros, c)

    def one(topic, kind, node, ns, timeout=10.0):
        deadline = time.monotonic() + timeout
        while True:
            infos = ros.endpoint_info(topic, kind, node, ns)
            if infos or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert len(infos) == 1, f"{kind} of {ns}/{node} on {topic}: rclpy reports {infos}"
        return infos[0]

    rows = []
    for kind, ours, refs in (("publishers", pubs, ref_pubs), ("subscribers", subs, ref_subs)):
        for (topic, t), (ref_topic, _) in zip(ours, refs):
            mine = one(topic, kind, c.name, c.namespace)
            ref = one(ref_topic, kind, "ntari_ros2_reference", "/")
            assert mine.topic_type == t.type == ref.topic_type, (topic, mine.topic_type, ref.topic_type)
            assert str(ref.topic_type_hash).startswith("RIHS01_"), ref.topic_type_hash
            assert str(mine.topic_type_hash) == str(ref.topic_type_hash), \
                f"{topic} ({t.type}): our hash {mine.topic_type_hash}, rclpy's {ref.topic_type_hash}"
            assert visible_qos(mine.qos_profile) == visible_qos(ref.qos_profile), \
                f"{kind[:-1]} {topic}: ours {mine.qos_profile}, rclpy with {t.qos}: {ref.qos_profile}"
            # ...and that profile is the table's (the reference proves rclpy reports it so).
            q = visible_qos(mine.qos_profile)
            assert (q["reliability"].lower(), q["durability"].lower()) == (t.qos.reliability, t.qos.durability)
            rows.append(f"{kind[:-1]:10} {topic:45} {t.type:38} {q['reliability']}/{q['durability']} "
                        f"{str(mine.topic_type_hash)[:19]}…")
    print("\n".join(rows))


def test_every_service_crate_has_a_contract():
    """Every crate under services/ must add itself to contract.NODES, and
    every entry's crate must exist."""
    crates = contract.service_crates()
    assert crates, "no crate found under services/"
    covered = {c.crate for c in NODES if c.crate}
    missing = sorted(set(crates) - covered)
    assert not missing, (f"crates under services/ without an entry in tests/ros2/contract.py NODES: {missing} "
                         f"({[str(crates[m]) for m in missing]})")
    stale = sorted(covered - set(crates))
    assert not stale, f"contract.py entries whose crate is not under services/: {stale}"
    for c in NODES:
        if c.crate:
            assert c.binary == c.crate, f"{c.key}: binary {c.binary} is not the crate's name {c.crate}"
