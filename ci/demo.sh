#!/usr/bin/env bash
# The README demo: install what is needed, build, then for the example node
# and for ntari-ntp (chrony, examples/ntp.toml): start it, drive it as an
# operator would with the ros2 CLI (configure, activate, watch health and
# status, deactivate), and stop it with SIGTERM.
# DDS stays on loopback (tests/cyclonedds-loopback.xml), on a random domain.
set -euo pipefail
cd "$(dirname "$0")/.."
bash ci/setup.sh

echo "== building"
cargo build --quiet --example ntari_example_node -p ntari-examples
cargo build --quiet -p ntari-ntp

export CYCLONEDDS_URI="file://$PWD/tests/cyclonedds-loopback.xml"
export ROS_DOMAIN_ID=$((100 + RANDOM % 100))
work=$(mktemp -d)
node_pid=
stop_node() { [ -n "$node_pid" ] && kill -TERM "$node_pid" 2>/dev/null || true; }
cleanup() { stop_node; rm -rf "$work"; }
trap cleanup EXIT

# demo <title> <node fqn> <health topic> <status topic or ""> -- <command…>
demo() {
  local title=$1 fqn=$2 health=$3 status=$4
  shift 5
  echo
  echo "================ $title ================"
  "$@" 2>"$work/node.log" &
  node_pid=$!
  echo "== $fqn started (pid $node_pid, ROS_DOMAIN_ID=$ROS_DOMAIN_ID)"
  .venv/bin/python ci/demo.py "$fqn" "$health" $status
  echo
  echo "\$ kill -TERM $node_pid   # what OpenRC's stop does"
  stop_node
  local status_code=0
  wait "$node_pid" || status_code=$?
  node_pid=
  echo "node exited with status $status_code; its log:"
  sed 's/^/  | /' "$work/node.log"
  return "$status_code"
}

demo "the example lifecycle node" /ntari/ntari_example_node /ntari/example/health "" -- \
  target/debug/examples/ntari_example_node

# examples/ntp.toml as-is: loopback, high port, system clock left alone.
demo "ntari-ntp: chrony behind a lifecycle node" /ntari/ntari_ntp_node /ntari/ntp/health /ntari/ntp/status -- \
  target/debug/ntari-ntp --config examples/ntp.toml --state-dir "$work/ntp-state" --run-dir "$work/ntp-run" \
  --key "$work/node.ed25519" --node-config "$work/absent-ntari.toml" --metrics-port 19703
