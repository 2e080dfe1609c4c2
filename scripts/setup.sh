#!/usr/bin/env bash
# Set up napari-hrtem on a fresh machine: system libraries for Qt/napari (and Xvfb for the GUI
# tests), a virtual environment in .venv with a CPU build of PyTorch and the package itself.
# Safe to run again: it only installs what is missing.
#   TORCH_SPEC   torch requirement (default torch==2.13.0; e.g. "torch" for a CUDA build)
#   PYTHON       interpreter for the venv (default python3, needs 3.11+)
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES="xvfb xauth libgl1 libegl1 libdbus-1-3 libxkbcommon-x11-0 libxcb-cursor0 libxcb-icccm4 \
libxcb-image0 libxcb-keysyms1 libxcb-randr0 libxcb-render-util0 libxcb-shape0 libxcb-xfixes0 libxcb-xinerama0 \
libfontconfig1"
if command -v dpkg >/dev/null 2>&1; then
  missing=""
  for p in $APT_PACKAGES; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
  if [ -n "$missing" ]; then
    if [ "$(id -u)" = 0 ]; then
      echo "setup: installing system packages:$missing"
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
    elif command -v sudo >/dev/null 2>&1; then
      sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
    else
      echo "setup: please install these system packages:$missing" >&2
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
  echo "setup: installing ${TORCH_SPEC:-torch==2.13.0}"
  "$VPY" -m pip install -q "${TORCH_SPEC:-torch==2.13.0}"
fi
stamp=.venv/.napari-hrtem-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "setup: installing napari-hrtem and its dependencies into .venv"
  "$VPY" -m pip install -q -e ".[test]"
  touch "$stamp"
fi
