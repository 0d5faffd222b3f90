"""Interop tests of ``ntari_example_node`` against the ROS 2 wire protocol.

Why: the example node is the reference for every NTARI service node.  These
tests drive it exactly as ``ros2 topic echo``, ``ros2 node list/info`` and
``ros2 lifecycle get/set`` would (through the Python stand-in in rosgraph.py)
and check the contract:

* node ``/ntari/ntari_example_node`` starts Unconfigured;
* ``/ntari/example/health`` (std_msgs/Bool, XCDR1) at 1 Hz and at once on every
  state change, true only while Active;
* the rcl lifecycle: services, transition events with rcl's ids and labels,
  failure / error paths (``--fail-on`` / ``--error-on``), ``--autostart``;
* bad input on the change_state request topic never kills or wedges it;
* SIGTERM / SIGINT -> orderly shutdown, exit code 0, gone from the graph.

The binary is ``$NTARI_BIN_DIR/examples/ntari_example_node``; the tests skip
when it is missing (unless ``NTARI_REQUIRE_BINARIES`` is set).
"""

import signal
import time
from types import SimpleNamespace

import pytest

from conftest import LOOPBACK_URI, TRACE_CONFIG_FRAGMENT, assert_loopback_trace, find_binary, udp_sockets_of
from rosgraph import CDR_LE, XCDR2_LE, RawServiceSender
from ros_types import (
    STATE_LABELS,
    TRANSITION_LABELS,
    Bool,
    ChangeState_Request,
    S,
    T,
    Transition,
)

NODE = "/ntari/ntari_example_node"
HEALTH = "/ntari/example/health"
LIFECYCLE_SERVICES = [f"{NODE}/{s}" for s in (
    "change_state", "get_available_states", "get_available_transitions", "get_state", "get_transition_graph")]

READY_TIMEOUT = 20.0       # process start + DDS discovery of a debug build
HEALTH_PERIOD_BOUND = 2.5  # 1 Hz publishing, with slack
ON_CHANGE_BOUND = 0.8      # "at once on change": well below the 1 s period

# Every transition of rcl's default state machine: id -> (start, goal).
RCL_TRANSITIONS = {
    T.CONFIGURE: (S.UNCONFIGURED, S.CONFIGURING),
    T.ON_CONFIGURE_SUCCESS: (S.CONFIGURING, S.INACTIVE),
    T.ON_CONFIGURE_FAILURE: (S.CONFIGURING, S.UNCONFIGURED),
    T.ON_CONFIGURE_ERROR: (S.CONFIGURING, S.ERRORPROCESSING),
    T.CLEANUP: (S.INACTIVE, S.CLEANINGUP),
    T.ON_CLEANUP_SUCCESS: (S.CLEANINGUP, S.UNCONFIGURED),
    T.ON_CLEANUP_FAILURE: (S.CLEANINGUP, S.INACTIVE),
    T.ON_CLEANUP_ERROR: (S.CLEANINGUP, S.ERRORPROCESSING),
    T.ACTIVATE: (S.INACTIVE, S.ACTIVATING),
    T.ON_ACTIVATE_SUCCESS: (S.ACTIVATING, S.ACTIVE),
    T.ON_ACTIVATE_FAILURE: (S.ACTIVATING, S.INACTIVE),
    T.ON_ACTIVATE_ERROR: (S.ACTIVATING, S.ERRORPROCESSING),
    T.DEACTIVATE: (S.ACTIVE, S.DEACTIVATING),
    T.ON_DEACTIVATE_SUCCESS: (S.DEACTIVATING, S.INACTIVE),
    T.ON_DEACTIVATE_FAILURE: (S.DEACTIVATING, S.ACTIVE),
    T.ON_DEACTIVATE_ERROR: (S.DEACTIVATING, S.ERRORPROCESSING),
    T.UNCONFIGURED_SHUTDOWN: (S.UNCONFIGURED, S.SHUTTINGDOWN),
    T.INACTIVE_SHUTDOWN: (S.INACTIVE, S.SHUTTINGDOWN),
    T.ACTIVE_SHUTDOWN: (S.ACTIVE, S.SHUTTINGDOWN),
    T.ON_SHUTDOWN_SUCCESS: (S.SHUTTINGDOWN, S.FINALIZED),
    T.ON_SHUTDOWN_FAILURE: (S.SHUTTINGDOWN, S.FINALIZED),
    T.ON_SHUTDOWN_ERROR: (S.SHUTTINGDOWN, S.ERRORPROCESSING),
    T.ON_ERROR_SUCCESS: (S.ERRORPROCESSING, S.UNCONFIGURED),
    T.ON_ERROR_FAILURE: (S.ERRORPROCESSING, S.FINALIZED),
    T.ON_ERROR_ERROR: (S.ERRORPROCESSING, S.FINALIZED),
}


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------

