#!/usr/bin/env bash
# The checks of the OpenRC test, run by enter.sh chrooted into the test root
# (OpenRC and openrc/* installed, the binaries at /usr/bin/ntari-*, configs
# in /etc/ntari). Everything goes through rc-service / openrc, as an
# operator would. What it proves, in order:
#
#  1. dependencies: `rc-service ntari-dns start` from nothing starts
#     ntari-domain first (need), which renders /etc/ntari/cyclonedds.xml
#     with the domain of ntari.toml; ntari-ntp (only `after`) stays stopped;
#     dnsmasq answers; stop takes node and dnsmasq down, the domain stays.
#  2. boot order: with all six in the default runlevel, `openrc default`
#     starts ntari-domain, ntari-ntp, ntari-dns, ntari-dhcp in that order
#     (the NTARI OS boot sequence), ntari-vpn after ntari-ntp and
#     ntari-federation after ntari-vpn; each `status` started.
#  3. the nodes work: all five healthy and Active over DDS (the status'
#     daemon pid is the daemon under the supervised node, behind its
#     guard), a DNS answer, a DHCP lease for a client on the veth pair, the
#     WireGuard interface with its address, route, port and both peers
#     (`wg show`), the hub's private key created (0600), the federation
#     bridge running with no agreement (state dir 0700).
#  4. independence: stopping ntari-dns leaves ntari-ntp, ntari-dhcp,
#     ntari-vpn and ntari-federation running (same node and daemon pids);
#     dnsmasq is gone. Stopping ntari-federation leaves ntari-vpn and the
#     others running; stopping ntari-vpn stops ntari-federation too (need)
#     and leaves the others; starting ntari-federation starts ntari-vpn.
#  5. restart of each node service: a new node and daemon, the old daemon
#     gone, the others untouched (but restarting ntari-vpn restarts
#     ntari-federation, which needs it); `restart` of ntari-domain after a
#     new domain_id re-renders the config and restarts every node, which
#     then answer on the new domain.
#  6. respawn: ntari-ntp's, ntari-vpn's and ntari-federation's nodes,
#     killed with SIGKILL, are respawned by supervise-daemon (new pid,
#     service still started, the others untouched); the old daemon (chronyd,
#     the boringtun tunnel, the bridge) died with its node and a new one
#     runs; the new tunnel has the interface back.
#  7. a bad config: `rc-service ntari-dns start` fails, naming file, line
#     and key; no node process, no respawn loop; reload with a bad config
#     is refused and leaves the running node alone. `rc-service ntari-vpn
#     reload` with a peer less applies it live (same node, same tunnel).
#  8. stop: stopping ntari-domain stops every node that needs it; the
#     daemons and their guards are gone, the WireGuard interface too, every
#     node exited through its orderly shutdown.
#  9. a bad ntari.toml: starting a node fails at ntari-domain, with
#     ntari-admin's message (file, line, key); nothing runs.
# 10. ntari-identity, on its own (not in the runlevel, so 2-9 never see it):
#     with ntari.toml fixed, `rc-service ntari-identity start` starts
#     ntari-domain and the node; healthy and Active over DDS, its status
#     naming slapd, krb5kdc and kadmind as the processes behind its guards
#     (slapd not root), the realm provisioned (provisioned.json, the stash
#     0600). The node killed with SIGKILL is respawned: its three daemons
#     died with it, three new ones run, healthy again, the realm not made
#     again (provisioned.json byte for byte). reload with an RC4 enctype is
#     refused (file, line, key) and leaves node and daemons alone. stop:
#     node, daemons and guards gone, through the orderly shutdown.
# 11. ntari-files, on its own as well: `rc-service ntari-files start` starts
#     the node with smbd and NFS-Ganesha behind its guards; healthy and
#     Active, its status naming both with the pids behind the guards; a
#     guest's file put over SMB (smbclient) is read back over NFSv4
#     (nfs-cat); a member added with ntari-admin lists the shares, which
#     starts smbd's helpers (samba-dcerpcd, rpcd_*). The node killed with
#     SIGKILL is respawned: smbd, its helpers and Ganesha died with it, two
#     new daemons run, healthy again.
#     stop: node, daemons, helpers and guards gone, orderly shutdown.
set -uo pipefail
repo=$NTOC_REPO
domain=$NTOC_DOMAIN
python="$repo/.venv/bin/python"
export CYCLONEDDS_URI="file://$repo/tests/cyclonedds-loopback.xml"
declare -A DAEMON=([ntp]=chronyd [dns]=dnsmasq [dhcp]=kea-dhcp4 [vpn]=boringtun [federation]=bridge
  [identity]=slapd [files]=smbd)
# The process name (/proc/<pid>/comm, what pgrep -x matches) of a binary:
# the kernel keeps its first 15 characters, so ntari-federation shows as
# ntari-federatio.
comm_of() { printf '%.15s' "$1"; }
# How a daemon shows in /proc: its process name, and for ntari-vpn, whose
# boringtun tunnel is the node binary run again (`ntari-vpn __boringtun
# <interface>`), and ntari-federation, whose bridge is too
# (`ntari-federation __bridge <run dir>/bridge.json`), also its first
# argument.
# ntari-identity runs three, ntari-files two; these name their first, slapd
# and smbd (the daemon each status repeats as `daemon`), for health();
# sections 10 and 11 follow all of them.
declare -A DAEMON_COMM=([ntp]=chronyd [dns]=dnsmasq [dhcp]=kea-dhcp4 [vpn]=ntari-vpn
  [federation]=$(comm_of ntari-federation) [identity]=slapd [files]=smbd)
declare -A DAEMON_ARG=([vpn]=__boringtun [federation]=__bridge)
SERVICES=(ntp dns dhcp vpn federation)
ALL=(ntari-domain ntari-ntp ntari-dns ntari-dhcp ntari-vpn ntari-federation)
vpn_if=$NTOC_VPN_IF

