#!/usr/bin/env bash
# Installs everything the project needs to build, test and demo, on Debian 12
# as root. Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages: cmake/clang/libclang-dev build the bundled Cyclone DDS
# (cyclors), python3-venv hosts the independent DDS test client, util-linux
# provides setpriv (daemons die with their node), chrony is ntari-ntp's daemon,
# dnsmasq-base ntari-dns's (the binary only: package dnsmasq would also start
# a system-wide resolver on port 53), bind9-dnsutils gives dig to the tests
# and dnsperf to the benchmark; kea-dhcp4-server is ntari-dhcp's daemon (with
# the lease_cmds hook), kea-admin brings perfdhcp, udhcpc (busybox) is the
# DHCP client of the tests; wireguard-tools (wg) and wireguard-go are
# ntari-vpn's tools and second backend, nftables (nft) what a relaying hub
# filters forwarded traffic with, iperf3 and ping its tests' traffic;
# krb5-kdc, krb5-admin-server, krb5-kdc-ldap and slapd are ntari-identity's
# daemons (ldap-utils for provisioning, openssl for its certificate),
# krb5-user (kinit, kvno) the members' side in its tests; samba and
# nfs-ganesha(-vfs) are ntari-files' daemons, smbclient, libnfs-utils
# (nfs-cat, nfs-cp) and rpcbind (NFSv3, only inside a test's namespace) the
# members' side in its tests.
apt_packages=(cmake clang libclang-dev pkg-config python3 python3-venv python3-pip iproute2 procps util-linux
  chrony dnsmasq-base bind9-dnsutils dnsperf kea-dhcp4-server kea-admin udhcpc
  wireguard-tools wireguard-go nftables iperf3 iputils-ping
  krb5-kdc krb5-admin-server krb5-kdc-ldap slapd ldap-utils krb5-user openssl
  samba smbclient nfs-ganesha nfs-ganesha-vfs rpcbind libnfs-utils)
# Daemons the nodes run themselves are never started system-wide: while
# installing, policy-rc.d (Debian's switch for exactly this) refuses every
# start, and the units are disabled afterwards.
system_daemons=(slapd krb5-kdc krb5-admin-server smbd nmbd samba-ad-dc nfs-ganesha rpcbind rpcbind.socket)
missing=()
for p in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  apt-get update -qq
  policy_rc=/usr/sbin/policy-rc.d
  own_policy=0
  if [ ! -e "$policy_rc" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy_rc" && chmod 755 "$policy_rc" && own_policy=1
    trap 'rm -f "$policy_rc"' EXIT   # also when the install fails
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  if ((own_policy)); then rm -f "$policy_rc"; fi
  if [ -d /run/systemd/system ]; then
    systemctl disable --now "${system_daemons[@]}" >/dev/null 2>&1 || true
  fi
fi

# Rust: use the toolchain on PATH (rustup's, if any); otherwise Debian 12's
# rustc-web/cargo-web, which are recent enough (bookworm's plain rustc is not).
if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: no cargo on PATH, installing Debian's cargo-web"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq cargo-web rustc-web >/dev/null
fi

# Python client for the interop tests (Cyclone DDS 11.0.1, as cyclors bundles).
venv=.venv
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
if ! "$venv/bin/python" -c 'import cyclonedds, pytest' 2>/dev/null \
   || [ "$("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("cyclonedds"))')" != "11.0.1" ]; then
  echo "setup: installing Python packages into $venv"
  "$venv/bin/pip" install -q --disable-pip-version-check -r ci/requirements.txt
fi

# Real ROS 2 Jazzy for tests/ros2: rclpy with rmw_fastrtps_cpp from PyPI
# wheels (a ROS prefix inside the venv, no system ROS), plus cyclonedds and
# pytest, in a venv of its own. The full resolved set is pinned in
# ci/requirements-ros2.txt; the venv records the sha256 of the file it was
# made from, so a changed file rebuilds it from scratch and an unchanged one
# is only checked.
ros_venv=.venv-ros2
ros_req=ci/requirements-ros2.txt
ros_stamp="$ros_venv/.requirements-ros2.sha256"
ros_want="$(sha256sum "$ros_req" | cut -d' ' -f1)"
if [ ! -x "$ros_venv/bin/python" ] || [ "$(cat "$ros_stamp" 2>/dev/null)" != "$ros_want" ]; then
  echo "setup: creating $ros_venv from $ros_req (ROS 2 Jazzy wheels)"
  rm -rf "$ros_venv"
  python3 -m venv "$ros_venv"
  if ! "$ros_venv/bin/pip" install -q --disable-pip-version-check -r "$ros_req"; then
    echo "setup: installing $ros_req failed (the ROS 2 wheels are cp311: python3 is $(python3 --version 2>&1))" >&2
    exit 1
  fi
  echo "$ros_want" > "$ros_stamp"   # written last: an interrupted install is redone
fi
# The check: the ROS Python packages, their C type support and the DDS client
# load (importing runs the wheels' bootstrap, which re-execs with LD_LIBRARY_PATH).
if ! "$ros_venv/bin/python" -c 'import rclpy, rclpy.qos, std_msgs.msg, lifecycle_msgs.msg, diagnostic_msgs.msg, cyclonedds, pytest' 2>/dev/null; then
  echo "setup: $ros_venv is broken; remove it and run ci/setup.sh again" >&2
  exit 1
fi
echo "setup: ok"
