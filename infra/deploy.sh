#!/usr/bin/env bash
# Deploys the live-migration path: core stack -> cargo lambda build -> cargo lambda deploy (x4)
# -> reserved concurrency 0 on the destination writer (first deploy only) -> wiring stack.
# Idempotent: run it again to update. `--dry-run` prints every AWS and cargo lambda command
# without running any. Parameters and outputs: infra/README.md.
set -euo pipefail

# shellcheck source=infra/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
  cat <<'EOF'
Usage: infra/deploy.sh --source-url URL --destination-url URL [options]

Names
  --prefix NAME              name prefix of the stream, secret and functions (default influx-live)
  --core-stack NAME          core stack name (default <prefix>-core)
  --wiring-stack NAME        wiring stack name (default <prefix>-wiring)
  --region REGION            AWS region (default: AWS_REGION / AWS_DEFAULT_REGION / the profile's)

Databases (required on the first deploy; fixed afterwards, see infra/README.md)
  --source-url URL           InfluxDB OSS source, e.g. http://influxdb.internal:8086
  --destination-url URL      Timestream for InfluxDB destination, e.g. https://<id>.<region>.timestream-influxdb.amazonaws.com:8086

Stream and alarms
  --shards N                 provisioned shards (default 2; docs/runbook.md "Sizing the stream")
  --retention-hours H        stream retention (default 168)
  --stream-key KEY           alias/aws/kinesis (default) or a customer managed key ARN
  --alarm-topic ARN          SNS topic the alarms notify (default: none)
  --lag-alarm-ms MS          destination writer IteratorAge alarm threshold (default 300000)
  --stall-alarm-seconds S    a writer stopped at one record this long alarms (default 300)

Functions
  --arch arm64|x86_64        build architecture (default arm64; x86_64 when the arm64 Rust
                             target is not installed and --arch was not given)
  --skip-build               deploy the bootstraps already built (see --lambda-dir)
  --lambda-dir DIR           where the bootstraps are (default target/lambda)
  --secret-ttl-seconds N     how long functions cache the endpoint secret (default 15)
  --partition-key-mode MODE  random (default) or bucket (strict per-bucket order)
  --log-retention-days N     CloudWatch Logs retention of each function (default 30)
  --read-transfer-mode MODE  STREAM (default): reads are streamed, any size up to 15 minutes;
                             BUFFERED: one response per read, at most 6 MB and 29 s. Sets the
                             read routes' ResponseTransferMode and the query router's
                             RESPONSE_TRANSFER_MODE and timeout together (they must match)

Wiring
  --dual-write-start UNIX    start of both event source mappings (default: the core stack's
                             creation time, which precedes every record in the stream)
  --batch-size N             most records per stream-writer invocation (default 500)
  --stage NAME               API stage (default live)
  --custom-domain NAME       optional API custom domain (no stage in request paths; needed by
                             clients that drop the path of their base URL, like the influx CLI)
  --certificate-arn ARN      ACM certificate for --custom-domain

  --dry-run                  print every command instead of running it
  -h, --help                 this text
EOF
}

PREFIX="influx-live"
CORE_STACK=""
WIRING_STACK=""
REGION_FLAG=""
SOURCE_URL=""
DESTINATION_URL=""
SHARDS=""
RETENTION=""
STREAM_KEY=""
ALARM_TOPIC=""
LAG_ALARM_MS=""
STALL_ALARM_S=""
ARCH=""
SKIP_BUILD=0
LAMBDA_DIR="$REPO_ROOT/target/lambda"
SECRET_TTL="15"
PARTITION_KEY_MODE="random"
READ_TRANSFER_MODE="STREAM"
LOG_RETENTION="30"
DUAL_WRITE_START=""
BATCH_SIZE=""
STAGE=""
CUSTOM_DOMAIN=""
CERTIFICATE_ARN=""

