#!/usr/bin/env bash
# The README demo: install what is needed, build, then for the example node,
# ntari-ntp (chrony, examples/ntp.toml), ntari-dns (dnsmasq, examples/dns.toml)
# and ntari-dhcp (Kea, examples/dhcp.toml): start it, drive it as an operator
# would with the ros2 CLI (configure, activate, watch health and status,
# deactivate), and stop it with SIGTERM. ntari-dns also answers dig;
# ntari-dhcp gives a client in a demo network namespace a lease. Last, both
# run together: the client's lease makes its name resolve, and ntari-admin
# status shows both nodes.
# DDS stays on loopback (tests/cyclonedds-loopback.xml), on a random domain.
set -euo pipefail
cd "$(dirname "$0")/.."
bash ci/setup.sh

echo "== building"
cargo build --quiet --example ntari_example_node -p ntari-examples
cargo build --quiet -p ntari-ntp -p ntari-dns -p ntari-dhcp -p ntari-admin

export CYCLONEDDS_URI="file://$PWD/tests/cyclonedds-loopback.xml"
export ROS_DOMAIN_ID=$((100 + RANDOM % 100))
work=$(mktemp -d)
# dnsmasq reads its hosts files as the unprivileged user `dnsmasq`.
chmod 755 "$work"
node_pid=
extra_pids=()
stop_node() { [ -n "$node_pid" ] && kill -TERM "$node_pid" 2>/dev/null || true; }
# The demo LAN of examples/dhcp.toml: ntari-demo0 (192.168.77.1/24) here, its
# peer ntari-demo1 in the namespace ntari-demo, where the DHCP client runs.
netns_up() {
  netns_down
  ip netns add ntari-demo
  ip link add ntari-demo0 type veth peer name ntari-demo1
  ip link set ntari-demo1 netns ntari-demo
  ip addr add 192.168.77.1/24 dev ntari-demo0
  ip link set ntari-demo0 up
  ip netns exec ntari-demo ip link set ntari-demo1 up
}
netns_down() {
  ip link del ntari-demo0 2>/dev/null || true
  ip netns del ntari-demo 2>/dev/null || true
}
cleanup() {
  stop_node
  for pid in "${extra_pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  netns_down
  rm -rf "$work"
}
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

# examples/dhcp.toml as-is, on the demo LAN.
netns_up
demo "ntari-dhcp: Kea DHCPv4 behind a lifecycle node" /ntari/ntari_dhcp_node /ntari/dhcp/health /ntari/dhcp/status \
  --dhcp-netns ntari-demo --dhcp-iface ntari-demo1 -- \
  target/debug/ntari-dhcp --config examples/dhcp.toml --state-dir "$work/dhcp-state" --run-dir "$work/dhcp-run" \
  --key "$work/node.ed25519" --node-config "$work/absent-ntari.toml" --metrics-port 19702

echo
echo "================ together: a DHCP client's name in DNS ================"
rm -rf "$work/dhcp-state"   # a fresh lease table: the client gets the first pool address
target/debug/ntari-dhcp --config examples/dhcp.toml --state-dir "$work/dhcp-state" --run-dir "$work/dhcp-run" \
  --key "$work/node.ed25519" --node-config "$work/absent-ntari.toml" --metrics-port 19702 --autostart \
  2>"$work/dhcp.log" &
extra_pids+=($!)
target/debug/ntari-dns --config examples/dns.toml --state-dir "$work/dns-state" --run-dir "$work/dns-run" \
  --key "$work/node.ed25519" --node-config "$work/absent-ntari.toml" --metrics-port 19701 --autostart \
  2>"$work/dns.log" &
extra_pids+=($!)
echo "== ntari-dhcp (pid ${extra_pids[0]}) and ntari-dns (pid ${extra_pids[1]}) started with --autostart"
.venv/bin/python ci/demo.py --together 15353 ntari-demo ntari-demo1
sleep 6   # one probe round (5 s), so the summaries count the new lease
echo
echo "\$ ntari-admin status   # every service node on the domain, found through the graph"
status_code=0
target/debug/ntari-admin --node-config "$work/absent-ntari.toml" status || status_code=$?
echo "(exit $status_code: 0 means every node is Active and healthy)"
[ "$status_code" -eq 0 ]
for pid in "${extra_pids[@]}"; do kill -TERM "$pid"; wait "$pid"; done
extra_pids=()
echo "both nodes exited"
