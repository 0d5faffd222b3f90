#!/usr/bin/env bash
# The README demo's federation step (run by ci/demo.sh; alone:
# `bash ci/demo-federation.sh` after ci/setup.sh and a build).
#
# Two cooperatives, each a network namespace with its own loopback and so
# its own local DDS domain: coop_a in ntari-fed-a (198.51.100.1 on the
# veth, "the internet"), coop_b in ntari-fed-b (198.51.100.2). In each:
# a node key (`ntari-admin key init`), ntari-vpn (boringtun; its only peers
# come from the federation's wireguard-peers.json) and ntari-federation;
# in coop_a also ntari-ntp (examples/ntp.toml). coop_a invites coop_b
# (`ntari-admin federation invite`, examples/federation/template.yaml),
# coop_b joins with the code, coop_a approves: the agreement, both
# WireGuard peers and the tunnel follow, no key copied by hand. Then,
# from inside coop_b, ci/demo.py --federation shows
# /remote/coop_a/ntari/ntp/health and the proxy nodes.
# Everything started here is ended by PID, then the namespaces are deleted
# (taking the veth and WireGuard interfaces with them), also on failure.
set -euo pipefail
cd "$(dirname "$0")/.."
export CYCLONEDDS_URI="${CYCLONEDDS_URI:-file://$PWD/tests/cyclonedds-loopback.xml}"
export ROS_DOMAIN_ID="${ROS_DOMAIN_ID:-$((100 + RANDOM % 100))}"
bin=target/debug
fed=$(mktemp -d)
fed_pids=()
fed_labels=()
# The UAPI socket path /var/run/wireguard/<iface>.sock is not per
# namespace: each cooperative's interface has its own name.
declare -A ns=([coop_a]=ntari-fed-a [coop_b]=ntari-fed-b)
declare -A iface=([coop_a]=wg-ntfed-a [coop_b]=wg-ntfed-b)
declare -A addr=([coop_a]=198.51.100.1 [coop_b]=198.51.100.2)
declare -A tunnel=([coop_a]=10.78.0.1 [coop_b]=10.78.0.2)

