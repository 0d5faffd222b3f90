#!/usr/bin/env python3
"""A reference rclpy node in a process of its own (tests/ros2): publishers and
subscriptions with the types and QoS profiles a test gives, so the observer
can compare how a real ROS endpoint of the intended profile looks *from
another process* (type hash, visible QoS) with how ours look.

    reference_endpoints.py --domain 42 --node ntari_ros2_reference \
        --pub /ntari_reference/p0 std_msgs/msg/Bool reliable volatile 10 \
        --sub /ntari_reference/s0 std_msgs/msg/String reliable transient_local 1

Prints ``ready`` once every endpoint exists, then spins until SIGTERM/SIGINT
(or until the process that started it dies).
"""

from __future__ import annotations

import argparse
import ctypes
import signal
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import rclpy  # noqa: E402
from rclpy.context import Context  # noqa: E402
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor  # noqa: E402

import contract  # noqa: E402
from rosobs import msg_class, qos_profile  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--domain", type=int, required=True)
    ap.add_argument("--node", default="ntari_ros2_reference")
    ap.add_argument("--pub", nargs=5, action="append", default=[],
                    metavar=("TOPIC", "TYPE", "RELIABILITY", "DURABILITY", "DEPTH"))
    ap.add_argument("--sub", nargs=5, action="append", default=[],
                    metavar=("TOPIC", "TYPE", "RELIABILITY", "DURABILITY", "DEPTH"))
    args = ap.parse_args()

    ctx = Context()
    rclpy.init(context=ctx, domain_id=args.domain)
    node = rclpy.create_node(args.node, context=ctx, enable_rosout=False, start_parameter_services=False)
    keep = []
    for topic, ros_type, rel, dur, depth in args.pub:
        keep.append(node.create_publisher(msg_class(ros_type), topic,
                                          qos_profile(contract.Qos(rel, dur, int(depth)))))
    for topic, ros_type, rel, dur, depth in args.sub:
        keep.append(node.create_subscription(msg_class(ros_type), topic, lambda _m: None,
                                             qos_profile(contract.Qos(rel, dur, int(depth)))))
    executor = SingleThreadedExecutor(context=ctx)
    executor.add_node(node)

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())

    # Dies with the test process even if that is killed (PR_SET_PDEATHSIG).
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)

    print("ready", flush=True)
    try:
        while not stop.is_set():
            executor.spin_once(timeout_sec=0.1)
    except ExternalShutdownException:
        pass
    executor.shutdown()
    node.destroy_node()
    rclpy.shutdown(context=ctx)
    return 0


if __name__ == "__main__":
    sys.exit(main())
