"""A small ROS 2 graph client on plain Cyclone DDS: the test stand-in for ``ros2``.

Nothing here can run ROS 2, so the interop tests use Python ``cyclonedds``
(11.0.1) and speak the rmw_cyclonedds_cpp (Jazzy) wire protocol directly,
just like our Rust nodes do.  What this module reproduces:

* ``ros2 topic echo``      -> :meth:`Graph.subscribe` (topic ``/a/b`` is DDS
  topic ``rt/a/b``; default QoS reliable, volatile, keep-last 10).
* ``ros2 node list/info``  -> :meth:`Graph.nodes`: decodes ``ros_discovery_info``
  (rmw_dds_common ParticipantEntitiesInfo) and maps each endpoint gid to its
  topic through Cyclone's built-in DCPSPublication/DCPSSubscription topics
  (their key is the endpoint GUID, which is the gid).
* ``ros2 service call``    -> :class:`ServiceClient` (``rq/<svc>Request`` /
  ``rr/<svc>Reply``, 16-byte request header, ``clientid=`` user data).
* ``ros2 lifecycle get/set/list`` -> :class:`LifecycleClient`.
* bad input                -> :class:`RawServiceSender` writes arbitrary bytes on
  a request topic (garbage, truncated, oversized, XCDR2-encapsulated).

XCDR1 — how it is selected in Python: ``DataWriter`` serialises with the
representation its DataRepresentation QoS names.  Every writer made here gets
``Policy.DataRepresentation(use_cdrv0_representation=True)`` (id 0 = XCDR1),
so the writer's ``_use_version_2`` is False and each sample starts with the
encapsulation ``00 01 00 00`` (CDR_LE).  Without the policy the binding falls
back to the type's native representation, which is also XCDR1 for our final,
keyless, non-optional structs — the explicit policy makes it independent of
that heuristic and advertises XCDR1 in discovery, as rmw_cyclonedds does.
``use_xcdrv2_representation=True`` selects XCDR2 (header ``00 07 00 00``); the
raw sender offers that for the bad-input tests.  Readers accept both.

All waits are bounded; the timeouts are parameters with small defaults.
Every participant uses the loopback-only Cyclone configuration
(tests/cyclonedds-loopback.xml) unless CYCLONEDDS_URI was set explicitly.
"""

from __future__ import annotations

import itertools
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple, Type

LOOPBACK_CONFIG = Path(__file__).resolve().parent.parent / "cyclonedds-loopback.xml"
LOOPBACK_URI = "file://" + str(LOOPBACK_CONFIG)

# Must happen before the first participant of a domain is created: Cyclone
# reads CYCLONEDDS_URI when it instantiates a domain.
os.environ.setdefault("CYCLONEDDS_URI", LOOPBACK_URI)

from cyclonedds._clayer import ddspy_take, ddspy_write  # noqa: E402  (raw byte access)
from cyclonedds.builtin import (  # noqa: E402
    BuiltinDataReader,
    BuiltinTopicDcpsParticipant,
    BuiltinTopicDcpsPublication,
    BuiltinTopicDcpsSubscription,
)
from cyclonedds.core import InstanceState, ReadCondition, SampleState, ViewState, WaitSet  # noqa: E402
from cyclonedds.domain import DomainParticipant  # noqa: E402
from cyclonedds.pub import DataWriter  # noqa: E402
from cyclonedds.qos import Policy, Qos  # noqa: E402
from cyclonedds.sub import DataReader  # noqa: E402
from cyclonedds.topic import Topic  # noqa: E402
from cyclonedds.util import duration  # noqa: E402
from cyclonedds.idl import make_idl_struct  # noqa: E402
from cyclonedds.idl.types import array, uint8  # noqa: E402

from ros_types import (  # noqa: E402
    SERVICE_TYPES,
    Gid,
    ListParametersResult,
    NodeEntitiesInfo,
    Parameter,
    ParameterDescriptor,
    ParameterEvent,
    ParameterValue,
    ParticipantEntitiesInfo,
    SetParametersResult,
    State,
    Transition,
    TransitionDescription,
    TransitionEvent,
)

__all__ = [
    "LOOPBACK_CONFIG", "LOOPBACK_URI", "CDR_LE", "XCDR2_LE",
    "ros_qos", "DEFAULT_QOS", "DISCOVERY_QOS", "XCDR1", "XCDR2",
    "topic_name", "request_topic", "reply_topic", "csid_to_string",
    "Graph", "Subscription", "RawSample", "NodeInfo", "Endpoint",
    "ServiceClient", "ServiceServer", "LifecycleClient", "ParameterClient", "RawServiceSender", "raw_type",
    "DiscoveryInfoPublisher", "user_data_value",
]

CDR_LE = b"\x00\x01\x00\x00"    # XCDR1 (plain CDR), little endian: what ROS 2 sends
XCDR2_LE = b"\x00\x07\x00\x00"  # XCDR2 plain, little endian

_ANY_STATE = SampleState.Any | ViewState.Any | InstanceState.Any

