#!/usr/bin/env bash
# Issue 17, round 5 (50-80 kV): the U-Net++ between the thesis network and its round-3 fine-tuned copy
# (weight-space interpolation, WiSE-FT: `napari-hrtem interpolate`). Round 3 taught the U-Net++ 80 kV and
# contamination at a cost in Table 1; alpha 0.25 of the fine-tuned weights keeps most of both.
# alpha was chosen on calibration series (seed 7, 50 per condition, never the held-out seed 2026):
#   python benchmarks/eval_mixes.py --seed 7 --n 50 --cache CAL --tta --conditions table1-50kV 80kV contamination-6A \
#     --sets today=... a25=... a50=... a75=... r3=...   (networks of napari-hrtem interpolate at each alpha)
# DATA_DIR/today/unetpp.json is the thesis U-Net++ as shipped before round 3 (sha256 in the new card).
# Usage: recipes/issue17/interpolate-round5.sh DATA_DIR
set -euo pipefail
data="${1:?data folder}"
hrtem="${HRTEM:-napari-hrtem}"
"$hrtem" interpolate "$data/today/unetpp.json" "$data/nets/unetpp-r3.json" --alpha "${ALPHA:-0.25}" \
  --validation "$data/val80.zarr" --name unetpp-r5 --out "$data/nets"