fed_down() {
  local pid i
  for pid in "${fed_pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for i in $(seq 100); do   # up to 10 s for a clean stop, then SIGKILL
    local alive=0
    for pid in "${fed_pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [ "$alive" -eq 0 ] && break
    sleep 0.1
  done
  for pid in "${fed_pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  fed_pids=()
  for coop in coop_a coop_b; do
    # Anything left in the namespace (children of the nodes above).
    for pid in $(ip netns pids "${ns[$coop]}" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null || true; done
    ip netns del "${ns[$coop]}" 2>/dev/null || true
    rm -f "/var/run/wireguard/${iface[$coop]}.sock"
  done
}
fed_cleanup() {
  local code=$?
  if [ "$code" -ne 0 ]; then
    echo "federation demo failed (exit $code); the logs:" >&2
    for f in "$fed"/*/*.log; do [ -f "$f" ] && { echo "--- $f"; tail -n 40 "$f"; } >&2; done
  fi
  fed_down
  rm -rf "$fed"
  exit "$code"
}
trap fed_cleanup EXIT
trap 'exit 130' INT TERM

# start <coop> <label> <command…>: in the coop's namespace, its log in $fed/<coop>/<label>.log
start() {
  local coop=$1 label=$2
  shift 2
  ip netns exec "${ns[$coop]}" "$@" >"$fed/$coop/$label.log" 2>&1 &
  fed_pids+=($!)
  fed_labels+=("$coop $label")
  echo "== $coop: $label started (pid $!)"
}
node_args() {   # node_args <coop> <service> <config>
  local d=$fed/$1/$2
  echo --config "$3" --state-dir "$d/state" --run-dir "$d/run" --key "$fed/$1/node.key" \
    --node-config "$fed/$1/ntari.toml" --autostart
}

echo
echo "================ ntari-federation: coop_a's health on coop_b's graph ================"
fed_down   # leftovers of an earlier, interrupted run
declare -A did
ip netns add "${ns[coop_a]}"
ip netns add "${ns[coop_b]}"
ip link add ntari-fed0 netns "${ns[coop_a]}" type veth peer name ntari-fed1 netns "${ns[coop_b]}"
ip -n "${ns[coop_a]}" addr add "${addr[coop_a]}/24" dev ntari-fed0
ip -n "${ns[coop_b]}" addr add "${addr[coop_b]}/24" dev ntari-fed1
ip -n "${ns[coop_a]}" link set ntari-fed0 up
ip -n "${ns[coop_b]}" link set ntari-fed1 up
for coop in coop_a coop_b; do
  n=${ns[$coop]}
  ip -n "$n" link set lo up
  mkdir -p "$fed/$coop/agreements" "$fed/$coop/vpn/state" "$fed/$coop/federation/run"
  printf 'cooperative = "%s"\nkey_path = "%s"\n' "$coop" "$fed/$coop/node.key" >"$fed/$coop/ntari.toml"
  echo
  echo "\$ ntari-admin key init   # $coop's node key"
  out=$($bin/ntari-admin key init --node-config "$fed/$coop/ntari.toml")
  did[$coop]=$(awk '/^did:/ {print $NF}' <<<"$out")
  echo "did: ${did[$coop]}"
  (umask 077; wg genkey >"$fed/$coop/vpn/state/private.key")
  cat >"$fed/$coop/vpn.toml" <<EOF
interface = "${iface[$coop]}"
backend = "boringtun"
addresses = ["${tunnel[$coop]}/24"]
listen_port = 51820
peer_files = ["$fed/$coop/federation/run/wireguard-peers.json"]
EOF
  cat >"$fed/$coop/federation.toml" <<EOF
coop = "$coop"
interface = "${iface[$coop]}"
agreements_dir = "$fed/$coop/agreements"
node_key = "$fed/$coop/node.key"
EOF
  echo "\$ cat federation.toml   # $coop"
  sed 's/^/  /' "$fed/$coop/federation.toml"
  # shellcheck disable=SC2046
  start "$coop" ntari-vpn $bin/ntari-vpn $(node_args "$coop" vpn "$fed/$coop/vpn.toml") --metrics-port 19704
  # shellcheck disable=SC2046
  start "$coop" ntari-federation $bin/ntari-federation $(node_args "$coop" federation "$fed/$coop/federation.toml") \
    --metrics-port 19707
done
# shellcheck disable=SC2046
start coop_a ntari-ntp $bin/ntari-ntp $(node_args coop_a ntp examples/ntp.toml) --metrics-port 19703

# admin <coop> <args…>: `ntari-admin federation <args…>` on that hub (in its
# namespace, on its files).
admin() {
  local coop=$1
  shift
  ip netns exec "${ns[$coop]}" $bin/ntari-admin federation "$@" --config "$fed/$coop/federation.toml" \
    --state-dir "$fed/$coop/federation/state" --run-dir "$fed/$coop/federation/run"
}
# Both tunnels and bridges up before the invite reads the interface.
for coop in coop_a coop_b; do
  for i in $(seq 100); do
    ip netns exec "${ns[$coop]}" wg show "${iface[$coop]}" public-key >/dev/null 2>&1 \
      && [ -s "$fed/$coop/federation/run/bridge-state.json" ] && break
    sleep 0.2
  done
done

echo
echo "\$ ntari-admin federation invite --coop coop_b --trust observer --address ${addr[coop_a]} \\"
echo "    --template examples/federation/template.yaml   # on coop_a"
code=$(admin coop_a invite --coop coop_b --trust observer --address "${addr[coop_a]}" \
  --template examples/federation/template.yaml --expires 1h | tee /dev/stderr | tail -n 1)
echo
echo "\$ ntari-admin federation join '${code:0:40}…'   # on coop_b: no key copied by hand"
admin coop_b join "$code" | sed 's/^/  /'
echo
echo "\$ ntari-admin federation list   # on coop_a"
admin coop_a list | sed 's/^/  /'
echo
echo "\$ ntari-admin federation approve coop-a-coop-b   # on coop_a"
admin coop_a approve coop-a-coop-b | sed 's/^/  /'
echo

ip netns exec "${ns[coop_b]}" .venv/bin/python ci/demo.py --federation coop_a ntp
echo
echo "\$ ntari-admin federation list   # on coop_b"
admin coop_b list | sed 's/^/  /'
echo
echo "\$ ip netns exec ${ns[coop_b]} wg show ${iface[coop_b]}   # the peer came from the agreement"
ip netns exec "${ns[coop_b]}" wg show "${iface[coop_b]}" | sed 's/^/  /'
echo
echo "\$ ntari-admin federation log --state-dir …   # coop_b's audit log, chain checked"
$bin/ntari-admin federation log --state-dir "$fed/coop_b/federation/state" 2>&1 | sed 's/^/  /'

echo
echo "\$ kill -TERM ${fed_pids[*]}   # every node of both cooperatives"
for pid in "${fed_pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
status_code=0
for i in "${!fed_pids[@]}"; do
  code=0
  wait "${fed_pids[$i]}" || code=$?
  echo "${fed_labels[$i]} exited with status $code"
  [ "$code" -eq 0 ] || status_code=$code
done
fed_pids=()
exit "$status_code"