while [[ $# -gt 0 ]]; do
  case "$1" in
    --prefix) need "$@"; PREFIX="$2"; shift 2 ;;
    --core-stack) need "$@"; CORE_STACK="$2"; shift 2 ;;
    --wiring-stack) need "$@"; WIRING_STACK="$2"; shift 2 ;;
    --region) need "$@"; REGION_FLAG="$2"; shift 2 ;;
    --source-url) need "$@"; SOURCE_URL="$2"; shift 2 ;;
    --destination-url) need "$@"; DESTINATION_URL="$2"; shift 2 ;;
    --shards) need "$@"; SHARDS="$2"; shift 2 ;;
    --retention-hours) need "$@"; RETENTION="$2"; shift 2 ;;
    --stream-key) need "$@"; STREAM_KEY="$2"; shift 2 ;;
    --alarm-topic) need "$@"; ALARM_TOPIC="$2"; shift 2 ;;
    --lag-alarm-ms) need "$@"; LAG_ALARM_MS="$2"; shift 2 ;;
    --stall-alarm-seconds) need "$@"; STALL_ALARM_S="$2"; shift 2 ;;
    --arch) need "$@"; ARCH="$2"; shift 2 ;;
    --skip-build) SKIP_BUILD=1; shift ;;
    --lambda-dir) need "$@"; LAMBDA_DIR="$2"; shift 2 ;;
    --secret-ttl-seconds) need "$@"; SECRET_TTL="$2"; shift 2 ;;
    --partition-key-mode) need "$@"; PARTITION_KEY_MODE="$2"; shift 2 ;;
    --read-transfer-mode) need "$@"; READ_TRANSFER_MODE="$2"; shift 2 ;;
    --log-retention-days) need "$@"; LOG_RETENTION="$2"; shift 2 ;;
    --dual-write-start) need "$@"; DUAL_WRITE_START="$2"; shift 2 ;;
    --batch-size) need "$@"; BATCH_SIZE="$2"; shift 2 ;;
    --stage) need "$@"; STAGE="$2"; shift 2 ;;
    --custom-domain) need "$@"; CUSTOM_DOMAIN="$2"; shift 2 ;;
    --certificate-arn) need "$@"; CERTIFICATE_ARN="$2"; shift 2 ;;
    --dry-run) DRY_RUN=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
done

CORE_STACK="${CORE_STACK:-$PREFIX-core}"
WIRING_STACK="${WIRING_STACK:-$PREFIX-wiring}"
[[ "$PARTITION_KEY_MODE" == random || "$PARTITION_KEY_MODE" == bucket ]] ||
  die "--partition-key-mode must be random or bucket"
[[ "$READ_TRANSFER_MODE" == STREAM || "$READ_TRANSFER_MODE" == BUFFERED ]] ||
  die "--read-transfer-mode must be STREAM or BUFFERED"
[[ -z "$CUSTOM_DOMAIN" || -n "$CERTIFICATE_ARN" ]] || die "--custom-domain needs --certificate-arn"
[[ -z "$DUAL_WRITE_START" || "$DUAL_WRITE_START" =~ ^[0-9]{9,11}$ ]] ||
  die "--dual-write-start must be Unix seconds, e.g. $(date +%s)"
resolve_region "$REGION_FLAG"

if [[ $DRY_RUN -eq 1 ]]; then
  say "# dry run: nothing is created or changed; the plan assumes a first deploy (no stacks yet)"
fi
say "# region $REGION, core stack $CORE_STACK, wiring stack $WIRING_STACK, prefix $PREFIX"

# ------------------------------------------------------------------------------------------------
# 1. Core stack: stream, secret, roles, dead-letter bucket, alarms.
# ------------------------------------------------------------------------------------------------
say "# 1/5 core stack"
core_params=("NamePrefix=$PREFIX")
if stack_exists "$CORE_STACK"; then
  # The secret's value belongs to the CLI once created (cutover/rollback write new versions).
  # Changing a URL here would make CloudFormation rewrite it with "read": "source", silently
  # undoing a cutover, so the URLs are fixed after the first deploy.
  for pair in "SourceUrl=$SOURCE_URL" "DestinationUrl=$DESTINATION_URL"; do
    key="${pair%%=*}" value="${pair#*=}"
    if [[ -n "$value" ]]; then
      current="$(stack_parameter "$CORE_STACK" "$key")"
      [[ "${value%/}" == "${current%/}" ]] ||
        die "$key of $CORE_STACK is $current; it cannot change after the first deploy (it would rewrite the endpoint secret and reset reads to the source). Update the secret's URL with the AWS CLI instead, see infra/README.md"
    fi
  done
