#!/usr/bin/env bash
# The README's demo command: a complete live migration on a local stack.
#
#   tests/demo.sh [--points N] [--writers N] [--readers N] [--faults] [--output DIR]
#
# 1. tests/testbed/install.sh --demo — only what the demo uses: influxd 2.7.12, moto, cfn-lint,
#    cargo-lambda and the AWS CLI (cached per user; seconds when already installed);
# 2. cargo build of the whole workspace, exactly as tests/run.sh builds it (so running one after
#    the other rebuilds nothing: `--bins` alone resolves features differently and rebuilt the AWS SDK);
# 3. `local-stack demo`: source and destination influxd, moto with the live path deployed by
#    infra/deploy.sh, the functions behind the Lambda runtime API, clients writing and reading
#    through a local gateway, the seeding, the catch-up, the cutover, and a report
#    (demo-output/report.txt and demo-output/destination-lag.svg). Ctrl-C stops everything.
set -Eeuo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
cd "$repo"

echo "==> [1/3] test bed"
"$here/testbed/install.sh" --demo

echo
echo "==> [2/3] build (cargo build --workspace --all-targets, as tests/run.sh: either one after the other builds nothing)"
cargo build --workspace --all-targets

echo
echo "==> [3/3] live migration demo"
exec "$repo/target/debug/local-stack" demo "$@"
