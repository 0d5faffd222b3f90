#!/usr/bin/env bash
# The OpenRC scripts (openrc/*.initd, *.confd) under real OpenRC, as root.
#
# Debian's openrc, librc1, libeinfo1 and insserv are fetched with
# `apt-get download` (cached in target/openrc-test/debs) and unpacked, never
# installed. The test runs in a private mount and PID namespace, chrooted
# into an overlay of the root filesystem (changes go to a tmpfs) with a
# fresh /run, where OpenRC, the eight services and their configs are
# installed and the repo's binaries are bound to /usr/bin/ntari-*. Then
# checks.sh drives everything through rc-service (see there for what is
# proved). When the namespace's first process exits, the kernel kills every
# process left inside; the mounts go with the namespace.
#
# ntari-dhcp serves one end of a veth pair created here in the root network
# namespace (ntoc<hex>s); its peer sits in a throw-away network namespace
# where the test runs a DHCP client. Both are removed on exit, also on
# failure. DDS stays on loopback: the test's ntari.toml sets
# dds_interfaces/dds_peers to 127.0.0.1, so the config ntari-domain renders
# keeps the nodes there.
#
# ntari-vpn's WireGuard interface is created in the root network namespace
# too (the test has no network namespace of its own: the chroot shares the
# host's network), so enter.sh rewrites examples/vpn.toml before the start:
# a name unique to this run (ntoc<hex>w) instead of wg-coop, a free high
# listen_port, the tunnel networks moved into 198.19.0.0/16 (RFC 2544
# range) so that no route for 10.77.0.0/24 or 10.78.0.0/24 lands on the
# host, and the peer riverside-coop's endpoint 192.0.2.10:51820 replaced by
# 127.0.0.1:<a free port>: the tunnel's handshakes and keepalives go to
# loopback only, never to the documentation address, which may well be a
# real machine on this host's network. The interface goes with the tunnel
# process (which dies with the PID namespace at the latest); exit removes
# it anyway.
#
# ntari-federation runs on that interface: enter.sh rewrites
# examples/federation/hub-a/federation.toml with the run's interface name
# and an empty agreements dir (/etc/ntari/federation), so the bridge runs
# with no agreement and joins no federation domain: it bridges nothing and
# sends nothing off loopback.
#
# ntari-identity runs examples/identity.toml (realm COOP.LAN, everything on
# 127.0.0.1), with its five high ports moved by enter.sh to ports of this
# run; its slapd drops to the host's openldap user.
#
# ntari-files runs examples/files.toml (smbd and NFS-Ganesha on 127.0.0.1,
# the shares in its state dir), with its two high ports moved by enter.sh
# to ports of this run.
#
#   bash tests/openrc/run.sh      # exit 0: every check passed
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
cd "$repo"
if [ "$(id -u)" != 0 ]; then
  echo "tests/openrc/run.sh: must run as root (namespaces, overlay mounts, veth)" >&2
  exit 1
fi
started=$(date +%s)

cache="$repo/target/openrc-test"
packages=(openrc librc1 libeinfo1 insserv)

echo "== building the service binaries and ntari-admin"
cargo build --quiet -p ntari-ntp -p ntari-dns -p ntari-dhcp -p ntari-vpn -p ntari-federation -p ntari-identity -p ntari-files -p ntari-admin
# A snapshot of the binaries (hard links): a rebuild during the test
# replaces target/debug/* but not these.
rm -rf "$cache/bin"
mkdir -p "$cache/bin"
for bin in ntari-ntp ntari-dns ntari-dhcp ntari-vpn ntari-federation ntari-identity ntari-files ntari-admin; do
  ln "target/debug/$bin" "$cache/bin/$bin" 2>/dev/null || cp "target/debug/$bin" "$cache/bin/$bin"
done

echo "== OpenRC from Debian: apt-get download (cache: ${cache#"$repo"/}/debs), unpacked, not installed"
mkdir -p "$cache/debs"
fetch() {
  (cd "$cache/debs" && apt-get -q -o APT::Sandbox::User=root download "$@")
}
missing=()
for p in "${packages[@]}"; do
  compgen -G "$cache/debs/${p}_*.deb" >/dev/null || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  fetch "${missing[@]}" || { apt-get -q update >/dev/null && fetch "${missing[@]}"; }
fi
rm -rf "$cache/root"
mkdir -p "$cache/root"
for p in "${packages[@]}"; do
  deb=$(ls "$cache/debs/${p}"_*.deb | sort -V | tail -n 1)
  echo "   $(basename "$deb")"
  dpkg-deb -x "$deb" "$cache/root"
done

# Names unique to this run.
id=$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')
export NTOC_ID=$id
export NTOC_SERVER_IF="ntoc${id}s" NTOC_CLIENT_IF="ntoc${id}c" NTOC_NETNS="ntoc${id}"
export NTOC_NET="198.18.$((RANDOM % 256))"   # RFC 2544 benchmarking range: nobody's LAN
# ntari-vpn: its interface, the tunnel network and the network routed to
# the peer riverside-coop (two different /24s of the other RFC 2544 half).
export NTOC_VPN_IF="ntoc${id}w"
vpn_net=$((RANDOM % 255))
export NTOC_VPN_NET="198.19.$vpn_net" NTOC_VPN_ROUTED="198.19.$((vpn_net + 1))"
export NTOC_REPO=$repo NTOC_CACHE=$cache
work=$(mktemp -d /tmp/ntari-openrc.XXXXXX)
export NTOC_WORK=$work

cleanup() {
  local rc=$?
  ip link del "$NTOC_SERVER_IF" 2>/dev/null || true
  ip netns del "$NTOC_NETNS" 2>/dev/null || true
  ip link del "$NTOC_VPN_IF" 2>/dev/null || true   # normally gone with its tunnel process
  # The tmpfs on $work lived in the test's mount namespace only.
  rmdir "$work" 2>/dev/null || true
  rm -rf "$cache/bin"   # the snapshot would keep replaced binaries on disk
  echo "== tests/openrc: $([ "$rc" = 0 ] && echo PASSED || echo "FAILED (exit $rc)") in $(( $(date +%s) - started )) s"
  exit "$rc"
}
trap cleanup EXIT

echo "== veth pair $NTOC_SERVER_IF (root namespace, $NTOC_NET.1/24) <-> $NTOC_CLIENT_IF (namespace $NTOC_NETNS)"
ip netns add "$NTOC_NETNS"
ip link add "$NTOC_SERVER_IF" type veth peer name "$NTOC_CLIENT_IF"
ip link set "$NTOC_CLIENT_IF" netns "$NTOC_NETNS"
ip addr add "$NTOC_NET.1/24" dev "$NTOC_SERVER_IF"
ip link set "$NTOC_SERVER_IF" up
ip netns exec "$NTOC_NETNS" ip link set lo up
ip netns exec "$NTOC_NETNS" ip link set "$NTOC_CLIENT_IF" up

echo "== entering a private mount + PID namespace"
# --kill-child: if unshare itself is killed (timeout, Ctrl-C), the
# namespace's first process gets SIGKILL, and with it everything inside.
timeout --signal=TERM --kill-after=10 300 \
  unshare --mount --pid --fork --mount-proc --propagation private --kill-child \
  bash "$repo/tests/openrc/enter.sh"