else
  [[ -n "$SOURCE_URL" && -n "$DESTINATION_URL" ]] ||
    die "the first deploy needs --source-url and --destination-url"
  core_params+=("SourceUrl=$SOURCE_URL" "DestinationUrl=$DESTINATION_URL")
fi
[[ -n "$SHARDS" ]] && core_params+=("ShardCount=$SHARDS")
[[ -n "$RETENTION" ]] && core_params+=("RetentionHours=$RETENTION")
[[ -n "$STREAM_KEY" ]] && core_params+=("StreamEncryptionKey=$STREAM_KEY")
[[ -n "$ALARM_TOPIC" ]] && core_params+=("AlarmTopicArn=$ALARM_TOPIC")
[[ -n "$LAG_ALARM_MS" ]] && core_params+=("DestinationLagAlarmMilliseconds=$LAG_ALARM_MS")
[[ -n "$STALL_ALARM_S" ]] && core_params+=("StallAlarmSeconds=$STALL_ALARM_S")
deploy_stack "$CORE_STACK" "$INFRA_DIR/core.yaml" \
  "NamePrefix ShardCount RetentionHours StreamEncryptionKey SourceUrl DestinationUrl DestinationLagAlarmMilliseconds SourceLagAlarmMilliseconds StallAlarmSeconds AlarmTopicArn" \
  "${core_params[@]}"

load_outputs "$CORE_STACK"
STREAM_NAME="$(output StreamName)"
STREAM_ARN="$(output StreamArn)"
SECRET_ID="$(output SecretArn)"
if [[ -z "$SECRET_ID" ]]; then
  SECRET_ID="$(output SecretName)"
  warn "the stack has no SecretArn output; the functions get the secret's name ($SECRET_ID) as SECRET_ID"
fi
BUCKET="$(output DeadLetterBucketName)"
BUCKET_ARN="$(output DeadLetterBucketArn)"
RETENTION_HOURS="$(output RetentionHours)"
declare -A FN ROLE
for key in KinesisWriter SourceWriter DestinationWriter QueryRouter; do
  FN[$key]="$(output "${key}FunctionName")"
  ROLE[$key]="$(output "${key}RoleArn")"
  [[ -n "${FN[$key]}" && -n "${ROLE[$key]}" ]] || die "stack $CORE_STACK lacks the ${key} outputs"
done

# ------------------------------------------------------------------------------------------------
# 2. Build. arm64 (Graviton) by default; x86_64 when that Rust target is not installed.
# ------------------------------------------------------------------------------------------------
say "# 2/5 build"
if [[ $SKIP_BUILD -eq 1 ]]; then
  say "skipping the build (--skip-build): deploying the bootstraps in $LAMBDA_DIR"
else
  arm_installed=0
  sysroot="$(rustc --print sysroot 2>/dev/null || true)"
  [[ -n "$sysroot" && -d "$sysroot/lib/rustlib/aarch64-unknown-linux-gnu" ]] && arm_installed=1
  case "${ARCH:-default}" in
    arm64)
      [[ $arm_installed -eq 1 ]] ||
        die "--arch arm64: the Rust target aarch64-unknown-linux-gnu is not installed (rustup target add aarch64-unknown-linux-gnu)"
      ;;
    x86_64) ;;
    default)
      if [[ $arm_installed -eq 1 ]]; then
        ARCH=arm64
      else
        ARCH=x86_64
        say "note: arm64 (Graviton) is the default, but the Rust target aarch64-unknown-linux-gnu is not installed on this machine; building x86_64 instead (rustup target add aarch64-unknown-linux-gnu to build arm64)"
      fi
      ;;
    *) die "--arch must be arm64 or x86_64" ;;
  esac
  arch_flag="--x86-64"
  [[ "$ARCH" == arm64 ]] && arch_flag="--arm64"
  say "building for $ARCH"
  if [[ "$LAMBDA_DIR" != "$REPO_ROOT/target/lambda" ]]; then
    die "--lambda-dir is only for --skip-build: cargo lambda build writes to target/lambda"
  fi
  (cd "$REPO_ROOT" && run cargo lambda build --release "$arch_flag" \
    --bin kinesis-writer --bin stream-writer --bin query-router)
