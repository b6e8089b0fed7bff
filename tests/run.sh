#!/usr/bin/env bash
# The README's test command: installs what is missing, builds everything, runs every test.
#
#   tests/run.sh [arguments for every test binary, e.g. a test name filter]
#
# 1. tests/testbed/install.sh — influxd 2.7.12, the influx CLI, moto, cfn-lint, cargo-lambda and
#    the AWS CLI (cached per user; seconds when already installed, about 5 minutes the first time);
# 2. cargo build of every crate, binaries included (the tests start the function binaries behind
#    `cargo lambda watch` and run the CLI as a user would);
# 3. every test binary of `cargo test --workspace` (tests/testbed/run_tests.py, TEST_JOBS at a
#    time, 3 by default): unit tests next to the code, and the integration tests in tests/tests/
#    against real servers started on loopback.
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
echo "==> [3/3] tests (every test binary of cargo test --workspace, ${TEST_JOBS:-3} at a time)"
# Most integration tests wait on real servers: running a few binaries at once (each as cargo
# test would run it) cuts the wall time on 2 cores; TEST_JOBS=1 runs them one after another.
status=0
python3 "$here/testbed/run_tests.py" --jobs "${TEST_JOBS:-3}" -- "$@" || status=$?

echo
if [ "$status" -eq 0 ]; then
  echo "all tests passed in $(( $(date +%s) - started )) s"
else
  echo "tests FAILED (exit $status) after $(( $(date +%s) - started )) s; the failing tests are listed above"
fi
exit "$status"