step() { echo; echo "== $*"; }
ok() { echo "   ok: $*"; }
fail() {
  echo
  echo "FAIL: $*"
  echo
  echo "== processes"
  ps -eo pid,ppid,stat,etimes,args | sed 's/^/   /'
  for svc in "${SERVICES[@]}" identity files; do
    echo "== /var/log/ntari/$svc.log (last 40 lines)"
    tail -n 40 "/var/log/ntari/$svc.log" 2>/dev/null | sed 's/^/   | /'
  done
  if [ -e /var/log/ntari/files.log ]; then
    echo "== /var/log/ntari/files.log: Ganesha's errors and warnings (last 20)"
    grep -E ' :(CRIT|MAJ|WARN) ' /var/log/ntari/files.log | tail -n 20 | sed 's/^/   | /'
  fi
  if [ -e /run/ntari/identity/krb5kdc.log ]; then
    echo "== /run/ntari/identity/krb5kdc.log (last 20 lines)"
    tail -n 20 /run/ntari/identity/krb5kdc.log | sed 's/^/   | /'
  fi
  exit 1
}

# rc-service with its output shown (indented) and kept in $OUT.
OUT=
rcs() {
  local rc
  echo "   \$ rc-service $*"
  OUT=$(timeout 60 rc-service "$@" 2>&1)
  rc=$?
  [ -n "$OUT" ] && printf '%s\n' "$OUT" | sed 's/^/   | /'
  return "$rc"
}

# 0 started, 3 stopped, 32 crashed, … (supervise-daemon.sh's status codes).
status_code() {
  timeout 20 rc-service "$1" status >/dev/null 2>&1
  echo $?
}
expect_status() { # <service> <started|stopped>
  local want=$2 code
  code=$(status_code "$1")
  case "$want:$code" in
    started:0 | stopped:3) ok "$1 status: $want" ;;
    *) fail "$1 status: expected $want, rc-service status exited $code" ;;
  esac
}

# A process that exists and is not a zombie.
alive() {
  local pid=$1 state
  [ -n "$pid" ] && [ -r "/proc/$pid/stat" ] || return 1
  state=$(sed 's/^.*) //' "/proc/$pid/stat" 2>/dev/null | cut -d' ' -f1)
  [ -n "$state" ] && [ "$state" != Z ]
}

# The node supervise-daemon runs for ntari-<svc> (its child_pid), if alive
# and really that binary (and not a guard or daemon of it: no __ argument).
node_pid() {
  local pid
  pid=$(cat "/run/openrc/options/ntari-$1/child_pid" 2>/dev/null) || return 0
  alive "$pid" && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$(comm_of "ntari-$1")" ] &&
    [ "$(tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | sed -n 2p)" = --autostart ] && echo "$pid"
  return 0
}
# Whether a pid is the daemon of ntari-<svc>.
is_daemon() { # <svc> <pid>
  local svc=$1 pid=$2
  alive "$pid" && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "${DAEMON_COMM[$svc]}" ] || return 1
  [ -z "${DAEMON_ARG[$svc]:-}" ] ||
    [ "$(tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | sed -n 2p)" = "${DAEMON_ARG[$svc]}" ]
}
# The daemon the node runs: the child of its guard (the node binary run
# again as `ntari-<svc> __ntari-guard <daemon…>`, a child of the node), or
# a direct child of the node.
daemon_pid() {
  local svc=$1 node=$2 child pid
  [ -n "$node" ] || return 0
  for child in $(pgrep -P "$node"); do
    if is_daemon "$svc" "$child"; then echo "$child"; return 0; fi
    for pid in $(pgrep -P "$child"); do
      if is_daemon "$svc" "$pid"; then echo "$pid"; return 0; fi
    done
  done
  return 0
}
# Every live process of that name (binary: cut to 15 characters, as in
# /proc/<pid>/comm) in this PID namespace.
live_named() {
  local pid out=
  for pid in $(pgrep -x "$(comm_of "$1")"); do alive "$pid" && out="$out $pid"; done
  echo "${out# }"
}
# Every live daemon of ntari-<svc> in this PID namespace, whoever its parent.
live_daemons() {
  local pid out=
  for pid in $(pgrep -x "${DAEMON_COMM[$1]}"); do is_daemon "$1" "$pid" && out="$out $pid"; done
  echo "${out# }"
}

# wait_for <seconds> <description> <command…>: polls every 0.2 s.
wait_for() {
  local secs=$1 what=$2 deadline
  shift 2
  deadline=$(($(date +%s) + secs))
  until "$@"; do
    [ "$(date +%s)" -lt "$deadline" ] || fail "timed out after ${secs} s waiting for $what"
    sleep 0.2
  done
}
has_node() { [ -n "$(node_pid "$1")" ]; }
has_daemon() { [ -n "$(daemon_pid "$1" "$(node_pid "$1")")" ]; }
no_node() { [ -z "$(live_named "ntari-$1")" ]; }
no_daemon() { [ -z "$(live_daemons "$1")" ]; }
no_guard() { [ -z "$(pgrep -f '^[^ ]*ntari-[a-z]+ __ntari-guard ')" ]; }
gone() { ! alive "$1"; }
# The node's last lifecycle transition in its log ended in Finalized: it
# went through the orderly shutdown, not a kill.
finalized() {
  local last
  last=$(grep 'transition=' "/var/log/ntari/$1.log" | tail -n 1)
  case "$last" in
    *"to=finalized"*) ;;
    *) fail "ntari-$1's last lifecycle transition is not the shutdown: $last" ;;
  esac
}

declare -A NODE DMN
record() { # remember node and daemon pids of the given services
  local svc
  for svc in "$@"; do
    NODE[$svc]=$(node_pid "$svc")
    DMN[$svc]=$(daemon_pid "$svc" "${NODE[$svc]}")
    [ -n "${NODE[$svc]}" ] && [ -n "${DMN[$svc]}" ] ||
      fail "ntari-$svc: no node (${NODE[$svc]:-none}) or no ${DAEMON[$svc]} (${DMN[$svc]:-none})"
  done
}
unchanged() { # the recorded pids are still the ones running
  local svc
  for svc in "$@"; do
    [ "$(node_pid "$svc")" = "${NODE[$svc]}" ] && alive "${DMN[$svc]}" ||
      fail "ntari-$svc was disturbed: node ${NODE[$svc]} -> $(node_pid "$svc"), ${DAEMON[$svc]} ${DMN[$svc]} alive: $(alive "${DMN[$svc]}" && echo yes || echo no)"
    expect_status "ntari-$svc" started
  done
  ok "unchanged: $(for s in "$@"; do printf 'ntari-%s (node %s, %s %s) ' "$s" "${NODE[$s]}" "${DAEMON[$s]}" "${DMN[$s]}"; done)"
}
# Waits for a node and its daemon (the node is up once its daemon is).
wait_running() {
  local svc
  for svc in "$@"; do
    wait_for 30 "ntari-$svc's node and ${DAEMON[$svc]}" has_daemon "$svc"
  done
}