XCDR1 = Policy.DataRepresentation(use_cdrv0_representation=True)
XCDR2 = Policy.DataRepresentation(use_xcdrv2_representation=True)
_READER_REPR = Policy.DataRepresentation(use_cdrv0_representation=True, use_xcdrv2_representation=True)


def ros_qos(depth: int = 10, *, reliable: bool = True, transient_local: bool = False,
            keep_all: bool = False) -> Qos:
    """A ROS-style QoS profile (rmw_cyclonedds create_readwrite_qos, minus user data)."""
    return Qos(
        Policy.Reliability.Reliable(duration(milliseconds=100)) if reliable else Policy.Reliability.BestEffort,
        Policy.Durability.TransientLocal if transient_local else Policy.Durability.Volatile,
        Policy.History.KeepAll if keep_all else Policy.History.KeepLast(depth),
    )


DEFAULT_QOS = ros_qos(10)                          # rmw_qos_profile_default / services default
DISCOVERY_QOS = ros_qos(1, transient_local=True)   # ros_discovery_info


def topic_name(ros_name: str) -> str:
    """ROS topic ``/a/b`` -> DDS topic ``rt/a/b``."""
    assert ros_name.startswith("/"), ros_name
    return "rt" + ros_name


def request_topic(service: str) -> str:
    """ROS service ``/x/y`` -> DDS request topic ``rq/x/yRequest``."""
    assert service.startswith("/"), service
    return "rq" + service + "Request"


def reply_topic(service: str) -> str:
    """ROS service ``/x/y`` -> DDS reply topic ``rr/x/yReply``."""
    assert service.startswith("/"), service
    return "rr" + service + "Reply"


def csid_to_string(csid: bytes) -> str:
    """Render a 16-byte client/service id exactly like rmw_cyclonedds' csid_to_string.

    C++ does ``os << std::hex << std::setw(2) << data[0]`` and then
    ``"." << data[i]`` for the rest: the first byte is right-aligned in a
    2-character field padded with a *space* (Cyclone GUIDs start with 0x01,
    so it renders as `` 1``), the others are unpadded lower-case hex.
    zenoh-plugin-ros2dds reproduces it as ``clientid= 1.10.…;`` too.
    """
    assert len(csid) == 16
    return f"{csid[0]:2x}" + "".join(f".{b:x}" for b in csid[1:])


def _user_data(qos: Optional[Qos]) -> bytes:
    if qos is None:
        return b""
    ud = qos[Policy.Userdata]
    return bytes(ud.data) if ud is not None else b""


def user_data_value(raw: bytes, key: str) -> Optional[str]:
    """Value of ``key`` in a ``k=v;k2=v2;`` user-data string (rmw's format), or None."""
    for part in raw.decode("utf-8", "replace").split(";"):
        k, sep, v = part.partition("=")
        if sep and k == key:
            return v
    return None


def _delete(entity) -> None:
    """Delete a cyclonedds entity now (and its children), not at garbage collection."""
    try:
        entity.__del__()
    except Exception:  # already gone
        pass


def _wait_readable(reader: DataReader, deadline: float) -> bool:
    """Block until ``reader`` has unread samples or ``deadline`` (monotonic) passes.

    Uses a WaitSet on a NotRead ReadCondition (cached on the reader), so waits
    wake up as soon as data arrives instead of sleeping in a poll loop."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        return False
    ws = getattr(reader, "_rosgraph_waitset", None)
    if ws is None:
        ws = WaitSet(reader.participant)
        cond = ReadCondition(reader, SampleState.NotRead | ViewState.Any | InstanceState.Any)
        ws.attach(cond)
        reader._rosgraph_waitset = ws
        reader._rosgraph_cond = cond
    return ws.wait(duration(seconds=remaining)) > 0


def _poll_until(check: Callable[[], Any], timeout: float, interval: float = 0.02) -> Any:
    """Call ``check`` until it returns something truthy or ``timeout`` passes; return last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(min(interval, max(0.0, deadline - time.monotonic())))


# ---------------------------------------------------------------------------
# Subscriptions
# ---------------------------------------------------------------------------

@dataclass
class RawSample:
    """One received sample as bytes on the wire (encapsulation header included)."""
    data: bytes
    info: Any

    @property
    def encapsulation(self) -> bytes:
        return self.data[:4]


