#!/usr/bin/env bash
# Removes the live-migration path after the migration: the wiring stack (gateway and mappings),
# the four functions, then the core stack (stream, secret, roles, alarms). The dead-letter bucket
# is kept (DeletionPolicy Retain): empty and delete it yourself once its objects are dealt with.
#
# Run it only after clients write to and read from the destination directly: deleting the stream
# deletes every record the writers have not replayed yet. It refuses without --confirm and
# prints the plan with --dry-run.
set -euo pipefail

# shellcheck source=infra/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
  cat <<'EOF'
Usage: infra/teardown.sh --confirm [--prefix NAME] [--core-stack NAME] [--wiring-stack NAME] [--region REGION] [--dry-run]

Deletes the wiring stack, the four functions and the core stack; keeps the dead-letter bucket.
Run it only after your clients use the destination directly (docs/runbook.md, last step).
EOF
}

PREFIX="influx-live"
CORE_STACK=""
WIRING_STACK=""
REGION_FLAG=""
CONFIRM=0

while [[ $# -gt 0 ]]; do
  case "$1" in
    --prefix) need "$@"; PREFIX="$2"; shift 2 ;;
    --core-stack) need "$@"; CORE_STACK="$2"; shift 2 ;;
    --wiring-stack) need "$@"; WIRING_STACK="$2"; shift 2 ;;
    --region) need "$@"; REGION_FLAG="$2"; shift 2 ;;
    --confirm) CONFIRM=1; shift ;;
    --dry-run) DRY_RUN=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
done

CORE_STACK="${CORE_STACK:-$PREFIX-core}"
WIRING_STACK="${WIRING_STACK:-$PREFIX-wiring}"
resolve_region "$REGION_FLAG"
if [[ $DRY_RUN -eq 0 && $CONFIRM -eq 0 ]]; then
  die "teardown deletes the stream and every record still in it; rerun with --confirm (or --dry-run to see the plan)"
fi
[[ $DRY_RUN -eq 1 ]] && say "# dry run: nothing is deleted"

load_outputs "$CORE_STACK"
BUCKET="$(output DeadLetterBucketName)"
functions=()
for key in KinesisWriter SourceWriter DestinationWriter QueryRouter; do
  functions+=("$(output "${key}FunctionName")")
done

say "# 1/3 wiring stack $WIRING_STACK (gateway and event source mappings)"
aws_ cloudformation delete-stack --stack-name "$WIRING_STACK"
aws_ cloudformation wait stack-delete-complete --stack-name "$WIRING_STACK"

say "# 2/3 functions"
for fn in "${functions[@]}"; do
  [[ -n "$fn" ]] || continue
  aws_ lambda delete-function --function-name "$fn" >/dev/null || warn "could not delete $fn (already gone?)"
done

say "# 3/3 core stack $CORE_STACK (stream, secret, roles, alarms)"
aws_ cloudformation delete-stack --stack-name "$CORE_STACK"
aws_ cloudformation wait stack-delete-complete --stack-name "$CORE_STACK"

if [[ $DRY_RUN -eq 1 ]]; then
  say "# end of the dry run"
else
  say "done; the dead-letter bucket ${BUCKET:-(none)} is kept: inspect, empty and delete it yourself"
fi
