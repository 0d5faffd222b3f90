#!/usr/bin/env bash
# The benchmark command: builds release binaries and prints the DESIGN.md §7
# table (start-up, first health sample on the wire, idle RSS and CPU, binary
# size) against the targets. Figures belong here, never in pass/fail tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash ci/setup.sh
echo "== building release binaries"
cargo build --quiet --release --example ntari_example_node -p ntari-examples
echo "== ntari_example_node (release)"
.venv/bin/python tests/interop/bench_example.py \
  --binary target/release/examples/ntari_example_node --runs 21 --cpu-window 30

echo
echo "== ntari-ntp (release) against a real chronyd"
cargo build --quiet --release -p ntari-ntp
.venv/bin/python tests/interop/bench_ntp.py --binary target/release/ntari-ntp --kills 20 --cpu-window 30

echo
echo "== ntari-dns (release) against a plain dnsmasq with the same files"
cargo build --quiet --release -p ntari-dns
.venv/bin/python tests/interop/bench_dns.py --binary target/release/ntari-dns --rounds 6 --seconds 5 --cpu-window 30

echo
echo "== ntari-dhcp (release) against a plain kea-dhcp4 with the same config (perfdhcp in a namespace)"
cargo build --quiet --release -p ntari-dhcp
.venv/bin/python tests/interop/bench_dhcp.py --binary target/release/ntari-dhcp --rounds 4 --seconds 5 --cpu-window 30

echo
echo "== ntari-vpn (release): its boringtun tunnel against wireguard-go alone (iperf3 through a namespace)"
cargo build --quiet --release -p ntari-vpn
.venv/bin/python tests/interop/bench_vpn.py --binary target/release/ntari-vpn --rounds 4 --seconds 5 --kills 15

echo
echo "== ntari-identity (release): logins and LDAP binds through its slapd, krb5kdc and kadmind against the same daemons alone"
cargo build --quiet --release -p ntari-identity -p ntari-admin
.venv/bin/python tests/interop/bench_identity.py --bin-dir target/release --rounds 6 --seconds 5 --cpu-window 30

echo
echo "== ntari-files (release): SMB put/get and NFSv4 reads through its smbd and NFS-Ganesha against the same daemons alone"
cargo build --quiet --release -p ntari-files
.venv/bin/python tests/interop/bench_files.py --binary target/release/ntari-files --rounds 3 --reps 5 --cpu-window 20

echo
echo "== the core tier so far: ntari-ntp, ntari-dns, ntari-dhcp, ntari-vpn, ntari-identity, ntari-files, their guards and daemons, idle (release)"
.venv/bin/python tests/interop/bench_tier.py --bin-dir target/release

echo
echo "== real ROS 2 as the subscriber: rclpy (Jazzy wheels, rmw_fastrtps_cpp) beside Python cyclonedds (release)"
RMW_IMPLEMENTATION=rmw_fastrtps_cpp ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST \
  .venv-ros2/bin/python tests/ros2/bench_rclpy.py --ntp-binary target/release/ntari-ntp \
  --example-binary target/release/examples/ntari_example_node --starts 11 --kills 20

echo
echo "== ntari-federation (release): a bridged topic against direct DDS over the same ntari-vpn tunnel; a hub with 10 partners"
cargo build --quiet --release -p ntari-federation -p ntari-vpn -p ntari-admin
.venv/bin/python tests/interop/bench_federation.py --bin-dir target/release --seconds 10 --burst 5 --cpu-window 20 --partners 10
