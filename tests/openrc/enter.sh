#!/usr/bin/env bash
# Runs as PID 1 of the test's PID namespace, in its private mount namespace
# (run.sh starts it with unshare): builds the test root and runs checks.sh
# chrooted into it. Every mount made here disappears with the namespace.
#
# The root: an overlay with the real / as its (read-only) lower layer and a
# tmpfs as upper layer, so installing OpenRC and the services, and all they
# write, touch nothing outside. Inside: a new /proc (this PID namespace),
# the host's /dev, a fresh tmpfs /run and /tmp, and a fresh sysfs, not the
# host's /sys: no cgroup file system is mounted in it (/sys/fs/cgroup is an
# empty directory), so OpenRC finds no cgroups to move service processes
# into (through the host's /sys it would move them into the host's).
# ntari-vpn needs /sys: /sys/class/net/<interface> (its probe) and
# /sys/module/wireguard (backend "auto").
set -euo pipefail
work=$NTOC_WORK repo=$NTOC_REPO cache=$NTOC_CACHE

mount -t tmpfs -o mode=0755 ntoc-work "$work"
mkdir "$work/upper" "$work/overlay-work" "$work/root"
mount -t overlay ntoc-root -o "lowerdir=/,upperdir=$work/upper,workdir=$work/overlay-work" "$work/root"
r=$work/root
mount -t proc proc "$r/proc"
mount -t sysfs ntoc-sys "$r/sys"
mount --rbind /dev "$r/dev"
mount -t tmpfs -o mode=0755 ntoc-run "$r/run"
mount -t tmpfs -o mode=1777 ntoc-tmp "$r/tmp"
# ntari-files' state dir (its shares) on a tmpfs: NFS-Ganesha serves files
# by their kernel file handles (name_to_handle_at), which the overlay does
# not give (no nfs_export), so its exports could not be looked up there.
mkdir -p "$r/var/lib/ntari/files"
mount -t tmpfs -o mode=0755 ntoc-files "$r/var/lib/ntari/files"

# OpenRC: the unpacked packages over the overlay (Debian's /lib, /sbin and
# /bin are symlinks into /usr: keep them).
tar -C "$cache/root" -cf - . | tar -C "$r" -xf - --keep-directory-symlink
# Only our services in /etc/init.d, so the dependency tree is ours alone
# (the host's LSB scripts are hidden by the overlay, not removed).
rm -rf "$r/etc/init.d" "$r/etc/runlevels"
mkdir -p "$r/etc/init.d" "$r/etc/conf.d" "$r/etc/runlevels"/{sysinit,boot,default,nonetwork,shutdown}
for svc in ntari-domain ntari-ntp ntari-dns ntari-dhcp ntari-vpn ntari-federation ntari-identity ntari-files; do
  install -m 0755 "$repo/openrc/$svc.initd" "$r/etc/init.d/$svc"
  install -m 0644 "$repo/openrc/$svc.confd" "$r/etc/conf.d/$svc"
done
# A fresh OpenRC state dir, as at boot.
mkdir -p "$r/run/openrc"/{daemons,exclusive,failed,hotplugged,inactive,init.d,options,scheduled,started,starting,stopping,tmp,wasinactive}
echo default >"$r/run/openrc/softlevel"

# The binaries under test at their installed paths.
for bin in ntari-ntp ntari-dns ntari-dhcp ntari-vpn ntari-federation ntari-identity ntari-files ntari-admin; do
  : >"$r/usr/bin/$bin"
  mount --bind "$cache/bin/$bin" "$r/usr/bin/$bin"
done

# The DHCP client's network namespace, reachable from inside the chroot
# (whose /run is not the host's).
: >"$r/run/ntoc-client.netns"
mount --bind "/run/netns/$NTOC_NETNS" "$r/run/ntoc-client.netns"

