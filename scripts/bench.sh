#!/usr/bin/env bash
# Benchmarks, release builds, figures printed (and written as JSON under bench/results/).
#
#   scripts/bench.sh firehose   # ~6 MB Firehose batch: ours vs the seed's Python handler, cold start
#   scripts/bench.sh ingester   # 1 GiB HTTP -> S3: ours vs curl, raw PUT, boto3, the seed loop
#   scripts/bench.sh            # both
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/tributary/target}
venv=${TRIBUTARY_BENCH_VENV:-$HOME/.cache/tributary/bench-venv}
if [[ ! -x "$venv/bin/python" ]] || ! cmp -s scripts/requirements-bench.txt "$venv/.requirements"; then
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r scripts/requirements-bench.txt
  cp scripts/requirements-bench.txt "$venv/.requirements"
fi
mkdir -p bench/results
what=${1:-all}
if [[ $what == firehose || $what == all ]]; then
  PATH="$venv/bin:$PATH" BENCH_JSON=bench/results/firehose.json cargo bench -p firehose-transformer --bench batch
fi
if [[ $what == ingester || $what == all ]]; then
  cargo build --release -p tributary-testkit --bin local-s3 -p url-ingester --example ingest
  "$venv/bin/python" bench/ingest.py --bin-dir "$CARGO_TARGET_DIR/release" \
    --size-mib "${BENCH_SIZE_MIB:-1024}" --json bench/results/ingester.json
fi