# The WireGuard interface as vpn.toml (rewritten by enter.sh) has it: up
# with the hub's address, the route to the network behind riverside-coop,
# and the tunnel answering `wg show` with its port and both peers.
vpn_if_ready() {
  ip -o -4 address show dev "$vpn_if" 2>/dev/null | grep -q " $NTOC_VPN_NET\.1/24 " &&
    ip -4 route show dev "$vpn_if" 2>/dev/null | grep -q "^$NTOC_VPN_ROUTED\.0/24 " &&
    [ "$(wg show "$vpn_if" listen-port 2>/dev/null)" = "$NTOC_VPN_PORT" ] &&
    [ "$(wg show "$vpn_if" peers 2>/dev/null | wc -l)" = "${1:-2}" ]
}
vpn_if_gone() { [ ! -e "/sys/class/net/$vpn_if" ] && ! ip link show dev "$vpn_if" >/dev/null 2>&1; }

dig_hub() {
  [ "$(dig +short +time=1 +tries=1 -p "$NTOC_DNS_PORT" @127.0.0.1 hub.coop.lan 2>/dev/null)" = 127.0.0.1 ]
}

health() { # <domain> <svc…>: healthy and Active over DDS; status daemon pid = the real one
  local dom=$1 line svc state pid
  shift
  echo "   \$ health.py $dom $*   # as ros2 topic echo /ntari/<svc>/health and /status"
  local out
  out=$(timeout 60 "$python" "$repo/tests/openrc/health.py" "$dom" "$@" --timeout 30 2>&1) ||
    { printf '%s\n' "$out" | sed 's/^/   | /'; fail "not every node was healthy on domain $dom"; }
  printf '%s\n' "$out" | sed 's/^/   | /'
  while read -r svc state pid _; do
    [ "$pid" = "$(daemon_pid "$svc" "$(node_pid "$svc")")" ] ||
      fail "ntari-$svc's status names ${DAEMON[$svc]} pid $pid, but the node's child is $(daemon_pid "$svc" "$(node_pid "$svc")")"
  done <<<"$out"
  ok "healthy and Active on domain $dom: $*"
}

echo "== OpenRC $(cat /lib/rc/version) in a chroot: services $(ls /etc/init.d | tr '\n' ' ')"
echo "   domain $domain, ntp port $NTOC_NTP_PORT, dns port $NTOC_DNS_PORT, dhcp on $NTOC_SERVER_IF ($NTOC_NET.0/24)"
echo "   vpn: $vpn_if ($NTOC_VPN_NET.1/24, UDP port $NTOC_VPN_PORT, riverside-coop's endpoint on 127.0.0.1)"

# ---------------------------------------------------------------------------
step "1. dependencies: starting ntari-dns starts ntari-domain first"
for s in "${ALL[@]}"; do expect_status "$s" stopped; done
rcs ntari-dns start || fail "rc-service ntari-dns start failed"
expect_status ntari-domain started
expect_status ntari-dns started
expect_status ntari-ntp stopped
expect_status ntari-dhcp stopped
expect_status ntari-vpn stopped
expect_status ntari-federation stopped
grep -q "<Domain Id=\"$domain\">" /etc/ntari/cyclonedds.xml ||
  fail "/etc/ntari/cyclonedds.xml does not name domain $domain: $(cat /etc/ntari/cyclonedds.xml 2>&1)"
grep -q '<Peer address="127.0.0.1"/>' /etc/ntari/cyclonedds.xml || fail "cyclonedds.xml: DDS not kept on loopback"
ok "ntari-domain rendered /etc/ntari/cyclonedds.xml (domain $domain, loopback)"
# The rendering happened before the node started.
[ "$(printf '%s\n' "$OUT" | grep -n -m1 'Rendering the DDS domain' | cut -d: -f1)" -lt \
  "$(printf '%s\n' "$OUT" | grep -n -m1 'Starting ntari-dns' | cut -d: -f1)" ] ||
  fail "ntari-domain did not start before ntari-dns"
ok "ntari-domain started before ntari-dns"
wait_running dns
wait_for 15 "dnsmasq to answer hub.coop.lan on port $NTOC_DNS_PORT" dig_hub
ok "dnsmasq under ntari-dns answers: hub.coop.lan = 127.0.0.1"
record dns
rcs ntari-dns stop || fail "rc-service ntari-dns stop failed"
expect_status ntari-dns stopped
gone "${NODE[dns]}" || fail "the ntari-dns node ${NODE[dns]} is still running after stop"
wait_for 5 "dnsmasq to be gone" no_daemon dns
ok "node ${NODE[dns]} and dnsmasq ${DMN[dns]} are gone"
expect_status ntari-domain started
rcs ntari-domain stop || fail "rc-service ntari-domain stop failed"
expect_status ntari-domain stopped

# ---------------------------------------------------------------------------
step "2. boot order: all six in the default runlevel, then \`openrc default\`"
for s in ntari-federation ntari-vpn ntari-dhcp ntari-dns ntari-ntp ntari-domain; do
  rc-update add "$s" default >/dev/null || fail "rc-update add $s default"