@pytest.fixture
def example_bin():
    return find_binary("examples/ntari_example_node")


@pytest.fixture
def start_node(example_bin, launch, graph):
    """``start_node(*args)``: launch the example and wait until its lifecycle
    services answer.  The health and transition_event subscriptions exist
    before the process starts, so nothing it publishes is missed."""

    def _start(*args, wait_ready: bool = True):
        health = graph.subscribe(HEALTH, Bool)
        lc = graph.lifecycle_client(NODE)
        proc = launch(example_bin, *args, name="example")
        if wait_ready:
            assert lc.wait_ready(READY_TIMEOUT), "lifecycle services of the example never became available"
            assert proc.alive()
        return SimpleNamespace(proc=proc, lc=lc, health=health)

    return _start


def ev(event):
    """A transition event as a comparable tuple (transition id, label, start, goal)."""
    return (event.transition.id, event.transition.label, event.start_state.id, event.goal_state.id)


def rcl_event(transition_id):
    start, goal = RCL_TRANSITIONS[transition_id]
    return (transition_id, TRANSITION_LABELS[transition_id], start, goal)


def assert_state(lc, state_id):
    st = lc.get_state()
    assert (st.id, st.label) == (state_id, STATE_LABELS[state_id])


def expect_events(lc, transition_ids, timeout=5.0):
    """The next transition events are exactly rcl's for ``transition_ids``, in order."""
    got = [ev(e) for e in lc.wait_events(len(transition_ids), timeout)]
    assert got == [rcl_event(t) for t in transition_ids]
    return got


def no_more_events(lc, window=0.3):
    extra = lc.events.collect(window)
    assert extra == [], [ev(e) for e in extra]


def health_now(node, value, bound=ON_CHANGE_BOUND):
    """A health sample with ``value`` arrives within ``bound`` seconds."""
    node.health.wait_for(lambda s: s.data is value, timeout=bound, what=f"health={value}")


# ---------------------------------------------------------------------------
# topics and graph
# ---------------------------------------------------------------------------

def test_starts_unconfigured_with_health_false(start_node):
    node = start_node()
    assert_state(node.lc, S.UNCONFIGURED)
    node.health.wait_for(lambda s: s.data is False, timeout=HEALTH_PERIOD_BOUND, what="health=false")
    seen = node.health.collect(2.2)
    assert len(seen) >= 2, "health is not published at about 1 Hz"
    assert all(s.data is False for s in node.health.history)


def test_health_is_xcdr1_bool_at_1hz(start_node, graph):
    raw = graph.subscribe(HEALTH, Bool, raw=True)
    node = start_node()
    raw.wait_for(timeout=HEALTH_PERIOD_BOUND)
    samples = raw.collect(3.2)
    assert 2 <= len(samples) <= 5, f"{len(samples)} samples in 3.2 s"
    for s in raw.history:
        assert s.encapsulation == CDR_LE, s.data
        assert s.data[4] == 0  # false while Unconfigured
    assert node.proc.alive()


