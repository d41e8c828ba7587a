#!/usr/bin/env bash
# Re-resolves the project's dependencies (pyproject.toml's [test] extra, which includes every
# other extra) in a throwaway virtualenv and writes the versions to constraints.txt: the lock
# that `make venv`, the images (tools/images/images.sh) and the fresh-install tests install from.
# Run it (`make lock`) after changing a dependency in pyproject.toml, then run `make test`.
# pip, setuptools and wheel are the installer and build backend, not locked here.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
python="${PYTHON:-python3}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
"$python" -m venv "$work/venv"
"$work/venv/bin/pip" install -q --disable-pip-version-check --upgrade pip
"$work/venv/bin/pip" install -q --disable-pip-version-check -e "$root[test]"
{
    echo "# The tested versions of every dependency (pip constraints; \`make lock\` rewrites this file)."
    "$work/venv/bin/pip" freeze --exclude-editable --disable-pip-version-check
} >"$root/constraints.txt"
echo "lock: constraints.txt has $(grep -vc '^#' "$root/constraints.txt") pinned packages"
