#!/usr/bin/env bash
# The whole test suite: formatting, lints, every test against the embedded S3 server, then
# every test again against a real SeaweedFS; the offline checks of template.yaml. Prints how
# long each stage took.
#
#   scripts/test.sh                 # everything
#   SKIP_SEAWEEDFS=1 scripts/test.sh  # embedded server only
#   SKIP_LAMBDA_BUILD=1 scripts/test.sh  # without the arm64 release build of the three functions
#   SKIP_SCALE=1 scripts/test.sh  # without the 1 GiB large-object tests (optimised build)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/tributary/target}
export TRIBUTARY_VENV=${TRIBUTARY_VENV:-$HOME/.cache/tributary/venv}
export PATH="$TRIBUTARY_VENV/bin:$PATH"
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
# The catalog tests need moto's Glue API from the venv: here they fail instead of skipping.
export TEST_GLUE_REQUIRED=${TEST_GLUE_REQUIRED:-1}
# Tests talk to 127.0.0.1 only: never route them through a proxy.
export NO_PROXY="127.0.0.1,localhost${NO_PROXY:+,$NO_PROXY}" no_proxy="127.0.0.1,localhost${no_proxy:+,$no_proxy}"

declare -a timings=()
stage() { # stage NAME COMMAND...
  local name=$1; shift
  echo "=== $name"
  local t0=$SECONDS
  "$@"
  timings+=("$(printf '%-40s %5ds' "$name" $((SECONDS - t0)))")
  echo "=== $name: done in $((SECONDS - t0))s"
}
report() {
  echo
  echo "=== stage timings"
  printf '%s\n' "${timings[@]}"
}
trap report EXIT

stage "python tools (venv)" scripts/bootstrap.sh
stage "template checks (cfn-lint, sam validate, checkov)" scripts/check-template.sh
stage "cargo fmt --check" cargo fmt --all -- --check
stage "cargo clippy -D warnings" cargo clippy --workspace --all-targets --locked -- -D warnings
stage "tests: embedded S3 (s3s-fs)" env -u TEST_S3_ENDPOINT cargo test --workspace --locked

# One large object in ranges at full size, optimised (the debug suite above runs the same tests
# on a few MiB): a 1 GiB CSV and a 1 GiB JSON lines file converted in 8 ranges against one
# invocation, and 1 GiB ingested by 8 ranged children.
if [[ -z "${SKIP_SCALE:-}" ]]; then
  stage "tests at scale: 1 GiB in 8 ranges" env -u TEST_S3_ENDPOINT \
    TRIBUTARY_RANGES_BYTES=1073741824 TRIBUTARY_RANGED_BYTES=1073741824 \
    cargo test --profile scale --locked -p parquet-converter -p url-ingester --test ranges -- --nocapture
fi

if [[ -z "${SKIP_LAMBDA_BUILD:-}" ]]; then
  stage "cargo lambda build --release --arm64" scripts/build-lambdas.sh
fi

if [[ -z "${SKIP_SEAWEEDFS:-}" ]]; then
  seaweed_env=$(scripts/seaweedfs.sh start)
  trap 'scripts/seaweedfs.sh stop; report' EXIT
  eval "$seaweed_env"
  echo "SeaweedFS S3 endpoint: $TEST_S3_ENDPOINT"
  stage "tests: SeaweedFS ($TEST_S3_ENDPOINT)" cargo test --workspace --locked
fi
echo "ALL TESTS PASSED"
