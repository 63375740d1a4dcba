#!/usr/bin/env bash
# Creates target/pyenv (Debian's python3, not a pyenv shim) with the test
# requirements; re-installs only when tests/requirements.txt changed.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=target/pyenv
stamp=$venv/.requirements.sha256
want=$(sha256sum tests/requirements.txt | cut -d' ' -f1)
if [ -x $venv/bin/python ] && [ "$(cat $stamp 2>/dev/null)" = "$want" ]; then
    exit 0
fi
echo "[pyenv] creating $venv" >&2
rm -rf $venv
/usr/bin/python3 -m venv $venv
$venv/bin/pip install -q --disable-pip-version-check -r tests/requirements.txt
echo "$want" > $stamp