class Subscription:
    """A DataReader plus everything it has received so far.

    ``history`` keeps every sample taken from the reader.  :meth:`wait_for`
    scans samples the previous waits have not looked at yet, so a stale match
    from before an action cannot satisfy a wait that follows it.
    """

    def __init__(self, reader: DataReader, raw: bool = False, name: str = ""):
        self.reader = reader
        self.raw = raw
        self.name = name
        self.history: List[Any] = []
        self._cursor = 0

    def poll(self) -> List[Any]:
        """Take everything available now (non-blocking); return the new samples."""
        new: List[Any] = []
        while True:
            if self.raw:
                got = ddspy_take(self.reader._ref, _ANY_STATE, 256)
                if isinstance(got, int):
                    raise RuntimeError(f"take failed on {self.name}: {got}")
                batch = [RawSample(bytes(d), i) for d, i in got if i.valid_data]
                count = len(got)
            else:
                got = self.reader.take(N=256)
                batch = [s for s in got if getattr(s.sample_info, "valid_data", False)]
                count = len(got)
            new.extend(batch)
            if count < 256:
                break
        self.history.extend(new)
        return new

    def skip(self) -> None:
        """Forget pending samples: later waits only consider samples taken after this."""
        self.poll()
        self._cursor = len(self.history)

    def wait_for(self, predicate: Callable[[Any], bool] = lambda s: True,
                 timeout: float = 5.0, what: str = "") -> Any:
        """Return the first not-yet-scanned sample matching ``predicate``.

        Raises ``TimeoutError`` (listing what was seen) if none arrives in time.
        """
        deadline = time.monotonic() + timeout
        while True:
            self.poll()
            while self._cursor < len(self.history):
                sample = self.history[self._cursor]
                self._cursor += 1
                if predicate(sample):
                    return sample
            if not _wait_readable(self.reader, deadline) and time.monotonic() >= deadline:
                self.poll()
                tail = self.history[-5:]
                raise TimeoutError(
                    f"no {what or 'matching sample'} on {self.name} within {timeout:.1f}s; "
                    f"{len(self.history)} samples seen, last: {tail!r}")

    def collect(self, window: float) -> List[Any]:
        """Everything that arrives during the next ``window`` seconds (not yet scanned ones too)."""
        deadline = time.monotonic() + window
        while _wait_readable(self.reader, deadline) or time.monotonic() < deadline:
            self.poll()
        self.poll()
        out = self.history[self._cursor:]
        self._cursor = len(self.history)
        return out


# ---------------------------------------------------------------------------
# Graph: one participant, the ros2 CLI's view of a domain
# ---------------------------------------------------------------------------

@dataclass
class Endpoint:
    """A DDS reader or writer as seen through the built-in topics."""
    gid: bytes
    topic: Optional[str] = None      # DDS topic name (None: not discovered yet)
    type_name: Optional[str] = None
    user_data: bytes = b""


@dataclass
class NodeInfo:
    """One ROS node from ``ros_discovery_info`` with its endpoints resolved."""
    namespace: str
    name: str
    participant_gid: bytes
    readers: List[Endpoint] = field(default_factory=list)
    writers: List[Endpoint] = field(default_factory=list)

    @property
    def fqn(self) -> str:
        return (self.namespace.rstrip("/") + "/" + self.name) if self.namespace != "/" else "/" + self.name

    @property
    def unresolved(self) -> int:
        return sum(1 for e in self.readers + self.writers if e.topic is None)

    def _names(self, endpoints: Iterable[Endpoint], prefix: str, suffix: str = "") -> List[str]:
        out = []
        for e in endpoints:
            t = e.topic or ""
            if t.startswith(prefix) and t.endswith(suffix):
                out.append(t[len(prefix) - 1:len(t) - len(suffix)] if suffix else t[len(prefix) - 1:])
        return sorted(set(out))

    @property
    def publishers(self) -> List[str]:
        """ROS topic names this node publishes (``ros2 node info`` "Publishers")."""
        return self._names(self.writers, "rt/")

    @property
    def subscribers(self) -> List[str]:
        return self._names(self.readers, "rt/")

    @property
    def service_servers(self) -> List[str]:
        """Services with a request reader *and* a reply writer on this node."""
        req = set(self._names(self.readers, "rq/", "Request"))
        rep = set(self._names(self.writers, "rr/", "Reply"))
        return sorted(req & rep)

    @property
    def service_clients(self) -> List[str]:
        req = set(self._names(self.writers, "rq/", "Request"))
        rep = set(self._names(self.readers, "rr/", "Reply"))
        return sorted(req & rep)


