#!/usr/bin/env bash
# Issue 17, round 18 (50-80 kV; not shipped, see docs/measurements/accuracy.md): a deeper MSD-net, now that
# a CPU training step is 5-7x faster (the layer convolutions as one matrix product each). The shipped
# msdnet (depth 24, w 2) deepened to DEPTH without changing what it computes (`--set depth=`), then
# continued on round 14's stores (its own seeds; round 14's recipe makes them) at 1e-3 with cosine decay,
# one thread per run so that two depths train side by side.
# Resumable (checkpoints). Usage: recipes/issue17/train-round18-msdnet.sh DATA_DIR DEPTH STEPS
set -euo pipefail
data="${1:?data folder with the round-14 stores}"; depth="${2:?depth}"; steps="${3:?steps}"
hrtem="${HRTEM:-napari-hrtem}"
name="msdnet-r18-d$depth"
mkdir -p "$data/nets"
if [ -f "$data/nets/$name.json" ]; then echo "$name already trained"; exit 0; fi
resume=(); [ -f "$data/nets/$name.checkpoint/checkpoint.pt" ] && resume=(--resume)
"$hrtem" train --init msdnet --set "depth=$depth" --bank "$data/t50_r14.zarr" --bank "$data/t80_r14.zarr" \
  --bank "$data/c50_r14.zarr" --validation "$data/val80.zarr" --steps "$steps" --batch-size 8 \
  --lr "${LR:-1e-3}" --seed 18 --threads "${THREADS:-1}" --name "$name" --out "$data/nets" --validate-every 0 \
  --log-every 10 --checkpoint-every 50 "${resume[@]}" >> "$data/nets/$name.log" 2>&1
echo "round 18 ($name) trained"