def test_discovery_info_lists_node_and_endpoints(start_node, graph):
    start_node()
    wanted_pubs = {HEALTH, f"{NODE}/transition_event"}

    def complete(n):
        return (n.unresolved == 0 and wanted_pubs <= set(n.publishers)
                and set(LIFECYCLE_SERVICES) <= set(n.service_servers))

    node = graph.wait_for_node(NODE, complete, timeout=10)
    assert (node.namespace, node.name) == ("/ntari", "ntari_example_node")
    types = {e.topic: e.type_name for e in node.writers}
    assert types[f"rt{HEALTH}"] == "std_msgs::msg::dds_::Bool_"
    assert types[f"rt{NODE}/transition_event"] == "lifecycle_msgs::msg::dds_::TransitionEvent_"
    assert types[f"rr{NODE}/change_stateReply"] == "lifecycle_msgs::srv::dds_::ChangeState_Response_"
    rtypes = {e.topic: e.type_name for e in node.readers}
    assert rtypes[f"rq{NODE}/get_stateRequest"] == "lifecycle_msgs::srv::dds_::GetState_Request_"
    assert rtypes[f"rq{NODE}/get_transition_graphRequest"] == \
        "lifecycle_msgs::srv::dds_::GetAvailableTransitions_Request_"
    # request readers and reply writers carry serviceid= user data, in pairs
    for svc in LIFECYCLE_SERVICES:
        rd = next(e for e in node.readers if e.topic == f"rq{svc}Request")
        wr = next(e for e in node.writers if e.topic == f"rr{svc}Reply")
        sid = [x for x in rd.user_data.decode().split(";") if x.startswith("serviceid=")]
        assert sid and sid[0] in wr.user_data.decode(), (rd.user_data, wr.user_data)
    # the node's participant says enclave=/;
    part = graph._alive("participant")[node.participant_gid]
    from cyclonedds.qos import Policy
    assert part.qos[Policy.Userdata].data.startswith(b"enclave=/;")


# ---------------------------------------------------------------------------
# lifecycle
# ---------------------------------------------------------------------------

def test_full_cycle_with_transition_events(start_node):
    node = start_node()
    lc = node.lc
    assert_state(lc, S.UNCONFIGURED)

    assert lc.change_state(T.CONFIGURE) is True
    expect_events(lc, [T.CONFIGURE, T.ON_CONFIGURE_SUCCESS])
    assert_state(lc, S.INACTIVE)

    node.health.skip()
    assert lc.change_state(T.ACTIVATE) is True
    health_now(node, True)
    expect_events(lc, [T.ACTIVATE, T.ON_ACTIVATE_SUCCESS])
    assert_state(lc, S.ACTIVE)
    node.health.wait_for(lambda s: s.data is True, timeout=HEALTH_PERIOD_BOUND, what="periodic health=true")

    node.health.skip()
    assert lc.change_state(T.DEACTIVATE) is True
    health_now(node, False)
    expect_events(lc, [T.DEACTIVATE, T.ON_DEACTIVATE_SUCCESS])
    assert_state(lc, S.INACTIVE)

    assert lc.change_state(T.CLEANUP) is True
    expect_events(lc, [T.CLEANUP, T.ON_CLEANUP_SUCCESS])
    assert_state(lc, S.UNCONFIGURED)

    assert lc.change_state(T.UNCONFIGURED_SHUTDOWN) is True
    expect_events(lc, [T.UNCONFIGURED_SHUTDOWN, T.ON_SHUTDOWN_SUCCESS])
    assert_state(lc, S.FINALIZED)
    no_more_events(lc)

    stamps = [e.timestamp for e in lc.events.history]
    assert all(s > 0 for s in stamps) and stamps == sorted(stamps)
    assert all(s.data is False for s in node.health.collect(0.1))


def test_change_state_by_label_only(start_node):
    """rclcpp looks the label up from the current state when one is given (id 0)."""
    node = start_node()
    lc = node.lc
    assert lc.change_state(label="configure") is True
    expect_events(lc, [T.CONFIGURE, T.ON_CONFIGURE_SUCCESS])
    assert lc.change_state(label="activate") is True
    expect_events(lc, [T.ACTIVATE, T.ON_ACTIVATE_SUCCESS])
    assert_state(lc, S.ACTIVE)
    health_now(node, True, HEALTH_PERIOD_BOUND)
    node.health.skip()
    assert lc.change_state(label="shutdown") is True     # from Active: transition 7
    expect_events(lc, [T.ACTIVE_SHUTDOWN, T.ON_SHUTDOWN_SUCCESS])
    assert_state(lc, S.FINALIZED)
    health_now(node, False)


