#!/usr/bin/env bash
# The README's test command: installs what is missing, builds everything, runs every test.
#
#   tests/run.sh [extra cargo test arguments, e.g. a test name filter]
#
# 1. tests/testbed/install.sh — influxd 2.7.12, the influx CLI, moto, cfn-lint, cargo-lambda and
#    the AWS CLI (cached per user; seconds when already installed, about 5 minutes the first time);
# 2. cargo build of every crate, binaries included (the tests start the function binaries behind
#    `cargo lambda watch` and run the CLI as a user would);
# 3. cargo test of the whole workspace: unit tests next to the code, and the integration tests in
#    tests/tests/ against real servers started on loopback.
set -Eeuo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
cd "$repo"
started=$(date +%s)

echo "==> [1/3] test bed"
"$here/testbed/install.sh"

echo
echo "==> [2/3] build (cargo build --workspace --all-targets)"
cargo build --workspace --all-targets

echo
echo "==> [3/3] tests (cargo test --workspace)"
status=0
cargo test --workspace --no-fail-fast "$@" || status=$?

echo
if [ "$status" -eq 0 ]; then
  echo "all tests passed in $(( $(date +%s) - started )) s"
else
  echo "tests FAILED (exit $status) after $(( $(date +%s) - started )) s; the failing tests are listed above"
fi
exit "$status"
