"""Self-tests of the interop harness with Python-only peers.

Why: the example-node tests can only be as good as the harness.  These check,
without any Rust binary, that the harness (a) keeps DDS on loopback, (b) writes
XCDR1 like ROS 2, (c) decodes ``ros_discovery_info`` into nodes and topics,
(d) does service calls in rmw_cyclonedds' format (header, correlation,
clientid) and (e) can put arbitrary bytes on a request topic.
"""

import os
import re
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from conftest import LOOPBACK_URI, TRACE_CONFIG_FRAGMENT, assert_loopback_trace, udp_sockets_of
from rosgraph import (
    CDR_LE,
    XCDR2_LE,
    DiscoveryInfoPublisher,
    Graph,
    LifecycleClient,
    RawServiceSender,
    ServiceServer,
    Subscription,
    csid_to_string,
    raw_type,
    request_topic,
    user_data_value,
)
from ros_types import (
    S,
    Bool,
    ChangeState_Request,
    DiagnosticArray,
    DiagnosticStatus,
    KeyValue,
    State,
    String,
    TransitionEvent,
)


def test_env_points_at_loopback_config():
    assert os.environ["CYCLONEDDS_URI"] == LOOPBACK_URI
    assert os.path.isfile(LOOPBACK_URI[len("file://"):])


def test_loopback_only(domain_id, tmp_path):
    """A participant in a child process selects only lo, no multicast, and binds
    its transmit socket to 127.0.0.1 (receive sockets are ANY:<port>, which
    Cyclone hard-codes; nothing is sent from them)."""
    script = textwrap.dedent(f"""
        import os, sys, time
        sys.path.insert(0, {str(os.path.dirname(__file__))!r})
        from rosgraph import Graph
        g = Graph({domain_id})
        w = g.publisher("/probe", __import__("ros_types").Bool)
        time.sleep(0.3)
        print("READY", flush=True)
        sys.stdin.readline()
    """)
    env = dict(os.environ)
    env["CYCLONEDDS_URI"] = LOOPBACK_URI + "," + TRACE_CONFIG_FRAGMENT
    p = subprocess.Popen([sys.executable, "-c", script], env=env, stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = p.stdout.readline()
        assert line.strip() == "READY", p.stderr.read()
        sockets = udp_sockets_of(p.pid)
    finally:
        p.stdin.close()
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=10)
    assert_loopback_trace(p.stderr.read(), sockets)


def test_pubsub_xcdr1_on_the_wire(domain_id):
    """Writers put XCDR1 little-endian (00 01 00 00) on the wire, like rmw_cyclonedds."""
    with Graph(domain_id) as a, Graph(domain_id) as b:
        typed = b.subscribe("/ntari/test/flag", Bool)
        raw = b.subscribe("/ntari/test/flag", Bool, raw=True)
        text = b.subscribe("/ntari/test/text", String, raw=True)
        w = a.publisher("/ntari/test/flag", Bool)
        ws = a.publisher("/ntari/test/text", String)
        assert Graph.wait_matched(w, count=2) and Graph.wait_matched(ws)
        w.write(Bool(True))
        ws.write(String("hi"))
        assert typed.wait_for(lambda s: s.data is True, timeout=3).data is True
        r = raw.wait_for(timeout=3)
        assert r.data[:5] == CDR_LE + b"\x01"
        t = text.wait_for(timeout=3)
        # string: u32 length incl. NUL, bytes, NUL
        assert t.data[:11] == CDR_LE + (3).to_bytes(4, "little") + b"hi\x00"


def test_wait_for_times_out_quickly(graph):
    sub = graph.subscribe("/ntari/test/silent", Bool)
    t0 = time.monotonic()
    with pytest.raises(TimeoutError):
        sub.wait_for(timeout=0.3)
    assert time.monotonic() - t0 < 1.5


def test_wait_for_ignores_samples_scanned_before(domain_id):
    with Graph(domain_id) as a, Graph(domain_id) as b:
        sub = b.subscribe("/ntari/test/flag", Bool)
        w = a.publisher("/ntari/test/flag", Bool)
        assert Graph.wait_matched(w)
        w.write(Bool(True))
        sub.wait_for(lambda s: s.data, timeout=3)
        w.write(Bool(False))
        with pytest.raises(TimeoutError):
            sub.wait_for(lambda s: s.data, timeout=0.5)