class Graph:
    """One DDS participant on ``domain_id`` with participant user data ``enclave=/;``.

    Use as a context manager, or call :meth:`close`.
    """

    def __init__(self, domain_id: int, enclave: str = "/"):
        self.domain_id = domain_id
        self.participant = DomainParticipant(
            domain_id, qos=Qos(Policy.Userdata(f"enclave={enclave};".encode())))
        self._topics: Dict[Tuple[str, Type], Topic] = {}
        self._closables: List[Any] = []
        self._discovery_infos: Dict[bytes, ParticipantEntitiesInfo] = {}
        self._builtin: Dict[str, BuiltinDataReader] = {}
        # Created up front so that by the time nodes() is first called the
        # (transient-local) discovery data has had time to arrive.
        self._discovery = self.reader("ros_discovery_info", ParticipantEntitiesInfo,
                                      ros_qos(transient_local=True, keep_all=True))
        for which in ("participant", "publication", "subscription"):
            self._builtin_reader(which)

    # -- lifecycle ---------------------------------------------------------
    def __enter__(self) -> "Graph":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        for c in reversed(self._closables):
            c.close()
        self._closables.clear()
        _delete(self.participant)

    @property
    def guid(self) -> bytes:
        return self.participant.get_guid().bytes

    # -- topics ------------------------------------------------------------
    def topic(self, dds_name: str, data_type: Type) -> Topic:
        """The participant's Topic for (``dds_name``, ``data_type``), created once.

        Cyclone allows one topic name with several types in a participant
        (used by the raw sender); readers and writers match across
        participants by type name and, where both announce it, type information."""
        key = (dds_name, data_type)
        t = self._topics.get(key)
        if t is None:
            t = Topic(self.participant, dds_name, data_type)
            self._topics[key] = t
        return t

    def reader(self, dds_name: str, data_type: Type, qos: Qos = DEFAULT_QOS) -> DataReader:
        return DataReader(self.participant, self.topic(dds_name, data_type), qos=qos + Qos(_READER_REPR))

    def writer(self, dds_name: str, data_type: Type, qos: Qos = DEFAULT_QOS, *, xcdr2: bool = False) -> DataWriter:
        return DataWriter(self.participant, self.topic(dds_name, data_type),
                          qos=qos + Qos(XCDR2 if xcdr2 else XCDR1))

    def subscribe(self, ros_topic: str, data_type: Type, qos: Qos = DEFAULT_QOS, *, raw: bool = False) -> Subscription:
        """Subscribe to ROS topic ``ros_topic`` (like ``ros2 topic echo``).

        ``raw=True`` keeps the serialised bytes (to check the encapsulation)."""
        return Subscription(self.reader(topic_name(ros_topic), data_type, qos), raw=raw, name=ros_topic)

    def publisher(self, ros_topic: str, data_type: Type, qos: Qos = DEFAULT_QOS) -> DataWriter:
        """An XCDR1 writer for ROS topic ``ros_topic``."""
        return self.writer(topic_name(ros_topic), data_type, qos)

    @staticmethod
    def wait_for(sub: Subscription, predicate: Callable[[Any], bool] = lambda s: True,
                 timeout: float = 5.0, what: str = "") -> Any:
        """Same as ``sub.wait_for``: first unscanned sample matching ``predicate``."""
        return sub.wait_for(predicate, timeout, what)

    @staticmethod
    def wait_matched(writer_or_reader, timeout: float = 5.0, count: int = 1) -> bool:
        """Wait until a writer/reader has matched ``count`` remote endpoints."""
        if isinstance(writer_or_reader, DataWriter):
            fn = writer_or_reader.get_matched_subscriptions
        else:
            fn = writer_or_reader.get_matched_publications
        return bool(_poll_until(lambda: len(fn()) >= count, timeout))

    # -- ros2 node list / info ----------------------------------------------
    def _builtin_reader(self, which: str) -> BuiltinDataReader:
        r = self._builtin.get(which)
        if r is None:
            topic = {"participant": BuiltinTopicDcpsParticipant,
                     "publication": BuiltinTopicDcpsPublication,
                     "subscription": BuiltinTopicDcpsSubscription}[which]
            r = BuiltinDataReader(self.participant, topic)
            self._builtin[which] = r
        return r

    def _alive(self, which: str) -> Dict[bytes, Any]:
        out = {}
        for s in self._builtin_reader(which).read(N=100000):
            if getattr(s, "sample_info", None) is not None and s.sample_info.instance_state != InstanceState.Alive:
                continue
            if hasattr(s, "key"):
                out[s.key.bytes] = s
        return out

    def discovery_infos(self) -> Dict[bytes, ParticipantEntitiesInfo]:
        """Latest ParticipantEntitiesInfo per *alive* participant gid.

        The topic is keyless, so all participants' samples share one instance:
        the reader keeps all history and this takes eagerly, remembering the
        last sample per ``gid``.  A participant that left is dropped (what the
        rmw graph cache does when DCPSParticipant reports it gone)."""
        for s in self._discovery.take(N=100000):
            if getattr(s.sample_info, "valid_data", False):
                self._discovery_infos[s.gid.to_bytes()] = s
        alive = self._alive("participant")
        return {g: i for g, i in self._discovery_infos.items() if g in alive}

    def nodes(self) -> List[NodeInfo]:
        """All ROS nodes on the domain (``ros2 node list`` + ``ros2 node info``)."""
        infos = self.discovery_infos()
        pubs = self._alive("publication")
        subs = self._alive("subscription")

        def resolve(gid: Gid, table: Dict[bytes, Any]) -> Endpoint:
            g = gid.to_bytes()
            ep = table.get(g)
            if ep is None:
                return Endpoint(g)
            return Endpoint(g, ep.topic_name, ep.type_name, _user_data(ep.qos))

        out = []
        for pgid, info in infos.items():
            for n in info.node_entities_info_seq:
                out.append(NodeInfo(
                    namespace=n.node_namespace, name=n.node_name, participant_gid=pgid,
                    readers=[resolve(g, subs) for g in n.reader_gid_seq],
                    writers=[resolve(g, pubs) for g in n.writer_gid_seq]))
        return out

    def node(self, fqn: str) -> Optional[NodeInfo]:
        for n in self.nodes():
            if n.fqn == fqn:
                return n
        return None

    def wait_for_node(self, fqn: str, predicate: Callable[[NodeInfo], bool] = lambda n: n.unresolved == 0,
                      timeout: float = 10.0) -> NodeInfo:
        """Wait until node ``fqn`` is listed and ``predicate(node)`` holds (default: all
        endpoint gids resolved to topics)."""
        last: List[Optional[NodeInfo]] = [None]

        def check():
            last[0] = self.node(fqn)
            return last[0] is not None and predicate(last[0])

        if not _poll_until(check, timeout, 0.05):
            raise TimeoutError(f"node {fqn} not (fully) visible within {timeout}s; last seen: {last[0]!r}; "
                               f"nodes: {[n.fqn for n in self.nodes()]}")
        return last[0]

    def wait_node_gone(self, fqn: str, timeout: float = 10.0) -> bool:
        return bool(_poll_until(lambda: self.node(fqn) is None, timeout, 0.05))

    # -- services ------------------------------------------------------------
    def service_client(self, service: str, srv_type: Any) -> "ServiceClient":
        c = ServiceClient(self, service, srv_type)
        self._closables.append(c)
        return c

    def lifecycle_client(self, node_fqn: str) -> "LifecycleClient":
        return LifecycleClient(self, node_fqn)

    def parameter_client(self, node_fqn: str) -> "ParameterClient":
        return ParameterClient(self, node_fqn)