done
echo "   \$ openrc default"
OUT=$(timeout 120 openrc default 2>&1)
rc=$?
printf '%s\n' "$OUT" | sed 's/^/   | /'
[ "$rc" = 0 ] || fail "openrc default exited $rc"
order=$(printf '%s\n' "$OUT" | grep -o -E 'Rendering the DDS domain|Starting ntari-(ntp|dns|dhcp|vpn|federation)' | tr '\n' ',')
# ntari-vpn is only `after ntari-ntp`: anywhere after it, and
# ntari-federation anywhere after ntari-vpn; the others in their fixed
# order.
case "$order" in
  *"Starting ntari-ntp,"*"Starting ntari-vpn,"*"Starting ntari-federation,"*) ;;
  *) fail "start order was: $order (ntari-vpn not once, after ntari-ntp, or ntari-federation not once, after ntari-vpn)" ;;
esac
rest=${order/Starting ntari-vpn,/}
[ "${rest/Starting ntari-federation,/}" = "Rendering the DDS domain,Starting ntari-ntp,Starting ntari-dns,Starting ntari-dhcp," ] ||
  fail "start order was: $order"
ok "order: ${order%,}"
for s in "${ALL[@]}"; do expect_status "$s" started; done

# ---------------------------------------------------------------------------
step "3. the nodes work under OpenRC"
wait_running "${SERVICES[@]}"
health "$domain" "${SERVICES[@]}"
wait_for 15 "dnsmasq to answer" dig_hub
ok "DNS answers hub.coop.lan"
echo "   \$ nsenter --net=<client namespace> udhcpc -i $NTOC_CLIENT_IF -n -q"
lease=$(timeout 30 nsenter --net=/run/ntoc-client.netns udhcpc -i "$NTOC_CLIENT_IF" -n -q -t 8 -T 1 \
  -x hostname:openrc-client -s /bin/true 2>&1)
printf '%s\n' "$lease" | sed 's/^/   | /'
printf '%s\n' "$lease" | grep -q -E "lease of $NTOC_NET\.1[0-9][0-9] obtained" ||
  fail "no DHCP lease from the pool of ntari-dhcp"
ok "a client got a lease from Kea under ntari-dhcp"
test -d /var/lib/ntari/dhcp && test -f /var/lib/ntari/dhcp/leases4.csv ||
  fail "no lease database in /var/lib/ntari/dhcp"
ok "lease database in /var/lib/ntari/dhcp: $(ls /var/lib/ntari/dhcp | tr '\n' ' ')"
wait_for 15 "$vpn_if with its address, route, port and 2 peers" vpn_if_ready
echo "   \$ wg show $vpn_if"
wg show "$vpn_if" | sed 's/^/   | /'
ip -br address show dev "$vpn_if" | sed 's/^/   | /'
ok "the WireGuard interface of ntari-vpn: $NTOC_VPN_NET.1/24, route $NTOC_VPN_ROUTED.0/24, port $NTOC_VPN_PORT, 2 peers"
grep -q "^$vpn_if boringtun\$" /run/ntari/vpn/interface ||
  fail "ntari-vpn did not record a boringtun $vpn_if: $(cat /run/ntari/vpn/interface 2>&1)"
[ "$(stat -c %a /var/lib/ntari/vpn/private.key 2>&1)" = 600 ] ||
  fail "the hub's private key: $(stat -c '%n %a' /var/lib/ntari/vpn/private.key 2>&1)"
ok "boringtun carries it; the hub's key /var/lib/ntari/vpn/private.key (0600) was created"
for svc in "${SERVICES[@]}"; do
  # ntari-federation's state dir (its audit log) is root's only.
  state_mode=755
  [ "$svc" = federation ] && state_mode=700
  [ "$(stat -c %a "/run/ntari/$svc")" = 755 ] && [ "$(stat -c %a "/var/lib/ntari/$svc")" = "$state_mode" ] ||
    fail "run/state dir modes of $svc: $(stat -c '%n %a' "/run/ntari/$svc" "/var/lib/ntari/$svc")"
  [ -s "/var/log/ntari/$svc.log" ] || fail "/var/log/ntari/$svc.log is empty"
done
ok "/run/ntari/<svc> (0755), /var/lib/ntari/<svc> (0755; federation 0700) and /var/log/ntari/<svc>.log exist"
[ -z "$(ls -A /etc/ntari/federation)" ] || fail "/etc/ntari/federation is not empty: $(ls -A /etc/ntari/federation)"
[ -s /run/ntari/federation/bridge.json ] || fail "no bridge plan /run/ntari/federation/bridge.json"
ok "the federation bridge $(daemon_pid federation "$(node_pid federation)") runs with no agreement (/etc/ntari/federation empty), on $vpn_if"

# ---------------------------------------------------------------------------
step "4. stopping ntari-dns leaves the other nodes running"
record "${SERVICES[@]}"
rcs ntari-dns stop || fail "rc-service ntari-dns stop failed"
expect_status ntari-dns stopped
wait_for 5 "the ntari-dns node to be gone" gone "${NODE[dns]}"
wait_for 5 "dnsmasq to be gone" no_daemon dns
finalized dns
ok "ntari-dns node ${NODE[dns]} (orderly shutdown) and dnsmasq ${DMN[dns]} are gone"
unchanged ntp dhcp vpn federation
rcs ntari-dns start || fail "rc-service ntari-dns start failed"
wait_running dns
unchanged ntp dhcp vpn federation

record "${SERVICES[@]}"
rcs ntari-federation stop || fail "rc-service ntari-federation stop failed"
expect_status ntari-federation stopped
wait_for 15 "the ntari-federation node to be gone" gone "${NODE[federation]}"
wait_for 5 "the bridge to be gone" no_daemon federation
finalized federation
ok "ntari-federation node ${NODE[federation]} (orderly shutdown) and bridge ${DMN[federation]} are gone"
unchanged ntp dns dhcp vpn
rcs ntari-federation start || fail "rc-service ntari-federation start failed"
expect_status ntari-federation started
wait_running federation
unchanged ntp dns dhcp vpn

# ntari-federation needs ntari-vpn: stopping the VPN stops it first.
record "${SERVICES[@]}"
rcs ntari-vpn stop || fail "rc-service ntari-vpn stop failed"
expect_status ntari-vpn stopped
expect_status ntari-federation stopped
for svc in vpn federation; do
  wait_for 15 "the ntari-$svc node to be gone" gone "${NODE[$svc]}"
  wait_for 5 "${DAEMON[$svc]} to be gone" no_daemon "$svc"
  finalized "$svc"