def test_diagnostics_types_roundtrip(domain_id):
    with Graph(domain_id) as a, Graph(domain_id) as b:
        sub = b.subscribe("/diagnostics", DiagnosticArray)
        w = a.publisher("/diagnostics", DiagnosticArray)
        assert Graph.wait_matched(w)
        w.write(DiagnosticArray(status=[DiagnosticStatus(
            level=DiagnosticStatus.WARN, name="ntari: x", message="m", hardware_id="h",
            values=[KeyValue("k", "v")])]))
        got = sub.wait_for(timeout=3)
        assert got.status[0].level == DiagnosticStatus.WARN
        assert got.status[0].values[0].value == "v"


def test_nodes_from_ros_discovery_info(domain_id):
    """A Python peer posing as node /ntari/fake is listed with its topics, and
    disappears when it removes the node and when its participant leaves."""
    observer = Graph(domain_id)
    fake = Graph(domain_id)
    try:
        out = fake.publisher("/ntari/fake/out", Bool)
        inp = fake.reader("rt/ntari/fake/in", String)
        srv = ServiceServer(fake, "/ntari/fake/get_state", "lifecycle_msgs/srv/GetState",
                            lambda req: {"current_state": State(S.ACTIVE, "active")})
        info = DiscoveryInfoPublisher(fake)
        info.add_node("/ntari", "fake", readers=[inp, srv.reader], writers=[out, srv.writer])

        node = observer.wait_for_node("/ntari/fake", timeout=5)
        assert (node.namespace, node.name) == ("/ntari", "fake")
        assert node.participant_gid == fake.guid
        assert node.publishers == ["/ntari/fake/out"]
        assert node.subscribers == ["/ntari/fake/in"]
        assert node.service_servers == ["/ntari/fake/get_state"]
        assert {e.type_name for e in node.writers} == {
            "std_msgs::msg::dds_::Bool_", "lifecycle_msgs::srv::dds_::GetState_Response_"}
        sid = user_data_value(next(e for e in node.readers if e.topic.startswith("rq/")).user_data, "serviceid")
        assert sid == srv.serviceid

        info.remove_node("/ntari", "fake")
        assert observer.wait_node_gone("/ntari/fake", timeout=5)

        info.add_node("/ntari", "fake", writers=[out])
        observer.wait_for_node("/ntari/fake", timeout=5)
        fake.close()
        fake = None
        assert observer.wait_node_gone("/ntari/fake", timeout=5)
    finally:
        if fake is not None:
            fake.close()
        observer.close()


def test_clientid_rendering():
    guid = bytes([0x01, 0x10, 0xab, 0x05] + [0] * 8 + [0, 0, 0, 0x1c])
    assert csid_to_string(guid) == " 1.10.ab.5.0.0.0.0.0.0.0.0.0.0.0.1c"
    assert csid_to_string(bytes([0xfe] + [1] * 15)).startswith("fe.1.1")


