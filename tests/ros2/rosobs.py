"""Real ROS 2 (rclpy) as the tests' observer: what `ros2 node list`,
`ros2 node info`, `ros2 topic info -v` and `ros2 topic echo` would see.

One :class:`Observer` per test: an rclpy Context on the test's domain (a
fresh context is cheap, ~10 ms after the first), one node, and a
SingleThreadedExecutor spinning in a background thread. Subscriptions
record every message with its arrival time (monotonic) and rmw's
MessageInfo (source and reception timestamps, ns since the epoch).

The environment (RMW_IMPLEMENTATION, ROS_AUTOMATIC_DISCOVERY_RANGE,
CYCLONEDDS_URI, ROS_LOG_DIR) is set by conftest.py before the first
rclpy.init.
"""

from __future__ import annotations

import importlib
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Tuple

import rclpy
from rclpy.context import Context
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

import contract

OBSERVER_NAME = "ntari_ros2_test_observer"


def msg_class(ros_type: str):
    """``std_msgs/msg/Bool`` -> the rclpy message class."""
    pkg, kind, name = ros_type.split("/")
    return getattr(importlib.import_module(f"{pkg}.{kind}"), name)


def qos_profile(q: contract.Qos) -> QoSProfile:
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST, depth=q.depth,
        reliability=ReliabilityPolicy.RELIABLE if q.reliability == contract.RELIABLE else ReliabilityPolicy.BEST_EFFORT,
        durability=(DurabilityPolicy.TRANSIENT_LOCAL if q.durability == contract.TRANSIENT_LOCAL
                    else DurabilityPolicy.VOLATILE))


def visible_qos(profile: QoSProfile) -> Dict[str, Any]:
    """The part of a *remote* endpoint's QoS that discovery carries and rmw
    reports (history and depth are not: rmw_fastrtps reports them as UNKNOWN/0,
    see README)."""
    return {
        "reliability": profile.reliability.name,
        "durability": profile.durability.name,
        "deadline": profile.deadline.nanoseconds,
        "lifespan": profile.lifespan.nanoseconds,
        "liveliness": profile.liveliness.name,
        "liveliness_lease_duration": profile.liveliness_lease_duration.nanoseconds,
    }


@dataclass
class Sample:
    t: float                # time.monotonic() when the callback ran
    msg: Any
    source_ns: int          # writer's source timestamp (ns since the epoch)
    received_ns: int        # rmw reception timestamp (ns since the epoch)