def test_available_transitions_per_state(start_node):
    lc = start_node().lc

    def transitions():
        return sorted((d.transition.id, d.transition.label, d.start_state.id, d.goal_state.id)
                      for d in lc.available_transitions())

    assert transitions() == [rcl_event(T.CONFIGURE), rcl_event(T.UNCONFIGURED_SHUTDOWN)]
    assert lc.change_state(T.CONFIGURE)
    assert transitions() == [rcl_event(T.CLEANUP), rcl_event(T.ACTIVATE), rcl_event(T.INACTIVE_SHUTDOWN)]
    assert lc.change_state(T.ACTIVATE)
    assert transitions() == [rcl_event(T.DEACTIVATE), rcl_event(T.ACTIVE_SHUTDOWN)]
    for d in lc.available_transitions():
        assert d.start_state.label == STATE_LABELS[d.start_state.id]
        assert d.goal_state.label == STATE_LABELS[d.goal_state.id]


def test_available_states_and_transition_graph(start_node):
    lc = start_node().lc
    states = sorted((s.id, s.label) for s in lc.available_states())
    assert states == sorted(STATE_LABELS.items())
    graph_ = sorted((d.transition.id, d.transition.label, d.start_state.id, d.goal_state.id)
                    for d in lc.transition_graph())
    assert graph_ == sorted(rcl_event(t) for t in RCL_TRANSITIONS)


@pytest.mark.parametrize("request_", [
    pytest.param(dict(id=T.ACTIVATE), id="activate-from-unconfigured"),
    pytest.param(dict(id=T.DEACTIVATE), id="deactivate-from-unconfigured"),
    pytest.param(dict(id=T.CLEANUP), id="cleanup-from-unconfigured"),
    pytest.param(dict(id=T.INACTIVE_SHUTDOWN), id="inactive-shutdown-from-unconfigured"),
    pytest.param(dict(id=T.ON_CONFIGURE_SUCCESS), id="private-result-transition"),
    pytest.param(dict(id=77), id="unknown-id-77"),
    pytest.param(dict(id=0), id="create-id-0"),
    pytest.param(dict(label="activate"), id="label-not-available"),
    pytest.param(dict(label="bogus"), id="unknown-label"),
])
def test_invalid_transition_is_refused(start_node, request_):
    node = start_node()
    lc = node.lc
    assert lc.change_state(**request_) is False
    assert_state(lc, S.UNCONFIGURED)
    no_more_events(lc)
    assert node.proc.alive()


FAILURE_CASES = [
    # (flag, callback, transitions to get there, transition to trigger, events, final state)
    ("--fail-on", "configure", [], T.CONFIGURE,
     [T.CONFIGURE, T.ON_CONFIGURE_FAILURE], S.UNCONFIGURED),
    ("--error-on", "configure", [], T.CONFIGURE,
     [T.CONFIGURE, T.ON_CONFIGURE_ERROR, T.ON_ERROR_SUCCESS], S.UNCONFIGURED),
    ("--fail-on", "activate", [T.CONFIGURE], T.ACTIVATE,
     [T.ACTIVATE, T.ON_ACTIVATE_FAILURE], S.INACTIVE),
    ("--error-on", "activate", [T.CONFIGURE], T.ACTIVATE,
     [T.ACTIVATE, T.ON_ACTIVATE_ERROR, T.ON_ERROR_SUCCESS], S.UNCONFIGURED),
    ("--fail-on", "deactivate", [T.CONFIGURE, T.ACTIVATE], T.DEACTIVATE,
     [T.DEACTIVATE, T.ON_DEACTIVATE_FAILURE], S.ACTIVE),
    ("--error-on", "deactivate", [T.CONFIGURE, T.ACTIVATE], T.DEACTIVATE,
     [T.DEACTIVATE, T.ON_DEACTIVATE_ERROR, T.ON_ERROR_SUCCESS], S.UNCONFIGURED),
    ("--fail-on", "cleanup", [T.CONFIGURE], T.CLEANUP,
     [T.CLEANUP, T.ON_CLEANUP_FAILURE], S.INACTIVE),
    ("--error-on", "cleanup", [T.CONFIGURE], T.CLEANUP,
     [T.CLEANUP, T.ON_CLEANUP_ERROR, T.ON_ERROR_SUCCESS], S.UNCONFIGURED),
    ("--fail-on", "shutdown", [], T.UNCONFIGURED_SHUTDOWN,
     [T.UNCONFIGURED_SHUTDOWN, T.ON_SHUTDOWN_FAILURE], S.FINALIZED),
    ("--error-on", "shutdown", [], T.UNCONFIGURED_SHUTDOWN,
     [T.UNCONFIGURED_SHUTDOWN, T.ON_SHUTDOWN_ERROR, T.ON_ERROR_SUCCESS], S.UNCONFIGURED),
    ("--error-on", "shutdown", [T.CONFIGURE, T.ACTIVATE], T.ACTIVE_SHUTDOWN,
     [T.ACTIVE_SHUTDOWN, T.ON_SHUTDOWN_ERROR, T.ON_ERROR_SUCCESS], S.UNCONFIGURED),
]


