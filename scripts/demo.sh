#!/usr/bin/env bash
# The main job: set up, then open napari with the napari-hrtem widgets, simulate MoS2 on graphene,
# run the shipped networks on it and show per-class points for each network and the consensus.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/napari-hrtem view --demo "$@"
