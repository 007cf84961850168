#!/usr/bin/env bash
# Offline checks of template.yaml: cfn-lint, sam validate --lint, checkov, and the tests of the
# SAM-expanded template (scripts/template_test.py). Any error or warning fails. Needs no AWS account and sends nothing to AWS. Prints how long each check took.
#
#   scripts/check-template.sh
#
# The tools live in two venvs under ${TRIBUTARY_DEPLOY_VENV:-~/.cache/tributary/deploy-venv}
# (checkov and aws-sam-cli pin incompatible boto3 versions), re-installed when
# scripts/requirements-deploy.txt changes.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
reqs=scripts/requirements-deploy.txt
venv=${TRIBUTARY_DEPLOY_VENV:-$HOME/.cache/tributary/deploy-venv}
# The pins are checked on Python 3.11; PYTHON picks another interpreter.
python=${PYTHON:-$(command -v python3.11 || command -v python3)}

# Offline: no telemetry, no update checks, no credential or region look-ups (dummy values, and
# no instance-metadata probing), nothing sent to a platform.
export SAM_CLI_TELEMETRY=0 SAM_CLI_DISABLE_UPDATE_CHECK=1
export CKV_SKIP_PACKAGE_UPDATE_CHECK=true CKV_PARSE_ERROR_FAIL=true
export AWS_ACCESS_KEY_ID=offline AWS_SECRET_ACCESS_KEY=offline AWS_DEFAULT_REGION=us-east-1 AWS_REGION=us-east-1
export AWS_EC2_METADATA_DISABLED=true
unset AWS_PROFILE AWS_SESSION_TOKEN

declare -a timings=()
report() {
  [[ ${#timings[@]} -gt 0 ]] || return 0
  echo
  echo "=== template check timings"
  printf '%s\n' "${timings[@]}"
}
trap report EXIT
step() { # step NAME COMMAND...
  local name=$1; shift
  echo "=== $name"
  local t0=$EPOCHREALTIME rc=0
  "$@" || rc=$?
  local secs
  secs=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')
  timings+=("$(printf '%-28s %6ss  %s' "$name" "$secs" "$([[ $rc == 0 ]] && echo ok || echo "FAILED (exit $rc)")")")
  echo "=== $name: $([[ $rc == 0 ]] && echo ok || echo "FAILED (exit $rc)") in ${secs}s"
  return "$rc"
}

# (Re)install a venv from the lines of $reqs selected by grep ARGS (comments dropped).
ensure_venv() { # ensure_venv DIR GREP-ARGS...
  local dir=$1; shift
  local want
  want=$(grep -v '^[[:space:]]*\(#\|$\)' "$reqs" | grep "$@" || true)
  if [[ -x "$dir/bin/python" ]] && [[ "$(cat "$dir/.requirements" 2>/dev/null)" == "$want" ]]; then
    return 0
  fi
  # (step runs this in an `||` context, where set -e does not apply: check every command.)
  rm -rf "$dir" &&
    "$python" -m venv "$dir" &&
    printf '%s\n' "$want" >"$dir/requirements.txt" &&
    "$dir/bin/python" -m pip install --quiet --disable-pip-version-check -r "$dir/requirements.txt" &&
    printf '%s' "$want" >"$dir/.requirements"
}
install_tools() {
  ensure_venv "$venv/sam" -v -i '^checkov\b' && ensure_venv "$venv/checkov" -i '^checkov\b'
}

echo "tools: $venv"
step "venvs" install_tools || { echo "could not install the tools from $reqs" >&2; exit 1; }

# Each check runs even when an earlier one failed; the script fails if any did.
failed=0
step "cfn-lint" "$venv/sam/bin/cfn-lint" template.yaml || failed=1
step "sam validate --lint" "$venv/sam/bin/sam" validate --lint --template template.yaml --region us-east-1 || failed=1
step "checkov" "$venv/checkov/bin/checkov" -f template.yaml --framework cloudformation \
  --quiet --compact --skip-download || failed=1

# checkov reads the SAM resources as written, so the roles SAM generates (and the policies in
# the functions' Policies) go unchecked: check the template again as SAM expands it.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"; report' EXIT
sam_transform() {
  "$venv/sam/bin/python" - template.yaml "$tmp/template.json" <<'PY'
import json, sys
from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse

class NoManagedPolicies:  # SAM's own policy ARNs need no look-up
    def load(self):
        return {}

template = yaml_parse(open(sys.argv[1]).read())
# What `sam package` does: code on S3 instead of a local path.
template.setdefault("Globals", {}).setdefault("Function", {})["CodeUri"] = "s3://placeholder/code.zip"
with open(sys.argv[2], "w") as out:
    json.dump(transform(template, {}, NoManagedPolicies()), out, indent=1)
PY
}
if step "SAM transform" sam_transform; then
  step "checkov (SAM expanded)" "$venv/checkov/bin/checkov" -f "$tmp/template.json" \
    --framework cloudformation --quiet --compact --skip-download || failed=1
  # Each alarm, permission condition and KMS statement present exactly when its parameter asks
  # for it; no dependency cycle (scripts/template_test.py).
  step "template tests (expanded)" "$venv/sam/bin/python" scripts/template_test.py "$tmp/template.json" || failed=1
else
  failed=1
fi

if [[ $failed != 0 ]]; then
  echo "TEMPLATE CHECKS FAILED" >&2
  exit 1
fi
echo "TEMPLATE CHECKS PASSED"
