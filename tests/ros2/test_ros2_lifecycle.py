"""Graph changes as real ROS 2 sees them.

* A lifecycle transition (driven with the Python cyclonedds client in
  rmw_cyclonedds' service format, since ROS 2 services do not cross RMW
  vendors) shows up to an rclpy subscriber of ``~/transition_event`` with
  rcl's ids and labels, and as health false -> true.
* A node that stops (SIGTERM) or is killed (SIGKILL) leaves rclpy's node list.
"""

import signal
import time

import pytest
from lifecycle_msgs.msg import State, Transition

from contract import NODES, SERVICE_NODES, ids
from ros_types import STATE_LABELS, TRANSITION_LABELS, S, T

READY = 20.0
SIGTERM_GONE = 10.0    # an orderly exit disposes the participant: rclpy drops it at once
SIGKILL_GONE = 30.0    # nobody says goodbye: Cyclone's participant lease (10 s) has to run out


def event_tuple(msg):
    return (msg.transition.id, msg.transition.label, msg.start_state.id, msg.start_state.label,
            msg.goal_state.id, msg.goal_state.label)


def rcl_event(transition, start, goal):
    return (transition, TRANSITION_LABELS[transition], start, STATE_LABELS[start], goal, STATE_LABELS[goal])


@pytest.mark.parametrize("c", NODES, ids=ids(NODES))
def test_deactivate_and_activate_seen_by_rclpy(c, ros, cyclone, nodes):
    # rcl's ids, as ROS's own lifecycle_msgs constants name them
    assert (S.ACTIVE, S.INACTIVE, S.ACTIVATING, S.DEACTIVATING) == (
        State.PRIMARY_STATE_ACTIVE, State.PRIMARY_STATE_INACTIVE,
        State.TRANSITION_STATE_ACTIVATING, State.TRANSITION_STATE_DEACTIVATING)
    assert (T.ACTIVATE, T.DEACTIVATE, T.ON_ACTIVATE_SUCCESS, T.ON_DEACTIVATE_SUCCESS) == (
        Transition.TRANSITION_ACTIVATE, Transition.TRANSITION_DEACTIVATE,
        Transition.TRANSITION_ON_ACTIVATE_SUCCESS, Transition.TRANSITION_ON_DEACTIVATE_SUCCESS)

    events = ros.subscribe(f"{c.fqn}/transition_event", "lifecycle_msgs/msg/TransitionEvent")
    health = ros.subscribe(c.health, "std_msgs/msg/Bool")
    lc = cyclone.lifecycle_client(c.fqn)
    nodes.start(c)
    health.wait_for(lambda m: m.data is True, READY, "health=true after --autostart")
    assert lc.wait_ready(READY), f"lifecycle services of {c.fqn} not reachable from Python cyclonedds"
    # rclpy matched the transition_event writer before we act (else events could be lost)
    deadline = time.monotonic() + 10
    while events.sub.get_publisher_count() < 1:
        assert time.monotonic() < deadline, f"rclpy never matched {c.fqn}/transition_event"
        time.sleep(0.05)

    # Only what is written from each request on counts (the autostart's
    # events may still be arriving).
    steps = [
        ("deactivate", T.DEACTIVATE, T.ON_DEACTIVATE_SUCCESS, (S.ACTIVE, S.DEACTIVATING, S.INACTIVE), False, 3),
        ("activate", T.ACTIVATE, T.ON_ACTIVATE_SUCCESS, (S.INACTIVE, S.ACTIVATING, S.ACTIVE), True, 15),
    ]
    for label, transition, result, (start, middle, goal), healthy, health_bound in steps:
        t = time.time_ns()
        assert lc.change_state(transition, timeout=15) is True
        got = [event_tuple(events.wait_for(timeout=5, what=f"transition event {i + 1}/2 of {label}",
                                           written_after_ns=t).msg) for i in range(2)]
        assert got == [rcl_event(transition, start, middle), rcl_event(result, middle, goal)], got
        health.wait_for(lambda m: m.data is healthy, health_bound, f"health={healthy} after {label}",
                        written_after_ns=t)
    assert lc.get_state().id == S.ACTIVE


