#!/usr/bin/env bash
# Set up napari-hrtem on a fresh machine: system libraries for Qt/napari (and Xvfb for the GUI
# tests), a virtual environment in .venv with PyTorch and the package itself with all its extras
# (test, napari, docs, dev). Safe to run again: it only installs what is missing.
#   TORCH_SPEC   torch requirement (default torch==2.13.0)
#   TORCH_INDEX  optional wheel index for torch, passed to pip as --index-url
#                (https://download.pytorch.org/whl/cpu for a CPU-only build; unset for the default)
#   PYTHON       interpreter for the venv (default python3, needs 3.11+)
#
# Which PyTorch build you get: on this project's machines `torch==2.13.0` resolves to a local CPU
# wheel. On an ordinary Linux machine a plain `pip install torch==...` from PyPI brings the CUDA build
# (large; the networks then run on a GPU if there is one). For a CPU-only build set
# TORCH_INDEX=https://download.pytorch.org/whl/cpu; for CUDA leave TORCH_INDEX unset. The line
# "torch <version>, CUDA build: yes/no" at the end says what was installed.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES="xvfb xauth libgl1 libegl1 libdbus-1-3 libxkbcommon-x11-0 libxcb-cursor0 libxcb-icccm4 \
libxcb-image0 libxcb-keysyms1 libxcb-randr0 libxcb-render-util0 libxcb-shape0 libxcb-xfixes0 libxcb-xinerama0 \
libfontconfig1"

apt_install() {  # $1: "" or "sudo"; the rest: packages. Waits up to 10 min for the dpkg lock.
  local sudo=$1; shift
  if ! $sudo apt-get -o DPkg::Lock::Timeout=600 update -qq; then
    echo "setup: ERROR: 'apt-get update' failed (see above); cannot install the system packages: $*" >&2
    exit 1
  fi
  if ! $sudo env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq "$@"; then
    echo "setup: ERROR: 'apt-get install' failed (see above) for the system packages: $*" >&2
    exit 1
  fi
}

if command -v dpkg >/dev/null 2>&1; then
  missing=()
  for p in $APT_PACKAGES; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  if [ "${#missing[@]}" -gt 0 ]; then
    echo "setup: installing system packages: ${missing[*]}"
    if [ "$(id -u)" = 0 ]; then
      apt_install "" "${missing[@]}"
    elif command -v sudo >/dev/null 2>&1; then
      apt_install sudo "${missing[@]}"
    else
      echo "setup: WARNING: not root and no sudo; please install these system packages" \
        "(napari and the GUI tests need them): ${missing[*]}" >&2
    fi
  fi
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  "$PY" -m venv .venv
fi
VPY=.venv/bin/python
if ! "$VPY" -c "import torch" >/dev/null 2>&1; then
  spec=${TORCH_SPEC:-torch==2.13.0}
  if [ -n "${TORCH_INDEX:-}" ]; then
    echo "setup: installing $spec from $TORCH_INDEX"
    "$VPY" -m pip install -q --index-url "$TORCH_INDEX" "$spec"
  else
    echo "setup: installing $spec (a local CPU wheel on this project's machines; from PyPI on Linux" \
      "the CUDA build; TORCH_INDEX=https://download.pytorch.org/whl/cpu gives a CPU-only build)"
    "$VPY" -m pip install -q "$spec"
  fi
fi
"$VPY" -c "import torch; print(f'setup: torch {torch.__version__}, CUDA build: ' + ('yes (CUDA ' + torch.version.cuda + ')' if torch.version.cuda else 'no'))"

stamp=.venv/.napari-hrtem-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "setup: installing napari-hrtem with its extras test, napari, docs, dev into .venv"
  "$VPY" -m pip install -q -e ".[test,napari,docs,dev]"
  touch "$stamp"
fi