fi

# ------------------------------------------------------------------------------------------------
# 3. Deploy the four functions (the stream writer twice), each with its own role and environment.
# ------------------------------------------------------------------------------------------------
say "# 3/5 functions"
deploy_function() {
  local name="$1" binary="$2" role="$3" timeout="$4"
  shift 4
  local envs=() kv
  for kv in "$@"; do
    envs+=(--env-var "$kv")
  done
  (cd "$REPO_ROOT" && run cargo lambda deploy "${REGION_ARGS[@]}" --lambda-dir "$LAMBDA_DIR" \
    --binary-name "$binary" --iam-role "$role" --timeout "$timeout" --memory 256 \
    --log-retention "$LOG_RETENTION" --description "InfluxDB live migration: $binary" \
    --tag "influx-live-migration=$PREFIX" "${envs[@]}" "$name")
}
common_env=("SECRET_ID=$SECRET_ID" "SECRET_TTL_SECONDS=$SECRET_TTL")
# API Gateway gives up on an integration after 29 s; the gateway-facing functions stop first.
deploy_function "${FN[KinesisWriter]}" kinesis-writer "${ROLE[KinesisWriter]}" 29 \
  "${common_env[@]}" "STREAM_NAME=$STREAM_NAME" "PARTITION_KEY_MODE=$PARTITION_KEY_MODE"
deploy_function "${FN[SourceWriter]}" stream-writer "${ROLE[SourceWriter]}" 300 \
  "${common_env[@]}" "TARGET=source" "DEAD_LETTER_BUCKET=$BUCKET"
deploy_function "${FN[DestinationWriter]}" stream-writer "${ROLE[DestinationWriter]}" 300 \
  "${common_env[@]}" "TARGET=destination" "DEAD_LETTER_BUCKET=$BUCKET"
if [[ "$READ_TRANSFER_MODE" == STREAM ]]; then
  # Streamed reads may run as long as API Gateway streams: 15 minutes.
  deploy_function "${FN[QueryRouter]}" query-router "${ROLE[QueryRouter]}" 900 \
    "${common_env[@]}" "RESPONSE_TRANSFER_MODE=STREAM"
else
  deploy_function "${FN[QueryRouter]}" query-router "${ROLE[QueryRouter]}" 29 \
    "${common_env[@]}" "RESPONSE_TRANSFER_MODE=BUFFERED" "UPSTREAM_TIMEOUT_SECONDS=27"
fi

# ------------------------------------------------------------------------------------------------
# 4. Hold the destination writer: reserved concurrency 0 before its mapping exists, so records
#    wait in the stream while the seeding runs. Only on the first deploy: a re-run must not
#    re-throttle a writer the operator released with `influx-migration unthrottle`.
# ------------------------------------------------------------------------------------------------
say "# 4/5 destination writer throttle"
if stack_exists "$WIRING_STACK"; then
  current="$("$AWS_BIN" "${REGION_ARGS[@]}" lambda get-function-concurrency \
    --function-name "${FN[DestinationWriter]}" --query ReservedConcurrentExecutions --output text 2>/dev/null || true)"
  [[ "$current" == "None" || -z "$current" ]] && current="none, unthrottled"
  say "wiring exists: leaving ${FN[DestinationWriter]}'s reserved concurrency as it is ($current); use influx-migration throttle/unthrottle to change it"
else
  aws_ lambda put-function-concurrency --function-name "${FN[DestinationWriter]}" \
    --reserved-concurrent-executions 0 >/dev/null
  done_ "${FN[DestinationWriter]}: reserved concurrency 0 (throttled; records wait in the stream)"
fi

