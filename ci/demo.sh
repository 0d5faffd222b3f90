#!/usr/bin/env bash
# The README demo: install what is needed, build, start the example lifecycle
# node and drive it as an operator would with the ros2 CLI (configure,
# activate, watch health, deactivate), then stop it with SIGTERM.
# DDS stays on loopback (tests/cyclonedds-loopback.xml), on a random domain.
set -euo pipefail
cd "$(dirname "$0")/.."
bash ci/setup.sh

echo "== building"
cargo build --quiet --example ntari_example_node

export CYCLONEDDS_URI="file://$PWD/tests/cyclonedds-loopback.xml"
export ROS_DOMAIN_ID=$((100 + RANDOM % 100))
log=$(mktemp)
target/debug/examples/ntari_example_node 2>"$log" &
node_pid=$!
stop_node() { kill -TERM "$node_pid" 2>/dev/null || true; }
trap stop_node EXIT

echo "== /ntari/ntari_example_node started (pid $node_pid, ROS_DOMAIN_ID=$ROS_DOMAIN_ID)"
.venv/bin/python ci/demo.py /ntari/ntari_example_node /ntari/example/health

echo
echo "\$ kill -TERM $node_pid   # what OpenRC's stop does"
stop_node
status=0
wait "$node_pid" || status=$?
trap - EXIT
echo "node exited with status $status; its log:"
sed 's/^/  | /' "$log"
rm -f "$log"
exit "$status"
