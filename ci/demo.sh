#!/usr/bin/env bash
# The README demo: install what is needed, build, then for the example node,
# ntari-ntp (chrony, examples/ntp.toml) and ntari-dns (dnsmasq,
# examples/dns.toml): start it, drive it as an operator would with the ros2
# CLI (configure, activate, watch health and status, deactivate), and stop it
# with SIGTERM. ntari-dns also answers dig, and names a DHCP client as soon
# as its lease is published.
# DDS stays on loopback (tests/cyclonedds-loopback.xml), on a random domain.
set -euo pipefail
cd "$(dirname "$0")/.."
bash ci/setup.sh

echo "== building"
cargo build --quiet --example ntari_example_node -p ntari-examples
cargo build --quiet -p ntari-ntp -p ntari-dns

export CYCLONEDDS_URI="file://$PWD/tests/cyclonedds-loopback.xml"
export ROS_DOMAIN_ID=$((100 + RANDOM % 100))
work=$(mktemp -d)
# dnsmasq reads its hosts files as the unprivileged user `dnsmasq`.
chmod 755 "$work"
node_pid=
stop_node() { [ -n "$node_pid" ] && kill -TERM "$node_pid" 2>/dev/null || true; }
cleanup() { stop_node; rm -rf "$work"; }
trap cleanup EXIT

# demo <title> <node fqn> <health topic> <status topic or ""> [demo.py options] -- <command…>
demo() {
  local title=$1 fqn=$2 health=$3 status=$4
  shift 4
  local demo_args=()
  while [ "$1" != "--" ]; do demo_args+=("$1"); shift; done
  shift
  echo
  echo "================ $title ================"
  "$@" 2>"$work/node.log" &
  node_pid=$!
  echo "== $fqn started (pid $node_pid, ROS_DOMAIN_ID=$ROS_DOMAIN_ID)"
  .venv/bin/python ci/demo.py "$fqn" "$health" $status "${demo_args[@]}"
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

# examples/dns.toml as-is: loopback, port 15353, offline.
demo "ntari-dns: dnsmasq behind a lifecycle node" /ntari/ntari_dns_node /ntari/dns/health /ntari/dns/status --dns-port 15353 -- \
  target/debug/ntari-dns --config examples/dns.toml --state-dir "$work/dns-state" --run-dir "$work/dns-run" \
  --key "$work/node.ed25519" --node-config "$work/absent-ntari.toml" --metrics-port 19701