done
ok "stopping ntari-vpn stopped ntari-federation too (need): nodes ${NODE[vpn]}, ${NODE[federation]}, boringtun ${DMN[vpn]} and bridge ${DMN[federation]} are gone"
unchanged ntp dns dhcp
expect_status ntari-domain started
# And starting ntari-federation starts ntari-vpn first.
rcs ntari-federation start || fail "rc-service ntari-federation start failed"
[ "$(printf '%s\n' "$OUT" | grep -n -m1 'Starting ntari-vpn' | cut -d: -f1)" -lt \
  "$(printf '%s\n' "$OUT" | grep -n -m1 'Starting ntari-federation' | cut -d: -f1)" ] 2>/dev/null ||
  fail "rc-service ntari-federation start did not start ntari-vpn first"
expect_status ntari-vpn started
expect_status ntari-federation started
wait_running vpn federation
wait_for 15 "$vpn_if to be back" vpn_if_ready
ok "starting ntari-federation started ntari-vpn first (need)"
unchanged ntp dns dhcp

# ---------------------------------------------------------------------------
step "5. restart: each node service alone, then the domain"
for svc in "${SERVICES[@]}"; do
  others=()
  for o in "${SERVICES[@]}"; do [ "$o" = "$svc" ] || others+=("$o"); done
  # ntari-federation needs ntari-vpn: a restart of the VPN restarts it.
  restarted=("$svc")
  if [ "$svc" = vpn ]; then
    restarted+=(federation)
    others=("${others[@]/federation/}")
    read -ra others <<<"${others[*]}"
  fi
  record "${SERVICES[@]}"
  rcs "ntari-$svc" restart || fail "rc-service ntari-$svc restart failed"
  for r in "${restarted[@]}"; do
    expect_status "ntari-$r" started
    wait_running "$r"
    new=$(node_pid "$r")
    [ "$new" != "${NODE[$r]}" ] || fail "ntari-$svc restart kept the ntari-$r node ${NODE[$r]}"
    gone "${NODE[$r]}" || fail "the old ntari-$r node ${NODE[$r]} still runs"
    gone "${DMN[$r]}" || fail "the old ${DAEMON[$r]} ${DMN[$r]} still runs"
    ok "ntari-$r: node ${NODE[$r]} -> $new, old ${DAEMON[$r]} ${DMN[$r]} gone"
  done
  unchanged "${others[@]}"
done
wait_for 15 "dnsmasq to answer after its restart" dig_hub
wait_for 15 "$vpn_if to be back after its restart" vpn_if_ready

new_domain=$(( domain == 232 ? 100 : domain + 1 ))
echo "   (domain_id $domain -> $new_domain in /etc/ntari/ntari.toml)"
sed -i "s/^domain_id = .*/domain_id = $new_domain/" /etc/ntari/ntari.toml
record "${SERVICES[@]}"
rcs ntari-domain restart || fail "rc-service ntari-domain restart failed"
grep -q "<Domain Id=\"$new_domain\">" /etc/ntari/cyclonedds.xml || fail "cyclonedds.xml not re-rendered"
for svc in "${SERVICES[@]}"; do
  expect_status "ntari-$svc" started
  wait_running "$svc"
  [ "$(node_pid "$svc")" != "${NODE[$svc]}" ] || fail "ntari-$svc was not restarted with the domain"
  gone "${DMN[$svc]}" || fail "the old ${DAEMON[$svc]} ${DMN[$svc]} still runs"
done
ok "ntari-domain restart re-rendered the config and restarted the five nodes"
domain=$new_domain

# ---------------------------------------------------------------------------
step "6. supervise-daemon respawns a node killed with SIGKILL"
respawned() { local p; p=$(node_pid "$1"); [ -n "$p" ] && [ "$p" != "${NODE[$1]}" ]; }
for svc in ntp vpn federation; do
  others=()
  for o in "${SERVICES[@]}"; do [ "$o" = "$svc" ] || others+=("$o"); done
  record "${SERVICES[@]}"
  echo "   \$ kill -9 ${NODE[$svc]}   # the ntari-$svc node"
  kill -9 "${NODE[$svc]}"
  wait_for 20 "a new ntari-$svc node" respawned "$svc"
  wait_running "$svc"
  expect_status "ntari-$svc" started
  wait_for 5 "${DAEMON[$svc]} ${DMN[$svc]} to die with its node" gone "${DMN[$svc]}"
  ok "node ${NODE[$svc]} -> $(node_pid "$svc"); ${DAEMON[$svc]} ${DMN[$svc]} died with its node -> $(daemon_pid "$svc" "$(node_pid "$svc")")"
  unchanged "${others[@]}"
done
wait_for 15 "$vpn_if to be back with the new tunnel" vpn_if_ready
ok "$vpn_if is back: address, route, port and both peers"
health "$domain" "${SERVICES[@]}"

# ---------------------------------------------------------------------------
step "7. a bad config is a clear OpenRC error, not a respawn loop"
cp /etc/ntari/services/dns.toml /tmp/dns.toml.good
record dns
sed -i "s/^port = .*/port = 0/" /etc/ntari/services/dns.toml
line=$(grep -n '^port = 0$' /etc/ntari/services/dns.toml | cut -d: -f1)
if rcs ntari-dns reload; then fail "reload accepted a bad config"; fi
printf '%s\n' "$OUT" | grep -q "dns.toml:$line: port" || fail "reload's error does not name dns.toml:$line: port"
unchanged dns
ok "reload refused the bad config; the running node was left alone"
rcs ntari-dns stop || fail "rc-service ntari-dns stop failed"
if rcs ntari-dns start; then fail "ntari-dns started with port = 0"; fi
printf '%s\n' "$OUT" | grep -q "dns.toml:$line: port" || fail "the start error does not name dns.toml:$line: port"
ok "start failed, naming /etc/ntari/services/dns.toml:$line: port"
code=$(status_code ntari-dns)
[ "$code" = 3 ] || [ "$code" = 1 ] || fail "ntari-dns status after a failed start: $code"
sleep 3
no_node dns || fail "an ntari-dns node runs after the failed start: $(live_named ntari-dns)"
no_daemon dns || fail "dnsmasq runs after the failed start"
ok "no node, no dnsmasq, nothing respawning (status exit $code)"
cp /tmp/dns.toml.good /etc/ntari/services/dns.toml
rcs ntari-dns checkconfig || fail "checkconfig refused the good config"
rcs ntari-dns start || fail "rc-service ntari-dns start failed with the good config"
wait_running dns
wait_for 15 "dnsmasq to answer" dig_hub
ok "the fixed config starts"