class Recorder:
    """Everything one rclpy subscription received; waits that scan only
    samples no earlier wait has looked at (like tests/interop's Subscription)."""

    def __init__(self, topic: str):
        self.topic = topic
        self.samples: List[Sample] = []
        self._cursor = 0
        self._cond = threading.Condition()
        self.sub = None

    def callback(self, msg, info) -> None:
        t = time.monotonic()
        src = info.get("source_timestamp", 0) if isinstance(info, dict) else getattr(info, "source_timestamp", 0)
        rcv = info.get("received_timestamp", 0) if isinstance(info, dict) else getattr(info, "received_timestamp", 0)
        with self._cond:
            self.samples.append(Sample(t, msg, int(src), int(rcv)))
            self._cond.notify_all()

    def mark(self) -> int:
        """Later waits look only at samples that arrive after this call."""
        with self._cond:
            self._cursor = len(self.samples)
            return self._cursor

    def since(self, index: int) -> List[Sample]:
        with self._cond:
            return list(self.samples[index:])

    def wait_for(self, predicate: Callable[[Any], bool] = lambda m: True, timeout: float = 5.0,
                 what: str = "", written_after_ns: int = 0) -> Sample:
        """The first not-yet-scanned sample whose message matches (and, with
        ``written_after_ns``, whose source timestamp is not older); AssertionError on timeout.

        A volatile rclpy reader can still be handed samples its (Cyclone)
        writer wrote before the two matched, when they arrive late:
        ``written_after_ns`` keeps those from satisfying a wait."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                while self._cursor < len(self.samples):
                    s = self.samples[self._cursor]
                    self._cursor += 1
                    if s.source_ns >= written_after_ns and predicate(s.msg):
                        return s
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    tail = [s.msg for s in self.samples[-3:]]
                    raise AssertionError(f"rclpy: no {what or 'matching sample'} on {self.topic} within "
                                         f"{timeout:.1f} s; {len(self.samples)} received, last: {tail!r}")
                self._cond.wait(remaining)

    def collect(self, window: float) -> List[Sample]:
        """Samples that arrive during the next ``window`` seconds."""
        start = self.mark()
        time.sleep(window)  # a measuring window, not a wait for a condition
        with self._cond:
            self._cursor = len(self.samples)
            return list(self.samples[start:])


class Observer:
    """An rclpy context + node on ``domain_id``, spinning in a thread."""

    def __init__(self, domain_id: int, name: str = OBSERVER_NAME):
        self.domain_id = domain_id
        self.context = Context()
        rclpy.init(context=self.context, domain_id=domain_id)
        self.node = rclpy.create_node(name, context=self.context, enable_rosout=False,
                                      start_parameter_services=False)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._thread = threading.Thread(target=self._spin, name=f"rclpy-spin-{domain_id}", daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        try:
            self.executor.spin()
        except ExternalShutdownException:
            pass

    def close(self) -> None:
        self.executor.shutdown(timeout_sec=2)
        self._thread.join(timeout=5)
        self.node.destroy_node()
        if self.context.ok():
            rclpy.shutdown(context=self.context)

    # -- topics ------------------------------------------------------------
    def subscribe(self, topic: str, ros_type: str, qos: contract.Qos = contract.DEFAULT) -> Recorder:
        rec = Recorder(topic)
        rec.sub = self.node.create_subscription(msg_class(ros_type), topic, rec.callback, qos_profile(qos))
        return rec

    def publisher(self, topic: str, ros_type: str, qos: contract.Qos = contract.DEFAULT):
        return self.node.create_publisher(msg_class(ros_type), topic, qos_profile(qos))

    # -- graph -------------------------------------------------------------
    def node_names(self) -> List[Tuple[str, str]]:
        return self.node.get_node_names_and_namespaces()

    def has_node(self, namespace: str, name: str) -> bool:
        return (name, namespace) in self.node_names()

    def wait_node(self, c: contract.NodeContract, timeout: float = 20.0) -> float:
        """Seconds until rclpy lists node ``c``; AssertionError on timeout."""
        t0 = time.monotonic()
        while not self.has_node(c.namespace, c.name):
            if time.monotonic() - t0 > timeout:
                raise AssertionError(f"rclpy never listed {c.fqn} within {timeout} s; it sees {self.node_names()}")
            time.sleep(0.05)
        return time.monotonic() - t0

    def endpoints(self, c: contract.NodeContract) -> Dict[str, Dict[str, List[str]]]:
        """What rclpy reports for node ``c``: {"publishers"|"subscribers"|"services": {name: [types]}}."""
        def table(pairs):
            return {name: sorted(types) for name, types in pairs}
        n = self.node
        return {
            "publishers": table(n.get_publisher_names_and_types_by_node(c.name, c.namespace)),
            "subscribers": table(n.get_subscriber_names_and_types_by_node(c.name, c.namespace)),
            "services": table(n.get_service_names_and_types_by_node(c.name, c.namespace)),
        }

    def endpoint_info(self, topic: str, kind: str, node_name: str, namespace: str) -> List[Any]:
        """``get_publishers_info_by_topic`` (kind "publishers") or
        ``get_subscriptions_info_by_topic`` entries of one node."""
        fn = (self.node.get_publishers_info_by_topic if kind == "publishers"
              else self.node.get_subscriptions_info_by_topic)
        return [i for i in fn(topic) if i.node_name == node_name and i.node_namespace == namespace]


def expected_endpoints(c: contract.NodeContract) -> Dict[str, Dict[str, List[str]]]:
    return {
        "publishers": {k: [v.type] for k, v in c.all_publishers().items()},
        "subscribers": {k: [v.type] for k, v in c.all_subscribers().items()},
        "services": {k: [v] for k, v in c.all_services().items()},
    }


def diff(expected: Dict[str, Dict[str, List[str]]], seen: Dict[str, Dict[str, List[str]]]) -> str:
    lines = []
    for kind in ("publishers", "subscribers", "services"):
        e, s = expected[kind], seen.get(kind, {})
        for name in sorted(set(e) | set(s)):
            if e.get(name) != s.get(name):
                lines.append(f"  {kind} {name}: table says {e.get(name)}, rclpy reports {s.get(name)}")
    return "\n".join(lines)