@pytest.mark.parametrize("flag,callback,setup,trigger,events,final", FAILURE_CASES,
                         ids=[f"{c[0][2:]}-{c[1]}-{c[3]}" for c in FAILURE_CASES])
def test_callback_failure_and_error_paths(start_node, flag, callback, setup, trigger, events, final):
    """A FAILURE result takes rcl's *_failure transition; an ERROR goes through
    ErrorProcessing, whose on_error succeeds, to Unconfigured.  change_state
    answers success=false in both cases (rclcpp: success iff callback SUCCESS)."""
    node = start_node(flag, callback)
    lc = node.lc
    for t in setup:
        assert lc.change_state(t) is True
    lc.events.skip()
    assert lc.change_state(trigger) is False
    expect_events(lc, events)
    assert_state(lc, final)
    no_more_events(lc)
    expected_health = final == S.ACTIVE
    node.health.skip()
    node.health.wait_for(lambda s: True, timeout=HEALTH_PERIOD_BOUND, what="health after the transition")
    assert node.health.history[-1].data is expected_health
    assert node.proc.alive()


def test_autostart_reaches_active(start_node):
    t0 = time.monotonic()
    node = start_node("--autostart", wait_ready=False)
    node.health.wait_for(lambda s: s.data is True, timeout=READY_TIMEOUT, what="health=true")
    startup = time.monotonic() - t0
    assert node.lc.wait_ready(READY_TIMEOUT)
    assert_state(node.lc, S.ACTIVE)
    assert [(d.transition.id) for d in node.lc.available_transitions()] in ([4, 7], [7, 4])
    print(f"start -> health=true with --autostart: {startup * 1000:.0f} ms (includes discovery)")


# ---------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------

def _le32(n):
    return n.to_bytes(4, "little")


def _transition_body(tid, label):
    """CDR of lifecycle_msgs/Transition after the 16-byte header (offset 16: no padding)."""
    raw = label.encode() + b"\x00"
    return bytes([tid]) + b"\x00" * 3 + _le32(len(raw)) + raw


BAD_INPUTS = {
    # header fine, then a string length far beyond the payload
    "garbage": lambda h: CDR_LE + h + bytes([1, 0xA5, 0xA5, 0xA5]) + _le32(0xA5A5A5A5) + b"\xa5" * 23,
    # random-looking bytes, no structure at all
    "noise": lambda h: CDR_LE + bytes((i * 37 + 11) & 0xFF for i in range(61)),
    # only part of the request header
    "truncated-header": lambda h: CDR_LE + h[:6],
    # header, transition id, then nothing
    "truncated-body": lambda h: CDR_LE + h + b"\x03",
    # ~1 MiB label: well-formed, but no such transition
    "oversized": lambda h: CDR_LE + h + _transition_body(0, "x" * (1 << 20)),
    # XCDR2 encapsulation (ROS 2 never sends it); 'activate' is invalid from Unconfigured anyway
    "xcdr2-header": lambda h: XCDR2_LE + h + _transition_body(T.ACTIVATE, ""),
    # big-endian CDR of a request that would be invalid anyway. The Python writer's
    # Cyclone normalises the payload to its native (little-endian) header on the way
    # out, so the node sees garbage here; real BE decoding is unit-tested in graph::wire.
    "big-endian": lambda h: b"\x00\x00\x00\x00" + h[:8][::-1] + h[8:][::-1] + bytes([T.ACTIVATE]) + b"\x00" * 3
                            + (1).to_bytes(4, "big") + b"\x00",
    # not an encapsulation identifier at all
    "bad-encapsulation": lambda h: b"\x7f\x7f\x00\x00" + h + _transition_body(T.CONFIGURE, ""),
    # well-formed request for a transition id that does not exist
    "unknown-id-77": lambda h: CDR_LE + h + _transition_body(77, ""),
}


