# shellcheck shell=bash
# Helpers shared by infra/deploy.sh and infra/teardown.sh (sourced, not run).
#
# Every AWS call goes through `run` or `capture`, which print the command first ("+ aws ...")
# and, under --dry-run, print it without running it; `capture` then yields a placeholder
# ("<what>") so the rest of the plan can still be printed.

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
INFRA_DIR="$REPO_ROOT/infra"

# The project's virtualenv (tests/testbed/install.sh) carries the AWS CLI v1, cargo-lambda and the
# zig toolchain cargo-lambda cross-compiles with. Prefer it; fall back to whatever is on PATH.
if [[ -d "$REPO_ROOT/.venv/bin" ]]; then
  PATH="$REPO_ROOT/.venv/bin:$PATH"
  export PATH
fi
AWS_BIN="${AWS_CLI:-aws}"

DRY_RUN=0
REGION_ARGS=()

# Commands are echoed on fd 3, the script's original stdout, so that they show even from inside a
# command substitution or a redirected call.
exec 3>&1

say() { printf '%s\n' "$*"; }
warn() { printf 'warning: %s\n' "$*" >&2; }
die() {
  printf 'error: %s\n' "$*" >&2
  exit 1
}

# An option that takes a value: `need "$@"` fails with the option's name when the value is missing.
need() { [[ $# -ge 2 && -n "$2" ]] || die "$1 needs a value (see --help)"; }

# Prints a command the way a shell would read it back.
show() {
  local out="+" arg
  for arg in "$@"; do
    out+=" $(printf '%q' "$arg")"
  done
  printf '%s\n' "$out" >&3
}

# Runs (or, under --dry-run, only prints) a command.
run() {
  show "$@"
  if [[ $DRY_RUN -eq 1 ]]; then
    return 0
  fi
  "$@"
}

# Runs a command and prints its stdout for command substitution; under --dry-run only prints the
# command and yields the placeholder given as the first argument.
capture() {
  local placeholder="$1"
  shift
  show "$@"
  if [[ $DRY_RUN -eq 1 ]]; then
    printf '%s' "$placeholder"
    return 0
  fi
  "$@"
}

# The region every call uses: --region, else AWS_REGION, else AWS_DEFAULT_REGION, else the
# profile's. The AWS CLI v1 does not read AWS_REGION by itself, so it is passed explicitly.
resolve_region() {
  local given="$1" region
  region="${given:-${AWS_REGION:-${AWS_DEFAULT_REGION:-}}}"
  if [[ -z "$region" ]]; then
    region="$("$AWS_BIN" configure get region 2>/dev/null || true)"
  fi
  [[ -n "$region" ]] || die "no AWS region: pass --region or set AWS_REGION"
  REGION="$region"
  REGION_ARGS=(--region "$REGION")
}

aws_() {
  run "$AWS_BIN" "${REGION_ARGS[@]}" "$@"
}

# Whether a stack exists (and is not deleted). Read-only; under --dry-run the plan assumes a
# first deploy and says so once.
stack_exists() {
  local name="$1"
  if [[ $DRY_RUN -eq 1 ]]; then
    return 1
  fi
  "$AWS_BIN" "${REGION_ARGS[@]}" cloudformation describe-stacks --stack-name "$name" \
    --query 'Stacks[0].StackStatus' --output text >/dev/null 2>&1
}

# Reads every output of a stack into OUTPUTS (one describe-stacks call). Under --dry-run the
# values are placeholders naming the output.
declare -A OUTPUTS=()
OUTPUTS_STACK=""
load_outputs() {
  local stack="$1" key value text
  OUTPUTS=()
  OUTPUTS_STACK="$stack"
  text="$(capture "" "$AWS_BIN" "${REGION_ARGS[@]}" cloudformation describe-stacks --stack-name "$stack" \
    --query 'Stacks[0].Outputs[].[OutputKey,OutputValue]' --output text)"
  while IFS=$'\t' read -r key value; do
    if [[ -n "$key" && "$key" != "None" ]]; then
      OUTPUTS[$key]="$value"
    fi
  done <<<"$text"
  return 0
}

# One output loaded by load_outputs (empty when the stack has no such output).
output() {
  if [[ $DRY_RUN -eq 1 ]]; then
    printf '<%s.%s>' "$OUTPUTS_STACK" "$1"
  else
    printf '%s' "${OUTPUTS[$1]:-}"
  fi
}

# Prints a line only when the step really ran.
done_() {
  [[ $DRY_RUN -eq 1 ]] || say "$@"
}

# One parameter of an existing stack.
stack_parameter() {
  local stack="$1" key="$2" value
  value="$("$AWS_BIN" "${REGION_ARGS[@]}" cloudformation describe-stacks --stack-name "$stack" \
    --query "Stacks[0].Parameters[?ParameterKey=='$key'].ParameterValue | [0]" --output text)"
  [[ "$value" == "None" ]] && value=""
  printf '%s' "$value"
}

# Prints the failed events of a stack so a failed deploy says why.
stack_failures() {
  "$AWS_BIN" "${REGION_ARGS[@]}" cloudformation describe-stack-events --stack-name "$1" \
    --query "StackEvents[?contains(ResourceStatus, 'FAILED')].[LogicalResourceId,ResourceStatus,ResourceStatusReason]" \
    --output text 2>/dev/null | head -20 >&2 || true
}

# Creates the stack, or updates it when it exists ("no updates" is success). Parameters are
# "Key=Value" words; on update, the template's other parameters keep their previous values.
# deploy_stack NAME TEMPLATE "ALL PARAMETER KEYS" Key=Value...
deploy_stack() {
  local name="$1" template="$2" all_keys="$3"
  shift 3
  local given=("$@") params=() key kv found
  for kv in "${given[@]}"; do
    params+=("ParameterKey=${kv%%=*},ParameterValue=${kv#*=}")
  done
  if stack_exists "$name"; then
    for key in $all_keys; do
      found=0
      for kv in "${given[@]}"; do
        [[ "${kv%%=*}" == "$key" ]] && found=1
      done
      [[ $found -eq 0 ]] && params+=("ParameterKey=$key,UsePreviousValue=true")
    done
    local err
    show "$AWS_BIN" "${REGION_ARGS[@]}" cloudformation update-stack --stack-name "$name" \
      --template-body "file://$template" --capabilities CAPABILITY_IAM --parameters "${params[@]}"
    if ! err="$("$AWS_BIN" "${REGION_ARGS[@]}" cloudformation update-stack --stack-name "$name" \
      --template-body "file://$template" --capabilities CAPABILITY_IAM \
      --parameters "${params[@]}" 2>&1 >/dev/null)"; then
      if [[ "$err" == *"No updates are to be performed"* ]]; then
        done_ "stack $name: already up to date"
        return 0
      fi
      printf '%s\n' "$err" >&2
      die "updating stack $name failed"
    fi
    if ! run "$AWS_BIN" "${REGION_ARGS[@]}" cloudformation wait stack-update-complete --stack-name "$name"; then
      stack_failures "$name"
      die "stack $name did not reach UPDATE_COMPLETE"
    fi
    done_ "stack $name: updated"
  else
    aws_ cloudformation create-stack --stack-name "$name" --template-body "file://$template" \
      --capabilities CAPABILITY_IAM --parameters "${params[@]}" >/dev/null ||
      die "creating stack $name failed"
    if ! aws_ cloudformation wait stack-create-complete --stack-name "$name"; then
      stack_failures "$name"
      die "stack $name did not reach CREATE_COMPLETE"
    fi
    done_ "stack $name: created"
  fi
}
