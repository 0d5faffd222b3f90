#!/usr/bin/env python3
"""Waits until the given NTARI service nodes are healthy on a DDS domain, as
`ros2 topic echo /ntari/<svc>/health` and `/ntari/<svc>/status` would show.

    health.py DOMAIN_ID SERVICE... [--timeout S]

For each service: the first health sample `true`, then the first status
whose payload says healthy and Active. Prints one line per service:
`<svc> <lifecycle_state> <daemon pid> <node DID>`; exit 0 when all are
healthy in time, 1 otherwise (with what was seen). CYCLONEDDS_URI must keep
DDS where the nodes are (the run.sh test: loopback).
"""

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "interop"))

from rosgraph import Graph  # noqa: E402
from ros_types import Bool, String  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("domain", type=int)
    parser.add_argument("services", nargs="+")
    parser.add_argument("--timeout", type=float, default=30.0)
    args = parser.parse_args()

    with Graph(args.domain) as graph:
        health = {s: graph.subscribe(f"/ntari/{s}/health", Bool) for s in args.services}
        status = {s: graph.subscribe(f"/ntari/{s}/status", String) for s in args.services}
        deadline = time.monotonic() + args.timeout
        healthy = set()
        done = {}
        last = {}
        # Poll every subscription in turn: status comes every 10 s (and on
        # change), so waiting on the services one after the other could
        # take 10 s each.
        while len(done) < len(args.services) and time.monotonic() < deadline:
            for svc in args.services:
                for sample in health[svc].poll():
                    if sample.data is True:
                        healthy.add(svc)
                for sample in status[svc].poll():
                    payload = json.loads(sample.data)["payload"]
                    last[svc] = payload
                    if svc in healthy and payload.get("healthy") and payload.get("lifecycle_state") == "active":
                        done[svc] = payload
                        envelope = json.loads(sample.data)
                        done[svc]["_issuer"] = envelope.get("issuer", "?")
            time.sleep(0.05)
        ok = True
        for svc in args.services:
            if svc in done:
                p = done[svc]
                print(f"{svc} {p['lifecycle_state']} {p['daemon']['pid']} {p['_issuer']}", flush=True)
            else:
                ok = False
                seen = last.get(svc)
                print(f"{svc} NOT HEALTHY within {args.timeout:.0f} s on domain {args.domain}: "
                      f"health true seen: {svc in healthy}; last status: {json.dumps(seen) if seen else 'none'}",
                      flush=True)
        return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
