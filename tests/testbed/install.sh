#!/usr/bin/env bash
# Installs the real parts the tests talk to, on loopback, on a fresh machine:
#   - influxd v2.7.12 built from its Go module, with flux v0.196.1's Rust library from crates.io
#     (no `make`, no UI: see ../shared/docs/building-influxd.md for why each step is there), and
#     influxd v2.9.1 (flux v0.200.0) the same way, for the tests that run against both versions;
#   - the influx CLI (v2.3.0: the only version the reachable Go module proxy serves; see below);
#   - a project-local, git-ignored Python virtualenv (.venv) with pinned moto[server], cfn-lint
#     cargo-lambda (which brings its own zig) and the AWS CLI (for the deploy scripts).
#
# Built binaries live in a per-user cache keyed by version ($MIGRATION_CACHE, by default
# ${XDG_CACHE_HOME:-~/.cache}/influx-live-migration), never in the repository, so a second run on
# the same machine only checks what is there. Idempotent: run it as often as you like.
#
# `install.sh --demo` installs only what tests/demo.sh uses: influxd v2.7.12 and the virtualenv
# (the demo never starts influxd 2.9.1 nor the influx CLI, and building 2.9.1 takes 5 to 11 minutes
# on a cold 2-core machine); tests/run.sh installs the rest.
#
# On success it writes tests/testbed/env (git-ignored) with the paths the tests read. On failure it
# names the step that failed and what to do next, and exits non-zero; a half-finished build never
# lands in the cache because every artefact is moved into place only after it ran.
set -Eeuo pipefail

INFLUXD_VERSION=v2.7.12
INFLUXD_COMMIT=ec9dcde5d6
FLUX_VERSION=v0.196.1
INFLUXD_FALLBACK_GO=go1.23.9
# A second influxd, for the version matrix (issue 14): 2.9 hashes API tokens by default. v2.9.1 is
# the only 2.9 release the Go module proxy serves (v2.9.0 and v2.9.2 are refused). Its commit is
# the `Origin.Hash` of `go mod download -json github.com/influxdata/influxdb/v2@v2.9.1`; its go.mod
# asks for go 1.25.10, so the local Go (>= 1.25.10) builds it, or that version as the fallback.
INFLUXD_2_9_VERSION=v2.9.1
INFLUXD_2_9_COMMIT=d4fa1941fd
FLUX_2_9_VERSION=v0.200.0
INFLUXD_2_9_FALLBACK_GO=go1.25.10
# The issue asks for the influx CLI 2.7.5, but the Go module proxy reachable from these machines
# answers 403 "This module version is not available" for every influx-cli version except v2.3.0
# (checked 2026-11-25 for v2.0.0 .. v2.8.0). v2.3.0 is the same client generation: the same
# manifest-version-2 backup format and the same /api/v2/backup and /api/v2/restore calls.
INFLUX_CLI_VERSION=v2.3.0
PY_REQUIREMENTS=("moto[server]==5.2.5" "cfn-lint==1.58.0" "cargo-lambda==1.9.2" "awscli==1.46.3")

demo_only=false
for arg in "$@"; do
  case "$arg" in
    --demo) demo_only=true ;;
    *) printf 'usage: %s [--demo]\n  --demo  install only what tests/demo.sh uses\n' "$0" >&2; exit 2 ;;
  esac
done

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
cache=${MIGRATION_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/influx-live-migration}
venv="$repo/.venv"
current_step="start"
started_at=$(date +%s)

step() { current_step="$1"; printf '\n==> [%s] %s\n' "$(date +%H:%M:%S)" "$1"; }
note() { printf '    %s\n' "$*"; }
fail() {
  printf '\nERROR in step "%s": %s\n' "$current_step" "$1" >&2
  [ -n "${2:-}" ] && printf 'What to do: %s\n' "$2" >&2
  exit 1
}
on_error() {
  local rc=$?
  printf '\nERROR: step "%s" failed (exit %s) at line %s.\n' "$current_step" "$rc" "$1" >&2
  printf 'What to do: read the output above for the failing command; fix it and run %s again.\n' "$0" >&2
  printf 'Nothing half-built was put into %s.\n' "$cache" >&2
  exit "$rc"
}
trap 'on_error $LINENO' ERR

