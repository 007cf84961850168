#!/usr/bin/env bash
# Builds the three Lambda binaries for arm64 (provided.al2023) with cargo-lambda, as `sam build`
# does, and prints their sizes: target/lambda/<function>/bootstrap under $CARGO_TARGET_DIR.
#
#   scripts/build-lambdas.sh
#
# cargo-lambda and zig (its cross linker) come from PyPI into a venv under
# ${TRIBUTARY_LAMBDA_VENV:-~/.cache/tributary/lambda-venv}; cargo-lambda adds the Rust
# aarch64 target through rustup when it is missing.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/tributary/target}
venv=${TRIBUTARY_LAMBDA_VENV:-$HOME/.cache/tributary/lambda-venv}
reqs=scripts/requirements-lambda.txt
if [[ ! -x "$venv/bin/cargo-lambda" ]] || ! cmp -s "$reqs" "$venv/.requirements"; then
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$reqs"
  cp "$reqs" "$venv/.requirements"
fi
export PATH="$venv/bin:$PATH"
functions=(firehose-transformer parquet-converter url-ingester)
args=()
for f in "${functions[@]}"; do args+=(--bin "$f"); done
t0=$SECONDS
cargo lambda build --release --arm64 --locked "${args[@]}"
echo "built in $((SECONDS - t0))s:"
for f in "${functions[@]}"; do
  bin="$CARGO_TARGET_DIR/lambda/$f/bootstrap"
  [[ -x "$bin" ]] || { echo "missing $bin" >&2; exit 1; }
  printf '  %-22s %6.1f MiB  %s\n' "$f" "$(awk -v b="$(stat -c %s "$bin")" 'BEGIN { print b / 1048576 }')" \
    "$(file -b "$bin" 2>/dev/null | cut -d, -f1-2 || true)"
done