# NTARI configs: the node-wide one (random domain, DDS on loopback) and
# the examples, on loopback and free high ports; DHCP on the veth pair;
# the VPN as run.sh explains (its interface is in the host's network
# namespace: a name of this run, RFC 2544 networks, endpoint on loopback).
domain=$((100 + RANDOM % 100))
ntp_port=$((20000 + RANDOM % 10000))
dns_port=$((ntp_port + 1))
vpn_port=$((ntp_port + 2))
vpn_peer_port=$((ntp_port + 3)) # nothing listens there: handshakes end on loopback
metrics=$((30000 + RANDOM % 10000))
rm -rf "$r/etc/ntari"
mkdir -p "$r/etc/ntari/services"
cat >"$r/etc/ntari/ntari.toml" <<EOF
cooperative = "openrc-test"
domain_id = $domain
log_level = "info"
dds_interfaces = ["127.0.0.1"]
dds_peers = ["127.0.0.1"]
EOF
sed -e "s/^serve_port = .*/serve_port = $ntp_port/" "$repo/examples/ntp.toml" >"$r/etc/ntari/services/ntp.toml"
sed -e "s/^port = .*/port = $dns_port/" "$repo/examples/dns.toml" >"$r/etc/ntari/services/dns.toml"
sed -e "s/ntari-demo0/$NTOC_SERVER_IF/g" -e "s/192\.168\.77\./$NTOC_NET./g" \
  "$repo/examples/dhcp.toml" >"$r/etc/ntari/services/dhcp.toml"
grep -q "^serve_port = $ntp_port\$" "$r/etc/ntari/services/ntp.toml"
grep -q "^port = $dns_port\$" "$r/etc/ntari/services/dns.toml"
grep -q "\"$NTOC_SERVER_IF\"" "$r/etc/ntari/services/dhcp.toml"
vpn_sed=(
  -e "s/^interface = .*/interface = \"$NTOC_VPN_IF\"/"
  -e "s/^listen_port = .*/listen_port = $vpn_port/"
  -e "s/^endpoint = .*/endpoint = \"127.0.0.1:$vpn_peer_port\"/"
  -e "s/10\.77\.0\./$NTOC_VPN_NET./g" -e "s/10\.78\.0\./$NTOC_VPN_ROUTED./g"
)
# The checks follow the tunnel process: where this kernel has WireGuard,
# "auto" would pick it (no process), so the test asks for boringtun.
if [ -e /sys/module/wireguard ]; then vpn_sed+=(-e 's/^backend = .*/backend = "boringtun"/'); fi
sed "${vpn_sed[@]}" "$repo/examples/vpn.toml" >"$r/etc/ntari/services/vpn.toml"
grep -q "^interface = \"$NTOC_VPN_IF\"\$" "$r/etc/ntari/services/vpn.toml"
grep -q "^listen_port = $vpn_port\$" "$r/etc/ntari/services/vpn.toml"
grep -q "^addresses = \[\"$NTOC_VPN_NET.1/24\"\]\$" "$r/etc/ntari/services/vpn.toml"
# Every endpoint on loopback, and nothing of the example's networks left
# (`! cmd` would not stop set -e).
if grep -v '^#' "$r/etc/ntari/services/vpn.toml" | grep '^endpoint' |
  grep -v "^endpoint = \"127\.0\.0\.1:$vpn_peer_port\"\$" ||
  grep -v '^#' "$r/etc/ntari/services/vpn.toml" | grep -E 'wg-coop|192\.0\.2\.|10\.7[78]\.'; then
  echo "enter.sh: the test's vpn.toml still names a non-loopback endpoint or the example's networks" >&2
  exit 1
fi
# ntari-federation: hub A's example on the run's WireGuard interface, with
# an empty agreements dir (no agreement: the bridge joins no federation
# domain). node_key stays the default, /etc/ntari/keys/node.ed25519: the
# node key of this test's ntari.toml (no key_path there).
mkdir -m 0755 "$r/etc/ntari/federation"
sed -e "s/^interface = .*/interface = \"$NTOC_VPN_IF\"/" \
  -e 's|^# agreements_dir = .*|agreements_dir = "/etc/ntari/federation"|' \
  "$repo/examples/federation/hub-a/federation.toml" >"$r/etc/ntari/services/federation.toml"
grep -q "^interface = \"$NTOC_VPN_IF\"\$" "$r/etc/ntari/services/federation.toml"
grep -q '^agreements_dir = "/etc/ntari/federation"$' "$r/etc/ntari/services/federation.toml"
if grep -q '^node_key' "$r/etc/ntari/services/federation.toml"; then
  echo "enter.sh: the test's federation.toml names a node_key other than the node's" >&2
  exit 1