cp /etc/ntari/services/vpn.toml /tmp/vpn.toml.good
record vpn
# Without the last peer (treasurer-laptop, the file's last [[peers]] block).
last=$(grep -n '^\[\[peers\]\]$' /tmp/vpn.toml.good | tail -n 1 | cut -d: -f1)
head -n "$((last - 1))" /tmp/vpn.toml.good >/etc/ntari/services/vpn.toml
[ "$(grep -c '^\[\[peers\]\]$' /etc/ntari/services/vpn.toml)" = 1 ] &&
  ! grep -q treasurer-laptop /etc/ntari/services/vpn.toml ||
  fail "could not drop the peer treasurer-laptop from vpn.toml"
rcs ntari-vpn reload || fail "rc-service ntari-vpn reload failed"
wait_for 15 "$vpn_if to have 1 peer" vpn_if_ready 1
unchanged vpn
ok "reload applied the peer change live: 1 peer, same node and tunnel"
cp /tmp/vpn.toml.good /etc/ntari/services/vpn.toml
rcs ntari-vpn reload || fail "rc-service ntari-vpn reload failed"
wait_for 15 "$vpn_if to have 2 peers again" vpn_if_ready 2
unchanged vpn

# ---------------------------------------------------------------------------
step "8. stopping ntari-domain stops every node that needs it"
record "${SERVICES[@]}"
rcs ntari-domain stop || fail "rc-service ntari-domain stop failed"
for s in "${ALL[@]}"; do expect_status "$s" stopped; done
for svc in "${SERVICES[@]}"; do
  wait_for 5 "ntari-$svc to be gone" no_node "$svc"
  wait_for 5 "${DAEMON[$svc]} to be gone" no_daemon "$svc"
done
wait_for 5 "every guard to be gone" no_guard
ok "no ntari-* node, guard, chronyd, dnsmasq, kea-dhcp4, boringtun or bridge left"
wait_for 5 "$vpn_if to be gone" vpn_if_gone
ok "the WireGuard interface $vpn_if is gone"
for svc in "${SERVICES[@]}"; do
  finalized "$svc"
done
ok "every node ended with its lifecycle shutdown (log: ... to=finalized)"
sups=$(pgrep -f '^supervise-daemon ntari-')
[ -z "$sups" ] || fail "supervise-daemon still runs: $sups"
ok "no supervise-daemon left"

# ---------------------------------------------------------------------------
step "9. a bad ntari.toml: ntari-domain fails with ntari-admin's message, no node starts"
sed -i "s/^domain_id = .*/domain_id = 999/" /etc/ntari/ntari.toml
line=$(grep -n '^domain_id = 999$' /etc/ntari/ntari.toml | cut -d: -f1)
if rcs ntari-ntp start; then fail "ntari-ntp started with domain_id = 999 in ntari.toml"; fi
printf '%s\n' "$OUT" | grep -q "ntari.toml:$line: domain_id: 999 is out of range" ||
  fail "the error does not name ntari.toml:$line: domain_id"
expect_status ntari-domain stopped
expect_status ntari-ntp stopped
no_node ntp || fail "an ntari-ntp node runs"
ok "ntari-ntp did not start; the error names /etc/ntari/ntari.toml:$line: domain_id"

# ---------------------------------------------------------------------------
step "10. ntari-identity: slapd, krb5kdc and kadmind under one node"
# "<name> <pid>" of each daemon behind a guard of node <svc> (a child
# `ntari-<svc> __ntari-guard <daemon…>` of the node), in the order the
# <name>:<process name> pairs are given (the start order).
guarded_daemons() { # <svc> <name>:<comm>...
  local node child pid pair
  node=$(node_pid "$1")
  shift
  [ -n "$node" ] || return 0
  for pair in "$@"; do
    for child in $(pgrep -P "$node"); do
      # (a child may be gone by now: 2>/dev/null first, for the redirection's error)
      [ "$(tr '\0' '\n' 2>/dev/null <"/proc/$child/cmdline" | sed -n 2p)" = __ntari-guard ] || continue
      for pid in $(pgrep -P "$child"); do
        alive "$pid" && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "${pair#*:}" ] && echo "${pair%%:*} $pid"
      done
    done
  done
  return 0
}
identity_tree() { guarded_daemons identity slapd:slapd krb5kdc:krb5kdc kadmind:kadmind; }
has_identity_daemons() { [ "$(identity_tree | wc -l)" = 3 ]; }
no_identity_daemons() { [ -z "$(pgrep -x slapd)$(pgrep -x krb5kdc)$(pgrep -x kadmind)" ]; }
# The daemons' pids, in start order.
identity_pids() { identity_tree | cut -d' ' -f2 | tr '\n' ' ' | sed 's/ $//'; }
# The daemons as /ntari/<svc>/status names them ("<name> <pid>", in its
# order), from the first status with all <count> running.
status_daemons() { # <domain> <svc> <count>
  timeout 45 "$python" - "$repo/tests/interop" "$@" <<'PY'
import json, sys, time
sys.path.insert(0, sys.argv[1])
from rosgraph import Graph
from ros_types import String
with Graph(int(sys.argv[2])) as graph:
    status = graph.subscribe(f"/ntari/{sys.argv[3]}/status", String)
    count = int(sys.argv[4])
    deadline, last = time.monotonic() + 30, None
    while time.monotonic() < deadline:
        for sample in status.poll():
            last = json.loads(sample.data)["payload"]
            daemons = last.get("daemons") or []
            if len(daemons) == count and all(d["running"] for d in daemons):
                for d in daemons:
                    print(d["name"], d["pid"])
                sys.exit(0)
        time.sleep(0.05)
print(f"no status with {count} running daemons within 30 s; last:", json.dumps(last))
sys.exit(1)
PY
}
identity_status() { status_daemons "$1" identity 3; }
# health() for ntari-identity (its status' `daemon` is slapd), with its
# status read at the same time: the three daemons it names are the three
# behind the node's guards.
identity_healthy() {
  local st out tree
  identity_status "$domain" >/tmp/identity.status 2>&1 &
  st=$!
  health "$domain" identity
  wait "$st" || fail "ntari-identity's status: $(cat /tmp/identity.status)"
  out=$(cat /tmp/identity.status)
  tree=$(identity_tree)
  [ "$out" = "$tree" ] ||
    fail "ntari-identity's status names $(echo $out), but behind its guards run $(echo $tree)"
  ok "its status names $(echo $out): the daemons behind the node's guards"
}

