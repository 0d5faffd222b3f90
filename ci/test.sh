#!/usr/bin/env bash
# Runs every test: formatting and lints, Rust unit and integration tests, and
# the interop tests in which an independent DDS client (Python cyclonedds)
# stands in for the ros2 CLI. Installs what it needs first (ci/setup.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
bash ci/setup.sh

export CARGO_TERM_COLOR=never
if cargo fmt --version >/dev/null 2>&1; then
  echo "== cargo fmt --check"
  cargo fmt --all -- --check
else
  echo "== cargo fmt not installed: format check skipped"
fi
if cargo clippy --version >/dev/null 2>&1; then
  echo "== cargo clippy"
  cargo clippy --workspace --all-targets -- -D warnings
else
  echo "== cargo clippy not installed: lint skipped"
fi

echo "== cargo test"
cargo test --workspace

echo "== APKBUILDs (sourced: package() and subpackages against the release binaries)"
bash tests/apk/run.sh

echo "== OpenRC scripts under real OpenRC (Debian's, unpacked, in a mount+PID namespace)"
bash tests/openrc/run.sh

echo "== interop tests (Python cyclonedds as the ros2 CLI stand-in)"
cargo build --workspace --bins --examples
NTARI_REQUIRE_BINARIES=1 NTARI_BIN_DIR="$PWD/target/debug" \
  .venv/bin/python -m pytest -q -p no:cacheprovider tests/interop

echo "== ROS 2 tests (real rclpy from the Jazzy wheels in .venv-ros2, rmw_fastrtps_cpp, loopback only)"
NTARI_REQUIRE_BINARIES=1 NTARI_BIN_DIR="$PWD/target/debug" \
  RMW_IMPLEMENTATION=rmw_fastrtps_cpp ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST \
  CYCLONEDDS_URI="file://$PWD/tests/cyclonedds-loopback.xml" \
  .venv-ros2/bin/python -m pytest -q -p no:cacheprovider tests/ros2
