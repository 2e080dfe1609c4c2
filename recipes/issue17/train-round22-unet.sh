#!/usr/bin/env bash
# Issue 17, round 22 (50-80 kV): single S at 80 kV. On 300 held-out series the consensus finds single S
# at 80 kV at F1 0.943 ± 0.008 (target 0.95), no better than the U-Net alone (0.943), which the learned
# consensus leans on. The shipped U-Net is continued on a mix that is half 80 kV: fresh stores of its own
# seeds (network 1 owns 17100-17199; round 20 used 17160-17162), 120 Table 1 exit waves at 80 kV and 80
# at 50 kV with 2-10 Å of carbon (Table 1's vacancies, as round 14), beside round 20's 60 at 80 kV and 80
# Table 1 at 50 kV; 2,000 steps of 8 at 2e-4 with cosine decay on one core (about 30 min with the other
# core busy). Making the two new stores took 2.5 and 4.7 min on 2 cores. Resumable (stores and
# checkpoints). Usage: recipes/issue17/train-round22-unet.sh DATA_DIR [WORKERS]
# (DATA_DIR holds round 20's t80_r20.zarr, t50_r20.zarr and val80.zarr: recipes/issue17/train-round20-unet.sh
# with STORES_ONLY=1 makes them.)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
data="${1:?data folder}"; workers="${2:-2}"
hrtem="${HRTEM:-napari-hrtem}"
store() {  # name energy_kV structures seed config
  "$hrtem" simulate-dataset --out "$data/$1.zarr" --structures "$3" --config "$here/$5" \
    --energy "$2" --size 128 --image-epochs 1 --seed "$4" --workers "$workers"
}
store t80_r22 80 "${N80:-120}" 17163 train-data-t1.yaml
store c50_r22 50 "${NC:-80}" 17165 train-data-t1c.yaml
[ "${STORES_ONLY:-0}" = 1 ] && { echo "round 22 stores made"; exit 0; }
mkdir -p "$data/nets"
name=unet-r22
if [ -f "$data/nets/$name.json" ]; then echo "$name already trained"; exit 0; fi
resume=(); [ -f "$data/nets/$name.checkpoint/checkpoint.pt" ] && resume=(--resume)
"$hrtem" train --init "${INIT:-unet}" --bank "$data/t80_r20.zarr" --bank "$data/t80_r22.zarr" \
  --bank "$data/t50_r20.zarr" --bank "$data/c50_r22.zarr" --validation "$data/val80.zarr" \
  --steps "${STEPS:-2000}" --batch-size 8 --lr "${LR:-2e-4}" --seed 22 --threads "${THREADS:-1}" --name "$name" \
  --out "$data/nets" --validate-every 0 --log-every 20 --checkpoint-every 100 "${resume[@]}" > "$data/nets/$name.log" 2>&1
echo "round 22 (U-Net) trained"
