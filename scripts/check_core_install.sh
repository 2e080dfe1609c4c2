#!/usr/bin/env bash
# Check the core install, without napari: a fresh virtual environment (no system site-packages) in a
# temporary folder gets torch and then `pip install <checkout>` with no extras. It checks that napari
# is not installed, that `napari-hrtem --help` works, and runs the Python file given as $1 (e.g. the
# README example that a test extracts) with that environment's interpreter.
#   bash scripts/check_core_install.sh [EXAMPLE.py]
#   TORCH_SPEC   torch requirement (default torch==2.13.0)
#   TORCH_INDEX  optional wheel index for torch (--index-url), as in scripts/setup.sh
#   PYTHON       interpreter for the venv (default python3, needs 3.11+)
#   KEEP_VENV=1  keep the temporary folder (its path is printed)
set -euo pipefail
checkout=$(cd "$(dirname "$0")/.." && pwd)
example=""
if [ $# -ge 1 ]; then
  example=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
  [ -f "$example" ] || { echo "check_core_install: no such file: $1" >&2; exit 2; }
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/napari-hrtem-core.XXXXXX")
if [ "${KEEP_VENV:-0}" = 1 ]; then
  echo "check_core_install: keeping $tmp"
else
  trap 'rm -rf "$tmp"' EXIT
fi

echo "check_core_install: fresh venv in $tmp/venv"
"${PYTHON:-python3}" -m venv "$tmp/venv"   # no --system-site-packages: only what pip installs here
VPY=$tmp/venv/bin/python

spec=${TORCH_SPEC:-torch==2.13.0}
echo "check_core_install: installing $spec"
if [ -n "${TORCH_INDEX:-}" ]; then
  "$VPY" -m pip install -q --index-url "$TORCH_INDEX" "$spec"
else
  "$VPY" -m pip install -q "$spec"
fi
"$VPY" -W ignore -c "import torch; print(f'check_core_install: torch {torch.__version__}, CUDA build: ' + ('yes' if torch.version.cuda else 'no'))"

# a copy of the checkout, so that the build leaves no build/ or *.egg-info behind in it
mkdir "$tmp/src"
tar -C "$checkout" --exclude=./.git --exclude=./.venv --exclude=./build --exclude=./docs/_build \
  --exclude='*.egg-info' --exclude=__pycache__ -cf - . | tar -C "$tmp/src" -xf -
echo "check_core_install: pip install $checkout (a copy; no extras)"
"$VPY" -m pip install -q "$tmp/src"

cd "$tmp"  # away from the checkout: everything below uses the installed package
if "$VPY" -c "import napari" >/dev/null 2>&1; then
  echo "check_core_install: FAIL: napari is importable after a core install (a core dependency pulls it in)" >&2
  "$VPY" -m pip show napari >&2 || true
  exit 1
fi
echo "check_core_install: ok: napari is not installed"
for m in qtpy magicgui npe2 PyQt6 PyQt5 PySide6 PySide2; do
  if "$VPY" -c "import $m" >/dev/null 2>&1; then
    echo "check_core_install: note: $m is installed (pulled in by a core dependency)"
  fi
done

"$tmp/venv/bin/napari-hrtem" --help >"$tmp/help.txt"
echo "check_core_install: ok: napari-hrtem --help ($(wc -l <"$tmp/help.txt") lines)"

if [ -n "$example" ]; then
  echo "check_core_install: running $example"
  "$VPY" "$example"
  echo "check_core_install: ok: the example ran"
fi
echo "check_core_install: all ok"
