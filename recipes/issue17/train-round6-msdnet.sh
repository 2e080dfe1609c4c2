#!/usr/bin/env bash
# Issue 17, round 6 (50-80 kV): a deeper MSD-net. The shipped MSD-net (width 2, depth 24, 11,536 parameters)
# is deepened to DEPTH layers (`train --init msdnet --set depth=N`: the new layers reach the head through zero
# weights, so training starts from what the network computes) and fine-tuned on its own four round-3 stores
# (generate-round3.sh: Table 1 and contaminated, 50 and 80 kV). Resumes from its checkpoint when run again.
# Usage: recipes/issue17/train-round6-msdnet.sh DATA_DIR
set -euo pipefail
data="${1:?data folder}"
hrtem="${HRTEM:-napari-hrtem}"
name="${NAME:-msdnet-d${DEPTH:-36}}"
resume=(); [ -f "$data/nets/$name.checkpoint/checkpoint.pt" ] && resume=(--resume)
"$hrtem" train --init "$data/today/msdnet.json" --set "depth=${DEPTH:-36}" \
  --bank "$data/t50_net3.zarr" --bank "$data/t80_net3.zarr" --bank "$data/c50_net3.zarr" --bank "$data/c80_net3.zarr" \
  --validation "$data/val80.zarr" --steps "${STEPS:-500}" --batch-size 8 --lr "${LR:-3e-4}" --seed 36 --threads 1 \
  --name "$name" --out "$data/nets" --validate-every 0 --log-every 10 --checkpoint-every 25 "${resume[@]}"