# Section 9 left a bad domain_id: the domain of 5-8 again.
sed -i "s/^domain_id = .*/domain_id = $domain/" /etc/ntari/ntari.toml
expect_status ntari-identity stopped
rcs ntari-identity start || fail "rc-service ntari-identity start failed"
expect_status ntari-domain started
expect_status ntari-identity started
wait_for 45 "the ntari-identity node and its three daemons" has_identity_daemons
identity_healthy
slapd_pid=$(identity_tree | sed -n 's/^slapd //p')
uids=$(sed -n 's/^Uid:[[:space:]]*//p' "/proc/$slapd_pid/status" | tr -s '[:space:]' ' ' | sed 's/ $//')
read -r ruid euid suid fsuid <<<"$uids"
for u in "$ruid" "$euid" "$suid" "$fsuid"; do
  [ -n "$u" ] && [ "$u" != 0 ] || fail "slapd $slapd_pid runs as root (Uid: $uids)"
done
[ "$(getent passwd "$euid" | cut -d: -f1)" = openldap ] || fail "slapd $slapd_pid runs as uid $euid, not openldap"
ok "slapd $slapd_pid runs as openldap (Uid: $uids)"
state=/var/lib/ntari/identity
[ -s "$state/provisioned.json" ] && grep -q '"stage": *"done"' "$state/provisioned.json" ||
  fail "no finished $state/provisioned.json: $(cat "$state/provisioned.json" 2>&1)"
[ "$(stat -c %a "$state/stash" 2>&1)" = 600 ] || fail "the stash: $(stat -c '%n %a' "$state/stash" 2>&1)"
ok "realm provisioned: $state/provisioned.json $(tr -d ' \n' <"$state/provisioned.json"), stash 0600"
cp "$state/provisioned.json" /tmp/provisioned.json.first

node=$(node_pid identity)
pids=$(identity_pids)
echo "   \$ kill -9 $node   # the ntari-identity node (slapd, krb5kdc, kadmind: $pids)"
kill -9 "$node"
identity_respawned() { local p; p=$(node_pid identity); [ -n "$p" ] && [ "$p" != "$node" ]; }
wait_for 20 "a new ntari-identity node" identity_respawned
for pid in $pids; do
  wait_for 10 "daemon $pid to die with its node" gone "$pid"
done
wait_for 45 "three new daemons under the new node" has_identity_daemons
expect_status ntari-identity started
identity_healthy
cmp -s /tmp/provisioned.json.first "$state/provisioned.json" ||
  fail "provisioned.json changed: $(cat /tmp/provisioned.json.first) -> $(cat "$state/provisioned.json")"
ok "node $node -> $(node_pid identity), daemons $pids -> $(identity_pids); provisioned.json unchanged"

node=$(node_pid identity)
pids=$(identity_pids)
cp /etc/ntari/services/identity.toml /tmp/identity.toml.good
sed -i 's/^enctypes = .*/enctypes = ["rc4-hmac"]/' /etc/ntari/services/identity.toml
line=$(grep -n '^enctypes = \["rc4-hmac"\]$' /etc/ntari/services/identity.toml | cut -d: -f1)
[ -n "$line" ] || fail "could not set enctypes in identity.toml"
if rcs ntari-identity reload; then fail "reload accepted enctypes = [\"rc4-hmac\"]"; fi
printf '%s\n' "$OUT" | grep -q "identity.toml:$line: enctypes" ||
  fail "reload's error does not name identity.toml:$line: enctypes"
sleep 1
[ "$(node_pid identity)" = "$node" ] && [ "$(identity_pids)" = "$pids" ] ||
  fail "the refused reload disturbed ntari-identity: node $node -> $(node_pid identity), daemons $pids -> $(identity_pids)"
expect_status ntari-identity started
ok "reload refused the RC4 enctype (identity.toml:$line: enctypes); node $node and daemons $pids untouched"
cp /tmp/identity.toml.good /etc/ntari/services/identity.toml
rcs ntari-identity checkconfig || fail "checkconfig refused the restored identity.toml"

rcs ntari-identity stop || fail "rc-service ntari-identity stop failed"
expect_status ntari-identity stopped
wait_for 5 "the ntari-identity node to be gone" no_node identity
wait_for 5 "slapd, krb5kdc and kadmind to be gone" no_identity_daemons
wait_for 5 "every guard to be gone" no_guard
finalized identity
ok "node $node, daemons $pids and their guards are gone; the node ended with its lifecycle shutdown"
rcs ntari-domain stop || fail "rc-service ntari-domain stop failed"
sups=$(pgrep -f '^supervise-daemon ntari-')
[ -z "$sups" ] || fail "supervise-daemon still runs: $sups"
ok "no supervise-daemon left"

