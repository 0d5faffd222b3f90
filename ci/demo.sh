#!/usr/bin/env bash
# The README demo: install what is needed, build, then for the example node,
# ntari-ntp (chrony, examples/ntp.toml), ntari-dns (dnsmasq, examples/dns.toml)
# and ntari-dhcp (Kea, examples/dhcp.toml): start it, drive it as an operator
# would with the ros2 CLI (configure, activate, watch health and status,
# deactivate), and stop it with SIGTERM. ntari-dns also answers dig;
# ntari-dhcp gives a client in a demo network namespace a lease; ntari-vpn
# (WireGuard, examples/vpn.toml) in one namespace tunnels to a wireguard-go
# peer in another, joined by a veth pair; ntari-identity (Kerberos + LDAP,
# examples/identity.toml) makes its realm, a member logs in with kinit and
# reads the directory; ntari-files (Samba + NFS-Ganesha, examples/files.toml)
# takes a member's file over SMB and serves a guest's flyer over NFS. Two
# cooperatives federate
# (ci/demo-federation.sh): a signed agreement brings up their tunnel and
# coop A's ntp health appears in coop B under /remote/coop_a/. Last, ntari-dhcp and ntari-dns
# run together: the client's lease makes its name resolve, and ntari-admin
# status shows both nodes.
# DDS stays on loopback (tests/cyclonedds-loopback.xml), on a random domain.
set -euo pipefail
cd "$(dirname "$0")/.."
bash ci/setup.sh

echo "== building"
cargo build --quiet --example ntari_example_node -p ntari-examples
cargo build --quiet -p ntari-ntp -p ntari-dns -p ntari-dhcp -p ntari-vpn -p ntari-admin
cargo build --quiet -p ntari-federation -p ntari-identity -p ntari-files

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
# examples/vpn.toml's world: the hub in ntari-vpn-hub (192.0.2.1 on the
# veth), the peer riverside-coop in ntari-vpn-river (192.0.2.10, the
# endpoint the example names), a wireguard-go tunnel there with the private
# key whose public key the example carries (a demo key, never for real use).
RIVERSIDE_DEMO_KEY=8HEx43pFhdXsnEfA9K3AXY3cXOER4bgr47Atk+K0QEs=
vpn_up() {
  vpn_down
  ip netns add ntari-vpn-hub
  ip netns add ntari-vpn-river
  ip link add ntari-vpn0 netns ntari-vpn-hub type veth peer name ntari-vpn1 netns ntari-vpn-river
  ip -n ntari-vpn-hub addr add 192.0.2.1/24 dev ntari-vpn0
  ip -n ntari-vpn-river addr add 192.0.2.10/24 dev ntari-vpn1
  for ns in ntari-vpn-hub ntari-vpn-river; do
    ip -n "$ns" link set lo up
  done
  ip -n ntari-vpn-hub link set ntari-vpn0 up
  ip -n ntari-vpn-river link set ntari-vpn1 up
  # Ended by vpn_down, with everything else in the namespaces.
  ip netns exec ntari-vpn-river wireguard-go -f wg-river >/dev/null 2>&1 &
  for _ in $(seq 100); do [ -S /var/run/wireguard/wg-river.sock ] && break; sleep 0.05; done
  (umask 077; echo "$RIVERSIDE_DEMO_KEY" > "$work/riverside.key")
  ip netns exec ntari-vpn-river wg set wg-river private-key "$work/riverside.key" listen-port 51820
  ip -n ntari-vpn-river addr add 10.77.0.2/24 dev wg-river
  ip -n ntari-vpn-river link set wg-river up
}
vpn_down() {
  for ns in ntari-vpn-hub ntari-vpn-river; do
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -TERM "$pid" 2>/dev/null || true; done
    ip netns del "$ns" 2>/dev/null || true
  done
}
cleanup() {
  stop_node
  for pid in "${extra_pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  netns_down
  vpn_down
  rm -rf "$work"
}
trap cleanup EXIT

# demo <title> <node fqn> <health topic> <status topic or ""> [demo.py options] -- <command…>
# With $demo_netns set, demo.py runs in that namespace (beside the node).
demo_netns=
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
  local runner=()
  [ -n "$demo_netns" ] && runner=(ip netns exec "$demo_netns")
  "${runner[@]}" .venv/bin/python ci/demo.py "$fqn" "$health" $status "${demo_args[@]}"
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

# examples/vpn.toml as-is, in its namespace; DDS on that namespace's loopback.
vpn_up
demo_netns=ntari-vpn-hub
demo "ntari-vpn: WireGuard (boringtun) behind a lifecycle node" /ntari/ntari_vpn_node /ntari/vpn/health /ntari/vpn/status \
  --vpn-peer-netns ntari-vpn-river -- \
  ip netns exec ntari-vpn-hub target/debug/ntari-vpn --config examples/vpn.toml --state-dir "$work/vpn-state" \
  --run-dir "$work/vpn-run" --key "$work/node.ed25519" --node-config "$work/absent-ntari.toml" --metrics-port 19704
demo_netns=
echo
echo "\$ ip netns exec ntari-vpn-hub ip link show wg-coop   # gone with the node"
ip netns exec ntari-vpn-hub ip link show wg-coop 2>&1 | sed 's/^/  /' || true
vpn_down

# examples/identity.toml as-is: realm COOP.LAN on loopback and high ports.
# slapd drops to its own user, who must reach its database in $work.
demo "ntari-identity: Kerberos (MIT) and LDAP (OpenLDAP) behind a lifecycle node" /ntari/ntari_identity_node \
  /ntari/identity/health /ntari/identity/status --identity-dirs "$work/identity-state" "$work/identity-run" -- \
  target/debug/ntari-identity --config examples/identity.toml --state-dir "$work/identity-state" \
  --run-dir "$work/identity-run" --key "$work/node.ed25519" --node-config "$work/absent-ntari.toml" --metrics-port 19705

# examples/files.toml as-is: smbd and NFS-Ganesha on loopback and high
# ports, the shares made under the state dir; a member writes over SMB, a
# flyer put there by a guest is read back over NFS.
demo "ntari-files: Samba and NFS-Ganesha behind a lifecycle node" /ntari/ntari_files_node \
  /ntari/files/health /ntari/files/status --files-dirs "$work/files-state" "$work/files-run" -- \
  target/debug/ntari-files --config examples/files.toml --state-dir "$work/files-state" \
  --run-dir "$work/files-run" --key "$work/node.ed25519" --node-config "$work/absent-ntari.toml" --metrics-port 19706

# Two cooperatives federated over ntari-vpn tunnels by ntari-federation:
# coop_a's ntari-ntp health on coop_b's graph (ci/demo-federation.sh, which
# ends what it starts by PID and deletes its namespaces, also on failure).
bash ci/demo-federation.sh

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