def wait_gone(ros, cs, timeout):
    """Seconds until each of ``cs`` has left rclpy's node list (AssertionError on timeout)."""
    t0 = time.monotonic()
    left = {}
    while True:
        names = ros.node_names()
        for c in cs:
            if c.key not in left and (c.name, c.namespace) not in names:
                left[c.key] = time.monotonic() - t0
        if len(left) == len(cs):
            return left
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"still in rclpy's node list {timeout} s later: "
                                 f"{[c.fqn for c in cs if c.key not in left]}; it sees {names}")
        time.sleep(0.05)


@pytest.mark.parametrize("c", NODES, ids=ids(NODES))
def test_sigterm_leaves_rclpys_node_list(c, ros, nodes):
    health = ros.subscribe(c.health, "std_msgs/msg/Bool")
    running = nodes.start(c)
    ros.wait_node(c, READY)
    # Active first: SIGTERM is handled once start-up (--autostart) is over (see README)
    health.wait_for(lambda m: m.data is True, READY, "health=true")
    running.proc.send_signal(signal.SIGTERM)
    took = wait_gone(ros, [c], SIGTERM_GONE)[c.key]
    assert running.proc.wait(10) == 0, "orderly shutdown should exit 0"
    print(f"SIGTERM of {c.fqn}: gone from rclpy's node list after {took:.2f} s")


def test_sigkill_leaves_rclpys_node_list(ros, nodes):
    """Every node at once (one lease period for all), each killed with SIGKILL."""
    started = [(c, nodes.start(c)) for c in NODES]
    for c, _ in started:
        ros.wait_node(c, READY)
    for _, r in started:
        r.proc.send_signal(signal.SIGKILL)
    took = wait_gone(ros, [c for c, _ in started], SIGKILL_GONE)
    for c, r in started:
        assert r.proc.wait(5) == -signal.SIGKILL
        print(f"SIGKILL of {c.fqn}: gone from rclpy's node list after {took[c.key]:.2f} s")


@pytest.mark.parametrize("c", SERVICE_NODES, ids=ids(SERVICE_NODES))
def test_sigkill_of_the_node_takes_its_daemon_along(c, ros, nodes):
    """After a SIGKILL of the node, with its shipped example config, no
    process of its work dir remains within a second: not the daemon, not
    its guard, not a helper, also where the daemon changes its own user
    (dnsmasq; Linux then clears a parent-death signal). Started again with
    the same command line (OpenRC's respawn), the node is healthy again:
    nothing held the daemon's ports."""
    health = ros.subscribe(c.health, "std_msgs/msg/Bool")
    running = nodes.start(c)
    health.wait_for(lambda m: m.data is True, READY, "health=true")
    daemons = [p for p in nodes.leftovers() if p != running.proc.pid]
    names = {p: open(f"/proc/{p}/comm").read().strip() for p in daemons}
    assert c.daemon in names.values(), f"no {c.daemon} among the node's processes: {names}"
    running.proc.send_signal(signal.SIGKILL)
    killed = time.monotonic()
    assert running.proc.wait(5) == -signal.SIGKILL

    def still_running():
        return {p: names[p] for p in nodes.leftovers() if p in names}

    while still_running():
        if time.monotonic() - killed > 1.0:
            raise AssertionError(f"1 s after kill -9 of {c.fqn} these still run: {still_running()}")
        time.sleep(0.02)
    print(f"kill -9 of {c.fqn}: {sorted(set(names.values()))} gone after {time.monotonic() - killed:.3f} s")

    # The respawn: the same command line again.
    health.mark()
    since = time.time_ns()
    again = nodes.launch(*running.proc.argv, name=f"{c.key}-respawned")
    health.wait_for(lambda m: m.data is True, READY, "health=true after the respawn", written_after_ns=since)
    assert not still_running(), f"the old daemon outlived the node's restart: {still_running()}"
    fresh = {p: open(f"/proc/{p}/comm").read().strip() for p in nodes.leftovers() if p != again.pid}
    assert c.daemon in fresh.values(), f"no new {c.daemon} after the respawn: {fresh}"