@pytest.mark.parametrize("kind", list(BAD_INPUTS))
def test_bad_change_state_input_is_survived(start_node, domain_id, kind):
    """Whatever arrives on rq/<node>/change_stateRequest, the node answers with
    success=false or not at all, stays Unconfigured, keeps answering get_state
    and keeps publishing health."""
    node = start_node()
    with RawServiceSender(domain_id, f"{NODE}/change_state", "lifecycle_msgs/srv/ChangeState") as raw:
        seq = 41
        assert raw.send_bytes(BAD_INPUTS[kind](raw.header(seq)), match_timeout=10), \
            "the node's change_state request reader never matched the raw writer"
        replies = raw.replies_for(seq, window=1.0)
        assert all(r.success is False for r in replies), replies
        assert len(replies) <= 1
    _assert_still_healthy(node)


def test_xcdr2_writer_is_refused_or_answered_false(start_node, domain_id):
    """A typed XCDR2 request writer: the node either does not match it (it only
    accepts XCDR1) or refuses the request; either way it carries on."""
    node = start_node()
    with RawServiceSender(domain_id, f"{NODE}/change_state", "lifecycle_msgs/srv/ChangeState", xcdr2=True) as raw:
        matched = raw.wait_matched(3.0)
        raw.send_sample(ChangeState_Request(client_guid=raw.client_guid, sequence_number=5,
                                            transition=Transition(T.ACTIVATE, "")))
        replies = raw.replies_for(5, window=1.0 if matched else 0.3)
        assert all(r.success is False for r in replies), replies
    _assert_still_healthy(node)


def test_burst_of_bad_input_then_normal_operation(start_node, domain_id):
    node = start_node()
    with RawServiceSender(domain_id, f"{NODE}/change_state", "lifecycle_msgs/srv/ChangeState") as raw:
        for i, make in enumerate(list(BAD_INPUTS.values()) * 3):
            assert raw.send_bytes(make(raw.header(100 + i)), match_timeout=10)
    _assert_still_healthy(node)
    assert node.lc.change_state(T.CONFIGURE) is True
    assert node.lc.change_state(T.ACTIVATE) is True
    health_now(node, True, HEALTH_PERIOD_BOUND)


def _assert_still_healthy(node):
    assert node.proc.alive(), "the node died"
    assert_state(node.lc, S.UNCONFIGURED)
    node.health.skip()
    node.health.wait_for(lambda s: s.data is False, timeout=HEALTH_PERIOD_BOUND, what="health still flowing")


# ---------------------------------------------------------------------------
# shutdown by signal
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_orderly_exit(start_node, graph, sig):
    node = start_node("--autostart")
    graph.wait_for_node(NODE, timeout=10)
    node.health.wait_for(lambda s: s.data is True, timeout=READY_TIMEOUT, what="health=true")
    node.health.skip()
    node.proc.send_signal(sig)
    code = node.proc.wait(10)
    assert code == 0, f"exit code {code}"
    node.health.wait_for(lambda s: s.data is False, timeout=2, what="last health=false")
    assert graph.wait_node_gone(NODE, timeout=10), "node still listed in ros_discovery_info"


def test_sigterm_while_unconfigured(start_node, graph):
    node = start_node()
    graph.wait_for_node(NODE, timeout=10)
    node.proc.send_signal(signal.SIGTERM)
    assert node.proc.wait(10) == 0
    assert graph.wait_node_gone(NODE, timeout=10)


# ---------------------------------------------------------------------------
# workplace rule: DDS on loopback only
# ---------------------------------------------------------------------------

def test_node_uses_loopback_only(example_bin, launch, graph):
    """With the test configuration the node's Cyclone selects only lo, uses no
    multicast and only 127.0.0.1 peers; its sockets are 127.0.0.1 or ANY:<port>."""
    lc = graph.lifecycle_client(NODE)
    proc = launch(example_bin, name="example-traced",
                  env={"CYCLONEDDS_URI": LOOPBACK_URI + "," + TRACE_CONFIG_FRAGMENT})
    assert lc.wait_ready(READY_TIMEOUT)
    sockets = udp_sockets_of(proc.pid)
    assert proc.stop() == 0
    assert_loopback_trace(proc.stderr_path.read_text(errors="replace"), sockets)