# ---------------------------------------------------------------------------
step "11. ntari-files: smbd and NFS-Ganesha under one node"
# The daemons by the names its status gives them, and their process names.
files_tree() { guarded_daemons files smbd:smbd ganesha:ganesha.nfsd; }
has_files_daemons() { [ "$(files_tree | wc -l)" = 2 ]; }
files_pids() { files_tree | cut -d' ' -f2 | tr '\n' ' ' | sed 's/ $//'; }
# Every live smbd (the daemon and its per-client children), samba-dcerpcd,
# rpcd_* and ganesha.nfsd in this PID namespace: only ntari-files runs them.
# (One pgrep each: pgrep warns about a pattern longer than a process name.)
samba_and_nfs() {
  local name pid out=
  for name in smbd samba-dcerpcd 'rpcd_[a-z]+' 'ganesha\.nfsd'; do
    for pid in $(pgrep -x "$name"); do alive "$pid" && out="$out $pid"; done
  done
  echo "${out# }"
}
no_samba_or_nfs() { [ -z "$(samba_and_nfs)" ]; }
all_gone() { local pid; for pid in "$@"; do alive "$pid" && return 1; done; return 0; }
# health() for ntari-files, its status read at the same time: the two
# daemons it names are the two behind the node's guards.
files_healthy() {
  local st out tree
  status_daemons "$domain" files 2 >/tmp/files.status 2>&1 &
  st=$!
  health "$domain" files
  wait "$st" || fail "ntari-files' status: $(cat /tmp/files.status)"
  out=$(cat /tmp/files.status)
  tree=$(files_tree)
  [ "$out" = "$tree" ] ||
    fail "ntari-files' status names ${out//$'\n'/, }, but behind its guards run ${tree//$'\n'/, }"
  ok "its status names ${out//$'\n'/, }: the daemons behind the node's guards"
}

expect_status ntari-files stopped
rcs ntari-files start || fail "rc-service ntari-files start failed"
expect_status ntari-domain started
expect_status ntari-files started
wait_for 30 "the ntari-files node, smbd and ganesha.nfsd" has_files_daemons
files_healthy
state=/var/lib/ntari/files
if [ "$(stat -c %a "$state")" != 755 ] || [ "$(stat -c %a "$state/samba/private")" != 700 ]; then
  fail "state dir modes: $(stat -c '%n %a' "$state" "$state/samba/private" 2>&1)"
fi
ok "$state (0755), the passdb's $state/samba/private (0700)"

# A guest's file over SMB, read back over NFSv4; a share listing (srvsvc)
# starts smbd's helpers.
smb_port=$NTOC_FILES_SMB_PORT nfs_port=$NTOC_FILES_NFS_PORT
echo "   \$ smbclient -p $smb_port -N //127.0.0.1/public -c 'put /etc/hostname h'"
out=$(cd /tmp && timeout 30 smbclient -p "$smb_port" -N //127.0.0.1/public -c 'put /etc/hostname h' 2>&1) ||
  { printf '%s\n' "$out" | sed 's/^/   | /'; fail "smbclient could not put a file on //127.0.0.1/public"; }
echo "   \$ nfs-cat 'nfs://127.0.0.1/public/h?version=4&nfsport=$nfs_port'"
timeout 30 nfs-cat "nfs://127.0.0.1/public/h?version=4&nfsport=$nfs_port" >/tmp/h.nfs 2>/tmp/h.nfs.err ||
  fail "nfs-cat failed: $(cat /tmp/h.nfs.err)"
cmp -s /etc/hostname /tmp/h.nfs || fail "nfs-cat read $(od -c /tmp/h.nfs | head -n 3), not /etc/hostname"
ok "put over SMB as the guest, the same bytes read over NFSv4 ($(wc -c </tmp/h.nfs) bytes)"
# A member (ntari-admin, as an operator adds her) lists the shares: the
# listing's RPC pipe starts smbd's helpers. (Guests get no IPC$.)
member=ntocmember password=openrc-test-pw-$RANDOM   # (the overlay: a fresh /etc/passwd every run)
echo "   \$ ntari-admin files user add $member --password-stdin"
out=$(printf '%s\n' "$password" | timeout 30 ntari-admin files user add "$member" --password-stdin 2>&1) ||
  { printf '%s\n' "$out" | sed 's/^/   | /'; fail "ntari-admin files user add $member failed"; }
echo "   \$ smbclient -p $smb_port -U $member -L 127.0.0.1"
out=$(timeout 30 smbclient -p "$smb_port" -U "$member%$password" -L 127.0.0.1 2>&1)
printf '%s\n' "$out" | sed 's/^/   | /'
printf '%s\n' "$out" | grep -q -E '^[[:space:]]+members[[:space:]]+Disk' || fail "$member's share listing lacks members"

node=$(node_pid files)
pids=$(files_pids)
old=$(samba_and_nfs)
echo "   \$ kill -9 $node   # the ntari-files node (smbd, ganesha.nfsd: $pids; with smbd's helpers: $old)"
kill -9 "$node"
files_respawned() { local p; p=$(node_pid files); [ -n "$p" ] && [ "$p" != "$node" ]; }
wait_for 20 "a new ntari-files node" files_respawned
# shellcheck disable=SC2086
wait_for 10 "smbd, its helpers and ganesha.nfsd of node $node to die with it" all_gone $old
wait_for 30 "smbd and ganesha.nfsd under the new node" has_files_daemons
expect_status ntari-files started
files_healthy
ok "node $node -> $(node_pid files), daemons $pids -> $(files_pids); none of $old left"

node=$(node_pid files)
pids=$(files_pids)
rcs ntari-files stop || fail "rc-service ntari-files stop failed"
expect_status ntari-files stopped
wait_for 5 "the ntari-files node to be gone" no_node files
wait_for 5 "smbd, samba-dcerpcd, rpcd_* and ganesha.nfsd to be gone" no_samba_or_nfs
wait_for 5 "every guard to be gone" no_guard
finalized files
ok "node $node, daemons $pids, smbd's helpers and the guards are gone; the node ended with its lifecycle shutdown"
rcs ntari-domain stop || fail "rc-service ntari-domain stop failed"
sups=$(pgrep -f '^supervise-daemon ntari-')
[ -z "$sups" ] || fail "supervise-daemon still runs: $sups"
ok "no supervise-daemon left"

echo
echo "== all OpenRC checks passed"