def test_service_call_header_and_correlation(domain_id):
    """Two clients call a Python GetState server at once; each gets its own reply
    (matched on client_guid + sequence number); the header is echoed."""
    server_graph = Graph(domain_id)
    client_graph = Graph(domain_id)
    seen = []

    def handler(req):
        seen.append((req.client_guid, req.sequence_number))
        return {"current_state": State(S.INACTIVE, "inactive")}

    srv = ServiceServer(server_graph, "/ntari/fake/get_state", "lifecycle_msgs/srv/GetState", handler)
    stop = threading.Event()

    def spin():
        while not stop.is_set():
            srv.spin_once(0.05)

    t = threading.Thread(target=spin, daemon=True)
    t.start()
    try:
        c1 = client_graph.service_client("/ntari/fake/get_state", "lifecycle_msgs/srv/GetState")
        c2 = client_graph.service_client("/ntari/fake/get_state", "lifecycle_msgs/srv/GetState")
        assert c1.wait_for_service(5) and c2.wait_for_service(5)
        ud = c1.writer.get_qos()[__import__("cyclonedds.qos", fromlist=["Policy"]).Policy.Userdata].data
        assert re.fullmatch(rb"clientid=[ 0-9a-f][0-9a-f](\.[0-9a-f]{1,2}){15};", ud), ud
        s1 = c1.send()
        s2 = c2.send()
        s1b = c1.send()
        r2 = c2.wait_reply(s2, 3)
        r1b = c1.wait_reply(s1b, 3)
        r1 = c1.wait_reply(s1, 3)
        assert (r1.client_guid, r1.sequence_number) == (c1.client_guid, s1)
        assert (r1b.client_guid, r1b.sequence_number) == (c1.client_guid, s1b)
        assert (r2.client_guid, r2.sequence_number) == (c2.client_guid, s2)
        assert r1.current_state == State(S.INACTIVE, "inactive")
        assert c1.client_guid != c2.client_guid
        assert (c1.client_guid, s1) in seen and (c2.client_guid, s2) in seen
        # the other client's reply was seen by c1's reader and set aside
        assert any(r.client_guid == c2.client_guid for r in c1.foreign_replies)
        # LifecycleClient uses the same machinery
        lc = LifecycleClient(client_graph, "/ntari/fake")
        assert lc.get_state_srv.wait_for_service(5)
        assert lc.get_state() == State(S.INACTIVE, "inactive")
        with pytest.raises(TimeoutError):
            lc.change_state(label="configure", timeout=0.3)  # no such server
    finally:
        stop.set()
        t.join(5)
        client_graph.close()
        server_graph.close()


def test_raw_sender_bytes_arrive_verbatim(domain_id):
    """The raw sender delivers exactly the given bytes (any header, any size),
    and its XCDR2 writer really emits XCDR2.

    A Python reader only matches a raw writer through the same raw type (its
    type information differs from the real type's); the Rust nodes and
    rmw_cyclonedds announce no type information and match by type name."""
    svc = "/ntari/fake/change_state"
    tn = ChangeState_Request.__idl_typename__
    with Graph(domain_id) as server, \
            RawServiceSender(domain_id, svc, "lifecycle_msgs/srv/ChangeState") as raw:
        payloads = [
            CDR_LE + raw.header(1) + b"\x01\x00\x00\x00" + b"\xa5" * 7,   # garbage string length
            CDR_LE + raw.header(2)[:5],                                  # truncated header
            b"\xde\xad\xbe\xef\x00",                                      # not a CDR encapsulation
            XCDR2_LE + raw.header(3) + b"\x03\x00\x00\x00" + (1).to_bytes(4, "little") + b"\x00",
            CDR_LE + raw.header(4) + b"\x01\x00\x00\x00" + (1 << 20).to_bytes(4, "little") + b"a" * (1 << 20),
        ]
        for p in payloads:
            body = len(p) - 4
            sub = Subscription(server.reader(request_topic(svc), raw_type(tn, body)), raw=True, name=f"raw{body}")
            assert raw.send_bytes(p, match_timeout=5)
            got = sub.wait_for(timeout=5).data
            # Cyclone may pad serialised data to a multiple of 4 bytes
            assert got[:len(p)] == p and len(got) - len(p) < 4

    with Graph(domain_id) as server, \
            RawServiceSender(domain_id, svc, "lifecycle_msgs/srv/ChangeState", xcdr2=True) as raw2:
        reqs = Subscription(server.reader(request_topic(svc), ChangeState_Request), raw=True, name="typed")
        assert Graph.wait_matched(raw2.writer)
        raw2.send_sample(ChangeState_Request(client_guid=raw2.client_guid, sequence_number=9))
        x = reqs.wait_for(timeout=5).data
        assert x[:2] == b"\x00\x07" and x[4:12] == raw2.client_guid.to_bytes(8, "little")


def test_transition_event_type_layout():
    """TransitionEvent starts with uint64 timestamp (jazzy), not a Time struct."""
    ev = TransitionEvent(timestamp=0x0102030405060708)
    data = ev.serialize()
    assert data[:4] == CDR_LE
    assert data[4:12] == (0x0102030405060708).to_bytes(8, "little")