fi
# ntari-identity: the example as it is (loopback, realm COOP.LAN), but its
# five fixed high ports moved to ports of this run, as the other services'
# are: the interop tests run slapd and a KDC on the example's ports too.
id_port=$((40000 + RANDOM % 10000))
id_sed=()
for key in port ldaps_port port kadmin_port kpasswd_port; do
  # The first `port =` is [ldap]'s, the second [kdc]'s: one line each.
  id_sed+=(-e "0,/^$key = 1[0-9]\{4\}\$/s//$key = $id_port/")
  id_port=$((id_port + 1))
done
sed "${id_sed[@]}" "$repo/examples/identity.toml" >"$r/etc/ntari/services/identity.toml"
if grep -v '^#' "$r/etc/ntari/services/identity.toml" | grep -E '^[a-z_]*port = 1[0-9]{4}$' ||
  [ "$(grep -c -E '^[a-z_]*port = [45][0-9]{4}$' "$r/etc/ntari/services/identity.toml")" != 5 ] ||
  [ "$(grep -c '^listen = \["127\.0\.0\.1"\]$' "$r/etc/ntari/services/identity.toml")" != 2 ]; then
  echo "enter.sh: the test's identity.toml still has the example's ports, or listens off loopback" >&2
  exit 1
fi
# ntari-files: the example as it is (smbd and Ganesha on 127.0.0.1, the
# shares in its state dir), its two fixed high ports ([smb]'s 14450,
# [nfs]'s 20490) moved to ports of this run: the interop tests, and other
# smbd and Ganesha on this machine, may use the example's.
files_smb_port=$((50000 + RANDOM % 10000))
files_nfs_port=$((files_smb_port + 1))
sed -e "0,/^port = 14450\$/s//port = $files_smb_port/" -e "0,/^port = 20490\$/s//port = $files_nfs_port/" \
  "$repo/examples/files.toml" >"$r/etc/ntari/services/files.toml"
if grep -v '^#' "$r/etc/ntari/services/files.toml" | grep -E '^port = (14450|20490)$' ||
  [ "$(grep -c -E "^port = ($files_smb_port|$files_nfs_port)\$" "$r/etc/ntari/services/files.toml")" != 2 ] ||
  [ "$(grep -c '^listen' "$r/etc/ntari/services/files.toml")" != 2 ] ||
  ! grep -q '^listen = \["127\.0\.0\.1"\]$' "$r/etc/ntari/services/files.toml" ||
  ! grep -q '^listen = "127\.0\.0\.1"$' "$r/etc/ntari/services/files.toml"; then
  echo "enter.sh: the test's files.toml still has the example's ports, or listens off loopback" >&2
  exit 1
fi
# Metrics on free ports too (the defaults 9701-9707 may be in use here).
for svc in ntp dns dhcp vpn federation identity files; do
  metrics=$((metrics + 1))
  printf '\n# openrc test\nNTARI_ARGS="--metrics-port %s"\n' "$metrics" >>"$r/etc/conf.d/ntari-$svc"
done

# The checkout at a fixed path inside: where it is outside (a CI clone under
# /tmp, say) may be hidden by the fresh /tmp and /run above.
mkdir -p "$r/ntoc-repo"
mount --bind "$repo" "$r/ntoc-repo"

export NTOC_DOMAIN=$domain NTOC_NTP_PORT=$ntp_port NTOC_DNS_PORT=$dns_port NTOC_VPN_PORT=$vpn_port
status=0
chroot "$r" /usr/bin/env -i \
  PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root TERM=dumb LANG=C.UTF-8 \
  NTOC_REPO=/ntoc-repo NTOC_DOMAIN="$domain" NTOC_NTP_PORT="$ntp_port" NTOC_DNS_PORT="$dns_port" \
  NTOC_NET="$NTOC_NET" NTOC_SERVER_IF="$NTOC_SERVER_IF" NTOC_CLIENT_IF="$NTOC_CLIENT_IF" \
  NTOC_VPN_IF="$NTOC_VPN_IF" NTOC_VPN_NET="$NTOC_VPN_NET" NTOC_VPN_ROUTED="$NTOC_VPN_ROUTED" \
  NTOC_VPN_PORT="$vpn_port" NTOC_FILES_SMB_PORT="$files_smb_port" NTOC_FILES_NFS_PORT="$files_nfs_port" \
  bash /ntoc-repo/tests/openrc/checks.sh || status=$?
exit "$status"