# ------------------------------------------------------------------------------------------------
# 5. Wiring stack: API Gateway and the two event source mappings.
# ------------------------------------------------------------------------------------------------
say "# 5/5 wiring stack"
function_arn() {
  capture "<ARN of $1>" "$AWS_BIN" "${REGION_ARGS[@]}" lambda get-function-configuration \
    --function-name "$1" --query FunctionArn --output text
}
if [[ -z "$DUAL_WRITE_START" ]]; then
  if stack_exists "$WIRING_STACK"; then
    # Keep the mappings' start: a new value would replace both mappings.
    DUAL_WRITE_START="$(stack_parameter "$WIRING_STACK" DualWriteStart)"
  else
    created="$(capture "<creation time of $CORE_STACK>" "$AWS_BIN" "${REGION_ARGS[@]}" cloudformation \
      describe-stacks --stack-name "$CORE_STACK" --query 'Stacks[0].CreationTime' --output text)"
    if [[ $DRY_RUN -eq 1 ]]; then
      DUAL_WRITE_START="$created"
    else
      DUAL_WRITE_START="$(date -u -d "$created" +%s)" || die "cannot read the stack's creation time ($created)"
    fi
  fi
fi
wiring_params=(
  "NamePrefix=$PREFIX"
  "StreamArn=$STREAM_ARN"
  "DeadLetterBucketArn=$BUCKET_ARN"
  "KinesisWriterFunctionArn=$(function_arn "${FN[KinesisWriter]}")"
  "SourceWriterFunctionArn=$(function_arn "${FN[SourceWriter]}")"
  "DestinationWriterFunctionArn=$(function_arn "${FN[DestinationWriter]}")"
  "QueryRouterFunctionArn=$(function_arn "${FN[QueryRouter]}")"
  "DualWriteStart=$DUAL_WRITE_START"
  "ReadTransferMode=$READ_TRANSFER_MODE"
)
[[ -n "$BATCH_SIZE" ]] && wiring_params+=("BatchSize=$BATCH_SIZE")
[[ -n "$STAGE" ]] && wiring_params+=("StageName=$STAGE")
[[ -n "$CUSTOM_DOMAIN" ]] && wiring_params+=("CustomDomainName=$CUSTOM_DOMAIN" "CertificateArn=$CERTIFICATE_ARN")
deploy_stack "$WIRING_STACK" "$INFRA_DIR/wiring.yaml" \
  "NamePrefix StreamArn DeadLetterBucketArn KinesisWriterFunctionArn SourceWriterFunctionArn DestinationWriterFunctionArn QueryRouterFunctionArn DualWriteStart ReadTransferMode BatchSize MaximumBatchingWindowInSeconds StageName CustomDomainName CertificateArn" \
  "${wiring_params[@]}"

load_outputs "$WIRING_STACK"
GATEWAY_URL="$(output GatewayUrl)"
GATEWAY_HOST="$(output GatewayHost)"
PATH_PREFIX="$(output GatewayPathPrefix)"

if [[ $DRY_RUN -eq 1 ]]; then
  say "# end of the dry run: nothing was created or changed"
  exit 0
fi
cat <<EOF

Deployed.
  gateway:              $GATEWAY_URL
  stream:               $STREAM_NAME (retention ${RETENTION_HOURS} h)
  endpoint secret:      $SECRET_ID
  dead-letter bucket:   $BUCKET
  destination writer:   ${FN[DestinationWriter]}

Next (docs/runbook.md):
  1. Run aws-sigv4-proxy in front of your clients (the InfluxDB token survives as X-Original-Authorization):
       aws-sigv4-proxy --name execute-api --region $REGION --host $GATEWAY_HOST \\
         --duplicate-headers Authorization --port :8086
     and point writers and readers at http://<proxy host>:8086${PATH_PREFIX}
  2. Seed the destination, telling the seeding how long the stream keeps records:
       influx-migration --full --src-host <source> --dest-host <destination> --stream-retention-hours ${RETENTION_HOURS}
  3. influx-migration unthrottle --stack $CORE_STACK
  4. influx-migration status --stack $CORE_STACK     (until the lag is near zero)
  5. influx-migration verify --stack $CORE_STACK --start <RFC3339>
  6. influx-migration cutover --stack $CORE_STACK
EOF