# ------------------------------------------------------------------------------------------------
step "check the machine's tools"
for tool in go cargo rustc gcc pkg-config python3 git openssl; do
  command -v "$tool" >/dev/null 2>&1 || fail "'$tool' is not on PATH" \
    "install it (Go >= 1.25.10, Rust >= 1.94.1 via rustup, gcc, pkg-config, Python >= 3.9, openssl for the TLS tests) and run again"
done
note "$(go version)"
note "$(rustc --version)"
python3 -c 'import venv' 2>/dev/null || fail "python3 has no venv module" "install python3-venv and run again"
mkdir -p "$cache"
note "cache: $cache"

# ------------------------------------------------------------------------------------------------
# install_influxd VERSION COMMIT FLUX_VERSION FALLBACK_GO: builds influxd VERSION (with flux
# FLUX_VERSION's Rust library) into $cache/influxd-VERSION/bin/influxd unless it is there already,
# and leaves that path in $influxd_built. FALLBACK_GO is the upstream compiler tried when the local
# Go fails (the `toolchain`/`go` line of that influxdb's go.mod).
install_influxd() {
  local version=$1 commit=$2 flux_version=$3 fallback_go=$4
  local dir="$cache/influxd-$version"
  local bin="$dir/bin/influxd"
  local work="$cache/build/influxd-$version"
  influxd_built=$bin
  step "influxd $version"
  if [ -x "$bin" ] && "$bin" version 2>/dev/null | grep -q "$version"; then
    note "cached: $bin ($("$bin" version))"
    return 0
  fi
  note "not cached: building from the Go module (about 4 minutes on 2 cores here; once per machine)"
  rm -rf "$work"; mkdir -p "$work"
  local build_started=$(date +%s)

  step "influxd $version: download the influxdb $version and flux $flux_version Go modules"
  local src_influxdb src_flux
  src_influxdb=$(moddir "github.com/influxdata/influxdb/v2@$version") \
    || fail "go mod download of influxdb $version failed" "check that the Go module proxy is reachable (GOPROXY=$(go env GOPROXY))"
  src_flux=$(moddir "github.com/influxdata/flux@$flux_version") \
    || fail "go mod download of flux $flux_version failed" "check that the Go module proxy is reachable"
  cp -r "$src_influxdb" "$work/influxdb"
  cp -r "$src_flux" "$work/flux"
  chmod -R u+w "$work"

  step "influxd $version: build libflux $flux_version (flux's Rust library) from crates.io"
  # flux pins an old Rust in rust-toolchain.toml (1.72 in v0.196.1, 1.83 in v0.200.0; not
  # downloadable here) and denies warnings under its default `strict` feature, which newer
  # compilers turn into errors: drop both, as nixpkgs does.
  rm -f "$work/flux/rust-toolchain.toml"
  sed -i 's/default = \["strict", /default = [/' "$work/flux/libflux/flux/Cargo.toml"
  sed -i 's/default = \["strict"\]/default = []/' "$work/flux/libflux/flux-core/Cargo.toml"
  local libflux_started=$(date +%s)
  (cd "$work/flux/libflux" \
    && RUSTUP_TOOLCHAIN=stable RUSTFLAGS=--cap-lints=warn CARGO_PROFILE_RELEASE_LTO=false \
       cargo build --release) \
    || fail "libflux $flux_version did not build" \
       "see the cargo output above; if a lint became an error, retry with RUSTC_WRAPPER adding --cap-lints=warn"
  note "libflux $flux_version built in $(( $(date +%s) - libflux_started )) s"
  mkdir -p "$work/fluxpc/lib"
  # The .a only: target/release also holds libflux.so, and -lflux would pick the shared one.
  cp "$work/flux/libflux/target/release/libflux.a" "$work/fluxpc/lib/"
  cat > "$work/fluxpc/flux.pc" <<PC
Name: flux
Version: ${flux_version#v}
Description: Library for the InfluxData Flux engine
Cflags: -I$work/flux/libflux/include
Libs: -L$work/fluxpc/lib -lflux -ldl -lm -lpthread
PC

  step "influxd $version: go build (cgo; tags sqlite_foreign_keys,sqlite_json; no UI assets)"
  local go_started=$(date +%s)
  go_build_influxd() {
    (cd "$work/influxdb" && CGO_ENABLED=1 PKG_CONFIG_PATH="$work/fluxpc" go build \
      -tags sqlite_foreign_keys,sqlite_json \
      -ldflags "-s -w -X main.version=$version -X main.commit=$commit" \
      -o "$work/bin/influxd" ./cmd/influxd)
  }
  if ! go_build_influxd; then
    note "the local Go toolchain failed; falling back to the upstream compiler (GOTOOLCHAIN=$fallback_go)"
    GOTOOLCHAIN=$fallback_go go_build_influxd \
      || fail "influxd $version did not build with the local Go nor with $fallback_go" "see the go build output above"
  fi
  note "go build of influxd $version took $(( $(date +%s) - go_started )) s"
  "$work/bin/influxd" version | grep -q "$version" \
    || fail "the built influxd does not report $version" "remove $work and run again"
  rm -rf "$dir.tmp"; mkdir -p "$dir.tmp/bin"
  cp "$work/bin/influxd" "$dir.tmp/bin/influxd"
  rm -rf "$dir"; mv "$dir.tmp" "$dir"
  rm -rf "$work"
  note "built in $(( $(date +%s) - build_started )) s: $bin ($("$bin" version))"
}

export GOFLAGS=-buildvcs=false
# The module's directory in the module cache; on failure, the proxy's answer on stderr.
moddir() {
  go mod download -json "$1" | python3 -c '
import sys, json
d = json.load(sys.stdin)
print(d["Dir"]) if "Dir" in d else sys.exit("go mod download: " + d.get("Error", "no directory in the answer"))'
}

install_influxd "$INFLUXD_VERSION" "$INFLUXD_COMMIT" "$FLUX_VERSION" "$INFLUXD_FALLBACK_GO"
influxd_bin=$influxd_built
influxd_2_9_bin=""
influx_bin=""
if [ "$demo_only" = true ]; then
  step "influxd $INFLUXD_2_9_VERSION and the influx CLI $INFLUX_CLI_VERSION: not needed by the demo (tests/run.sh installs them)"
  # Kept in tests/testbed/env when an earlier full install left them in the cache.
  [ -x "$cache/influxd-$INFLUXD_2_9_VERSION/bin/influxd" ] && influxd_2_9_bin="$cache/influxd-$INFLUXD_2_9_VERSION/bin/influxd"
  [ -x "$cache/influx-cli-$INFLUX_CLI_VERSION/bin/influx" ] && influx_bin="$cache/influx-cli-$INFLUX_CLI_VERSION/bin/influx"
  note "${influxd_2_9_bin:-influxd $INFLUXD_2_9_VERSION not installed}; ${influx_bin:-influx CLI not installed}"
else
install_influxd "$INFLUXD_2_9_VERSION" "$INFLUXD_2_9_COMMIT" "$FLUX_2_9_VERSION" "$INFLUXD_2_9_FALLBACK_GO"
influxd_2_9_bin=$influxd_built

# ------------------------------------------------------------------------------------------------
influx_dir="$cache/influx-cli-$INFLUX_CLI_VERSION"
influx_bin="$influx_dir/bin/influx"
step "influx CLI $INFLUX_CLI_VERSION"
if [ -x "$influx_bin" ] && "$influx_bin" version 2>/dev/null | grep -q "${INFLUX_CLI_VERSION#v}"; then
  note "cached: $influx_bin ($("$influx_bin" version))"
else
  # `go install pkg@version` first asks the proxy for the nested path .../v2/cmd/influx as a module
  # and the proxy answers 403 rather than 404, which aborts the lookup: download the module and
  # build inside a writable copy instead.
  work="$cache/build/influx-cli-$INFLUX_CLI_VERSION"
  rm -rf "$work" "$influx_dir.tmp"; mkdir -p "$work" "$influx_dir.tmp/bin"
  src_cli=$(GOFLAGS=-buildvcs=false go mod download -json "github.com/influxdata/influx-cli/v2@$INFLUX_CLI_VERSION" \
    | python3 -c 'import sys,json; print(json.load(sys.stdin)["Dir"])') \
    || fail "go mod download of the influx CLI failed" "check that the Go module proxy is reachable"
  cp -r "$src_cli" "$work/influx-cli"; chmod -R u+w "$work"
  (cd "$work/influx-cli" && CGO_ENABLED=0 GOFLAGS=-buildvcs=false go build \
    -ldflags "-s -w -X main.version=${INFLUX_CLI_VERSION#v} " \
    -o "$influx_dir.tmp/bin/influx" ./cmd/influx) \
    || fail "the influx CLI did not build" "see the go build output above"
  rm -rf "$work"
  rm -rf "$influx_dir"; mv "$influx_dir.tmp" "$influx_dir"
  note "installed: $influx_bin ($("$influx_bin" version))"
fi
fi

# ------------------------------------------------------------------------------------------------
step "Python virtualenv (.venv): ${PY_REQUIREMENTS[*]}"
wheels="$cache/wheels-$(printf '%s\n' "${PY_REQUIREMENTS[@]}" | sha256sum | cut -c1-12)"
stamp="$venv/.requirements"
wanted=$(printf '%s\n' "${PY_REQUIREMENTS[@]}")
if [ -x "$venv/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$wanted" ]; then
  note "up to date: $venv"
else
  if [ ! -f "$wheels/.complete" ]; then
    note "downloading wheels once into $wheels"
    rm -rf "$wheels.tmp"; mkdir -p "$wheels.tmp"
    python3 -m pip download --quiet --dest "$wheels.tmp" "${PY_REQUIREMENTS[@]}" \
      || fail "pip download failed" "check that PyPI is reachable"
    touch "$wheels.tmp/.complete"; rm -rf "$wheels"; mv "$wheels.tmp" "$wheels"
  fi
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --no-index --find-links "$wheels" "${PY_REQUIREMENTS[@]}" \
    || fail "installing the pinned Python packages into $venv failed" "delete $wheels and run again"
  printf '%s' "$wanted" > "$stamp"
  note "created: $venv"
fi
for tool in moto_server cfn-lint cargo-lambda aws; do
  [ -x "$venv/bin/$tool" ] || fail "$venv/bin/$tool is missing after install" "delete $venv and run again"
done
note "$("$venv/bin/cargo-lambda" lambda --version 2>/dev/null || "$venv/bin/cargo-lambda" --version)"

# ------------------------------------------------------------------------------------------------
step "write tests/testbed/env"
cat > "$here/env" <<ENV
# Written by tests/testbed/install.sh; read by the test-support crate. Not committed.
INFLUXD_BIN=$influxd_bin
MOTO_SERVER_BIN=$venv/bin/moto_server
CFN_LINT_BIN=$venv/bin/cfn-lint
CARGO_LAMBDA_BIN=$venv/bin/cargo-lambda
AWS_CLI_BIN=$venv/bin/aws
VENV_BIN=$venv/bin
ENV
# Left out by --demo unless an earlier full install put them in the cache.
[ -n "$influxd_2_9_bin" ] && echo "INFLUXD_2_9_BIN=$influxd_2_9_bin" >> "$here/env"
[ -n "$influx_bin" ] && echo "INFLUX_BIN=$influx_bin" >> "$here/env"
note "test bed ready in $(( $(date +%s) - started_at )) s"
