#!/usr/bin/env bash
# Creates (or refreshes) the Python venv with the tools the tests use, outside the checkout.
# Prints nothing but errors when it is already up to date.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv=${TRIBUTARY_VENV:-$HOME/.cache/tributary/venv}
req="$root/scripts/requirements.txt"
stamp="$venv/.requirements.sha256"
want=$(sha256sum "$req" | cut -d' ' -f1)
if [[ -x "$venv/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
  exit 0
fi
echo "bootstrap: installing Python tools into $venv"
python3 -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$req"
echo "$want" > "$stamp"