# ---------------------------------------------------------------------------
# Services
# ---------------------------------------------------------------------------

_csid_counter = itertools.count(1)


def _unique_csid(participant_guid: bytes) -> bytes:
    """rmw_cyclonedds get_unique_csid: GUID prefix (12 bytes) + big-endian counter."""
    return participant_guid[:12] + next(_csid_counter).to_bytes(4, "big")


def _types_for(srv_type: Any) -> Tuple[Type, Type]:
    if isinstance(srv_type, str):
        return SERVICE_TYPES[srv_type]
    return tuple(srv_type)  # (Request, Response)


class ServiceClient:
    """A ROS 2 service client in rmw_cyclonedds' wire format.

    Request writer on ``rq/<svc>Request`` and reply reader on ``rr/<svc>Reply``,
    both with user data ``clientid=<csid>;`` (so a server that checks, like
    rmw_cyclonedds does before replying, finds our reply reader).  The header's
    ``client_guid`` is our request writer's instance handle, as in rmw.
    Replies are matched on (client_guid, sequence_number).
    """

    def __init__(self, graph: Graph, service: str, srv_type: Any, qos: Qos = DEFAULT_QOS):
        self.graph = graph
        self.service = service
        self.request_type, self.response_type = _types_for(srv_type)
        self.csid = _unique_csid(graph.guid)
        self.clientid = csid_to_string(self.csid)
        ud = Qos(Policy.Userdata(f"clientid={self.clientid};".encode()))
        self.writer = graph.writer(request_topic(service), self.request_type, qos + ud)
        self.reader = graph.reader(reply_topic(service), self.response_type, qos + ud)
        self.client_guid = self.writer.get_instance_handle() & 0xFFFFFFFFFFFFFFFF  # u64 on the wire
        self._seq = 0
        self._stash: Dict[int, Any] = {}
        self.foreign_replies: List[Any] = []   # replies for other clients / unknown seqs

    def close(self) -> None:
        _delete(self.reader)
        _delete(self.writer)

    # -- readiness -----------------------------------------------------------
    def is_ready(self) -> bool:
        """rmw_service_server_is_available: matched request reader(s) and a reply
        writer with the same ``serviceid`` (or both matched if no serviceid)."""
        rds = self.writer.get_matched_subscriptions()
        wrs = self.reader.get_matched_publications()
        if not rds or not wrs:
            return False
        needles = set()
        for h in rds:
            d = self.writer.get_matched_subscription_data(h)
            sid = user_data_value(_user_data(d.qos), "serviceid") if d is not None else None
            if sid is not None:
                needles.add(sid)
        if not needles:
            return True
        for h in wrs:
            d = self.reader.get_matched_publication_data(h)
            sid = user_data_value(_user_data(d.qos), "serviceid") if d is not None else None
            if sid in needles:
                return True
        return False

    def wait_for_service(self, timeout: float = 10.0) -> bool:
        return bool(_poll_until(self.is_ready, timeout))

    # -- calls ---------------------------------------------------------------
    def send(self, **fields) -> int:
        """Write one request (header filled in); return its sequence number."""
        self._seq += 1
        req = self.request_type(client_guid=self.client_guid, sequence_number=self._seq, **fields)
        self.writer.write(req)
        return self._seq

    def wait_reply(self, seq: int, timeout: float = 5.0) -> Any:
        """The reply to request ``seq``, or None if none arrives within ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            if seq in self._stash:
                return self._stash.pop(seq)
            for r in self.reader.take(N=256):
                if not getattr(r.sample_info, "valid_data", False):
                    continue
                if r.client_guid == self.client_guid:
                    self._stash[r.sequence_number] = r
                else:
                    self.foreign_replies.append(r)
            if seq in self._stash:
                return self._stash.pop(seq)
            if not _wait_readable(self.reader, deadline) and time.monotonic() >= deadline:
                return None

    def call(self, timeout: float = 5.0, **fields) -> Any:
        """Send a request and return the reply; ``TimeoutError`` if there is none."""
        seq = self.send(**fields)
        reply = self.wait_reply(seq, timeout)
        if reply is None:
            raise TimeoutError(f"no reply from {self.service} to request #{seq} within {timeout}s")
        return reply


class ServiceServer:
    """A minimal Python service server in rmw_cyclonedds' wire format (for harness tests).

    ``handler(request) -> dict of response fields``; the header is echoed.
    Like rmw_cyclonedds it replies only once the requesting client's reply
    reader (same ``clientid``) is matched, waiting up to 100 ms for it.
    Call :meth:`spin_once` (or :meth:`spin` for a bounded time) to serve.
    """

    def __init__(self, graph: Graph, service: str, srv_type: Any, handler: Callable[[Any], dict],
                 qos: Qos = DEFAULT_QOS):
        self.request_type, self.response_type = _types_for(srv_type)
        self.handler = handler
        self.serviceid = csid_to_string(_unique_csid(graph.guid))
        ud = Qos(Policy.Userdata(f"serviceid={self.serviceid};".encode()))
        self.reader = graph.reader(request_topic(service), self.request_type, qos + ud)
        self.writer = graph.writer(reply_topic(service), self.response_type, qos + ud)
        self.served = 0
        graph._closables.append(self)

    def close(self) -> None:
        _delete(self.writer)
        _delete(self.reader)

    def _client_reader_matched(self, publication_handle: int) -> bool:
        pub = self.reader.get_matched_publication_data(publication_handle)
        if pub is None:
            return False
        cid = user_data_value(_user_data(pub.qos), "clientid")
        if cid is None:
            return True
        for h in self.writer.get_matched_subscriptions():
            d = self.writer.get_matched_subscription_data(h)
            if d is not None and user_data_value(_user_data(d.qos), "clientid") == cid:
                return True
        return False

    def spin_once(self, timeout: float = 0.1) -> int:
        _wait_readable(self.reader, time.monotonic() + timeout)
        n = 0
        for req in self.reader.take(N=256):
            if not getattr(req.sample_info, "valid_data", False):
                continue
            fields = self.handler(req)
            if fields is None:
                continue
            if not _poll_until(lambda: self._client_reader_matched(req.sample_info.publication_handle), 0.1, 0.01):
                continue
            self.writer.write(self.response_type(client_guid=req.client_guid,
                                                 sequence_number=req.sequence_number, **fields))
            n += 1
        self.served += n
        return n

    def spin(self, seconds: float) -> int:
        deadline = time.monotonic() + seconds
        n = 0
        while time.monotonic() < deadline:
            n += self.spin_once(min(0.05, max(0.0, deadline - time.monotonic())))
        return n


_raw_types: Dict[Tuple[str, int], Type] = {}


def raw_type(type_name: str, size: int) -> Type:
    """An IDL struct named ``type_name`` whose body is ``uint8 raw[size]``.

    Why: Python cyclonedds validates every sample it writes against the
    writer's type (dds_stream_normalize), so garbage cannot be written with
    the real type.  An octet array of exactly the body's size accepts any
    bytes — and any 4-byte encapsulation header, which the binding does not
    check.  Peers that announce no XTypes type information (rmw_cyclonedds,
    our Rust nodes with their blob sertype) match it by type name; a Python
    reader of the real type does not (its type information differs)."""
    key = (type_name, size)
    cls = _raw_types.get(key)
    if cls is None:
        cls = make_idl_struct(f"Raw_{size}", type_name, {"raw": array[uint8, size]})
        _raw_types[key] = cls
    return cls


class RawServiceSender:
    """Puts arbitrary bytes on a service's request topic and listens for replies.

    A separate participant (so it is an unknown client to the server) with a
    reply reader of the real response type.  :meth:`send_bytes` writes the
    given payload verbatim — encapsulation header included — through a fresh
    writer of :func:`raw_type` sized to the payload, once the server's request
    reader has matched it.
    :meth:`send_sample` writes a typed request through a writer of the real
    request type, in XCDR2 if ``xcdr2=True`` (a ROS 2 peer never does that; a
    reader that accepts only XCDR1 will not even match that writer).
    Every writer and the reply reader carry the same ``clientid`` user data,
    so a server that checks (as rmw_cyclonedds does) can reply.
    """

    def __init__(self, domain_id: int, service: str, srv_type: Any, *, xcdr2: bool = False,
                 qos: Qos = DEFAULT_QOS):
        self.graph = Graph(domain_id)
        self.service = service
        self.qos = qos
        self.request_type, self.response_type = _types_for(srv_type)
        self.clientid = csid_to_string(_unique_csid(self.graph.guid))
        self._ud = Qos(Policy.Userdata(f"clientid={self.clientid};".encode()))
        self.writer = self.graph.writer(request_topic(service), self.request_type, qos + self._ud, xcdr2=xcdr2)
        self.reader = self.graph.reader(reply_topic(service), self.response_type, qos + self._ud)
        # rmw uses the request writer's instance handle; any unique u64 correlates.
        self.client_guid = self.writer.get_instance_handle() & 0xFFFFFFFFFFFFFFFF
        self.replies = Subscription(self.reader, name=reply_topic(service))
        self._raw_writers: List[DataWriter] = []

    def close(self) -> None:
        self.graph.close()

    def __enter__(self) -> "RawServiceSender":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def wait_matched(self, timeout: float = 10.0) -> bool:
        """The typed writer and the reply reader are matched with the server."""
        return bool(_poll_until(lambda: self.writer.get_matched_subscriptions()
                                and self.reader.get_matched_publications(), timeout))

    def header(self, seq: int) -> bytes:
        """The 16-byte rmw request header (little endian) for sequence number ``seq``."""
        return self.client_guid.to_bytes(8, "little") + seq.to_bytes(8, "little", signed=True)

    def raw_writer(self, body_size: int) -> DataWriter:
        """A new writer of :func:`raw_type` for a body of ``body_size`` bytes.

        One writer per payload: a payload Cyclone rejects at the RTPS level
        (e.g. an unknown encapsulation id) is never acknowledged, and a
        reliable writer delivers in order, so it would hold back every later
        sample of the same writer."""
        t = self.graph.topic(request_topic(self.service), raw_type(self.request_type.__idl_typename__, body_size))
        w = DataWriter(self.graph.participant, t, qos=self.qos + self._ud + Qos(XCDR1))
        self._raw_writers.append(w)
        return w

    def send_bytes(self, payload: bytes, match_timeout: float = 10.0) -> bool:
        """Write ``payload`` verbatim (4-byte encapsulation header + body of >= 1 byte).

        Returns False (and writes nothing) if no request reader matched the
        new writer within ``match_timeout``."""
        if len(payload) < 5:
            raise ValueError("payload needs a 4-byte header and at least one body byte")
        w = self.raw_writer(len(payload) - 4)
        if not _poll_until(w.get_matched_subscriptions, match_timeout, 0.005):
            return False
        ret = ddspy_write(w._ref, payload)
        if isinstance(ret, int) and ret < 0:
            raise RuntimeError(f"raw write of {len(payload)} bytes failed: {ret}")
        return True

    def send_sample(self, sample: Any) -> None:
        """Write a typed request through the typed writer (XCDR2 if ``xcdr2``)."""
        self.writer.write(sample)

    def replies_for(self, seq: int, window: float) -> List[Any]:
        """Replies carrying our client_guid and ``seq`` that arrive within ``window`` seconds."""
        self.replies.collect(window)
        return [r for r in self.replies.history
                if r.client_guid == self.client_guid and r.sequence_number == seq]


# ---------------------------------------------------------------------------
# Lifecycle
# ---------------------------------------------------------------------------

class LifecycleClient:
    """``ros2 lifecycle`` for one managed node (``node_fqn`` like ``/ntari/foo``).

    Services ``<node>/change_state``, ``get_state``, ``get_available_states``,
    ``get_available_transitions``, ``get_transition_graph``; the
    ``<node>/transition_event`` subscription is created up front so no event
    is missed (``events``).
    """

    def __init__(self, graph: Graph, node_fqn: str):
        self.node = node_fqn
        self.change_state_srv = graph.service_client(f"{node_fqn}/change_state", "lifecycle_msgs/srv/ChangeState")
        self.get_state_srv = graph.service_client(f"{node_fqn}/get_state", "lifecycle_msgs/srv/GetState")
        self.available_states_srv = graph.service_client(
            f"{node_fqn}/get_available_states", "lifecycle_msgs/srv/GetAvailableStates")
        self.available_transitions_srv = graph.service_client(
            f"{node_fqn}/get_available_transitions", "lifecycle_msgs/srv/GetAvailableTransitions")
        self.transition_graph_srv = graph.service_client(
            f"{node_fqn}/get_transition_graph", "lifecycle_msgs/srv/GetAvailableTransitions")
        self.events = graph.subscribe(f"{node_fqn}/transition_event", TransitionEvent)
        self._all = [self.change_state_srv, self.get_state_srv, self.available_states_srv,
                     self.available_transitions_srv, self.transition_graph_srv]

    def wait_ready(self, timeout: float = 10.0) -> bool:
        """All five services available and the transition_event writer matched."""
        return bool(_poll_until(
            lambda: all(c.is_ready() for c in self._all) and self.events.reader.get_matched_publications(),
            timeout))

    def get_state(self, timeout: float = 5.0) -> State:
        return self.get_state_srv.call(timeout).current_state

    def change_state(self, id: int = 0, label: str = "", timeout: float = 5.0) -> bool:
        """Request a transition by id and/or label (label wins, as in rclcpp)."""
        return self.change_state_srv.call(timeout, transition=Transition(id=id, label=label)).success

    def available_states(self, timeout: float = 5.0) -> List[State]:
        return list(self.available_states_srv.call(timeout).available_states)

    def available_transitions(self, timeout: float = 5.0) -> List[TransitionDescription]:
        return list(self.available_transitions_srv.call(timeout).available_transitions)

    def transition_graph(self, timeout: float = 5.0) -> List[TransitionDescription]:
        return list(self.transition_graph_srv.call(timeout).available_transitions)

    def wait_events(self, count: int, timeout: float = 5.0) -> List[TransitionEvent]:
        """The next ``count`` transition events (in arrival order)."""
        return [self.events.wait_for(timeout=timeout, what=f"transition event {i + 1}/{count}")
                for i in range(count)]


class ParameterClient:
    """``ros2 param`` for one node: the six parameter services, and
    ``/parameter_events`` subscribed up front so no event is missed."""

    SERVICES = {
        "list": ("list_parameters", "rcl_interfaces/srv/ListParameters"),
        "describe": ("describe_parameters", "rcl_interfaces/srv/DescribeParameters"),
        "get": ("get_parameters", "rcl_interfaces/srv/GetParameters"),
        "types": ("get_parameter_types", "rcl_interfaces/srv/GetParameterTypes"),
        "set": ("set_parameters", "rcl_interfaces/srv/SetParameters"),
        "set_atomically": ("set_parameters_atomically", "rcl_interfaces/srv/SetParametersAtomically"),
    }

    def __init__(self, graph: Graph, node_fqn: str):
        self.node = node_fqn
        self.clients = {key: graph.service_client(f"{node_fqn}/{name}", srv_type)
                        for key, (name, srv_type) in self.SERVICES.items()}
        self.events = graph.subscribe("/parameter_events", ParameterEvent,
                                      Qos(Policy.Reliability.Reliable(duration(seconds=1)),
                                          Policy.Durability.Volatile, Policy.History.KeepLast(1000)))

    def wait_ready(self, timeout: float = 10.0) -> bool:
        """All six services available and a /parameter_events writer matched."""
        return bool(_poll_until(lambda: all(c.is_ready() for c in self.clients.values())
                                and self.events.reader.get_matched_publications(), timeout))

    def list(self, prefixes=(), depth: int = 0, timeout: float = 5.0) -> ListParametersResult:
        return self.clients["list"].call(timeout, prefixes=list(prefixes), depth=depth).result

    def describe(self, names, timeout: float = 5.0) -> List[ParameterDescriptor]:
        return list(self.clients["describe"].call(timeout, names=list(names)).descriptors)

    def get(self, names, timeout: float = 5.0) -> List[ParameterValue]:
        return list(self.clients["get"].call(timeout, names=list(names)).values)

    def types(self, names, timeout: float = 5.0) -> List[int]:
        return list(self.clients["types"].call(timeout, names=list(names)).types)

    def set(self, parameters: List[Parameter], timeout: float = 5.0) -> List[SetParametersResult]:
        return list(self.clients["set"].call(timeout, parameters=parameters).results)

    def set_atomically(self, parameters: List[Parameter], timeout: float = 5.0) -> SetParametersResult:
        return self.clients["set_atomically"].call(timeout, parameters=parameters).result

    def dump(self, timeout: float = 5.0) -> Dict[str, Any]:
        """Every parameter and its value, as ``ros2 param dump`` collects them."""
        names = list(self.list(timeout=timeout).names)
        return {n: v.python() for n, v in zip(names, self.get(names, timeout=timeout))}


# ---------------------------------------------------------------------------
# A fake node's ros_discovery_info (harness tests)
# ---------------------------------------------------------------------------

class DiscoveryInfoPublisher:
    """Publishes this Graph's ParticipantEntitiesInfo like rmw_cyclonedds does
    (reliable, transient-local, keep-last 1), so a Python peer can pose as a node."""

    def __init__(self, graph: Graph):
        self.graph = graph
        self.writer = graph.writer("ros_discovery_info", ParticipantEntitiesInfo, DISCOVERY_QOS)
        self.nodes: Dict[Tuple[str, str], NodeEntitiesInfo] = {}

    def add_node(self, namespace: str, name: str, readers: Iterable = (), writers: Iterable = ()) -> None:
        def gid(e) -> Gid:
            return Gid.from_bytes(e.get_guid().bytes if hasattr(e, "get_guid") else bytes(e))
        self.nodes[(namespace, name)] = NodeEntitiesInfo(
            namespace, name, [gid(r) for r in readers], [gid(w) for w in writers])
        self.publish()

    def remove_node(self, namespace: str, name: str) -> None:
        self.nodes.pop((namespace, name), None)
        self.publish()

    def publish(self) -> None:
        self.writer.write(ParticipantEntitiesInfo(Gid.from_bytes(self.graph.guid), list(self.nodes.values())))

