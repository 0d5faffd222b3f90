"""Real rclpy inside a network namespace, driven over stdin/stdout.

The federation tests put each cooperative in its own network namespace,
with its own loopback and so its own local DDS domain; a pytest process in
the root namespace cannot see that graph. This script runs there instead
(``ip netns exec <ns> .venv-ros2/bin/python netns_observer.py``), under
the same environment as tests/ros2 (rmw_fastrtps_cpp, LOCALHOST discovery,
the test's ROS_DOMAIN_ID), and answers one JSON command per line:

- ``{"op": "subscribe", "topic": T, "type": "std_msgs/msg/Bool", "latched": bool}``
  → ``{"ok": true}``; every message then arrives as
  ``{"msg": T, "data": <value of .data>, "t": <monotonic s>}``;
- ``{"op": "nodes"}`` → ``{"nodes": [fully qualified names]}``;
- ``{"op": "topics"}`` → ``{"topics": {name: [types]}}``;
- ``{"op": "publishers", "topic": T}`` → ``{"publishers": [{"node": fqn, "durability": ..., "reliability": ...}]}``;
- ``{"op": "publish", "topic": T, "type": ..., "data": value}`` → ``{"ok": true}``
  (a publisher kept for the process's life);
- ``{"op": "quit"}`` or end of stdin ends it.

Bounded: the process exits when stdin closes, and the test ends it by PID.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import threading
import time

import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

_out_lock = threading.Lock()


def emit(obj) -> None:
    with _out_lock:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()


def msg_class(ros_type: str):
    pkg, kind, name = ros_type.split("/")
    return getattr(importlib.import_module(f"{pkg}.{kind}"), name)


def qos(latched: bool) -> QoSProfile:
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST, depth=1 if latched else 10,
        reliability=ReliabilityPolicy.RELIABLE,
        durability=DurabilityPolicy.TRANSIENT_LOCAL if latched else DurabilityPolicy.VOLATILE)


def main() -> None:
    rclpy.init()
    node = rclpy.create_node("ntari_netns_observer")
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    keep = []
    emit({"ready": True})
    for line in sys.stdin:
        try:
            cmd = json.loads(line)
            op = cmd["op"]
            if op == "quit":
                break
            if op == "subscribe":
                topic = cmd["topic"]

                def on_msg(msg, topic=topic):
                    emit({"msg": topic, "data": msg.data, "t": time.monotonic()})

                keep.append(node.create_subscription(msg_class(cmd["type"]), topic, on_msg,
                                                     qos(cmd.get("latched", False))))
                emit({"ok": True})
            elif op == "nodes":
                names = node.get_node_names_and_namespaces()
                emit({"nodes": sorted((ns.rstrip("/") + "/" + n) for n, ns in names)})
            elif op == "topics":
                emit({"topics": {t: types for t, types in node.get_topic_names_and_types()}})
            elif op == "publishers":
                infos = node.get_publishers_info_by_topic(cmd["topic"])
                emit({"publishers": [{"node": (i.node_namespace.rstrip("/") + "/" + i.node_name),
                                      "durability": i.qos_profile.durability.name,
                                      "reliability": i.qos_profile.reliability.name} for i in infos]})
            elif op == "publish":
                cls = msg_class(cmd["type"])
                pub = node.create_publisher(cls, cmd["topic"], qos(cmd.get("latched", False)))
                keep.append(pub)
                msg = cls()
                msg.data = cmd["data"]
                pub.publish(msg)
                emit({"ok": True})
            else:
                emit({"error": f"unknown op {op}"})
        except Exception as e:  # a bad command is the test's bug: say so, keep going
            emit({"error": repr(e)})
    executor.shutdown()
    node.destroy_node()
    rclpy.try_shutdown()
    sys.stdout.flush()
    os._exit(0)   # rclpy's threads may still hold the GIL at interpreter exit


if __name__ == "__main__":
    main()
