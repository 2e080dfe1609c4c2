#!/usr/bin/env bash
# Issue 17, round 22 (50-80 kV): single S at 80 kV. On 300 held-out series the consensus finds single S
# at 80 kV at F1 0.943 ± 0.008 (target 0.95), no better than the U-Net alone (0.943), which the learned
# consensus leans on. The shipped U-Net is continued on a mix that is half 80 kV: fresh stores of its own
# seeds (network 1 owns 17100-17199; round 20 used 17160-17162), 120 Table 1 exit waves at 80 kV and 80
# at 50 kV with 2-10 Å of carbon (Table 1's vacancies, as round 14), beside round 20's 60 at 80 kV and 80
# Table 1 at 50 kV; 2,000 steps of 8 at 2e-4 with cosine decay on one core (about 30 min with the other
# core busy). Making the two new stores took 2.5 and 4.7 min on 2 cores. Resumable (stores and
# checkpoints). Then (second step, unet-r22c) that network continued for 2,000 more steps at 1.5e-4 with 140
# more carbon exit waves (80 at 80 kV, 60 at 50 kV) to win back what it lost under carbon; it lost its 80 kV
# gain instead (docs: accuracy, stage 18). Neither is shipped.
# Usage: recipes/issue17/train-round22-unet.sh DATA_DIR [WORKERS]
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
store c80_r23 80 80 17166 train-data-t1c.yaml
store c50_r23 50 60 17167 train-data-t1c.yaml
[ "${STORES_ONLY:-0}" = 1 ] && { echo "round 22 stores made"; exit 0; }
train() {  # name init lr seed banks...
  local name="$1" init="$2" lr="$3" seed="$4"; shift 4
  if [ -f "$data/nets/$name.json" ]; then echo "$name already trained"; return; fi
  local resume=(); [ -f "$data/nets/$name.checkpoint/checkpoint.pt" ] && resume=(--resume)
  local banks=(); for b in "$@"; do banks+=(--bank "$data/$b.zarr"); done
  "$hrtem" train --init "$init" "${banks[@]}" --validation "$data/val80.zarr" --steps "${STEPS:-2000}" \
    --batch-size 8 --lr "$lr" --seed "$seed" --threads "${THREADS:-1}" --name "$name" --out "$data/nets" \
    --validate-every 0 --log-every 20 --checkpoint-every 100 "${resume[@]}" > "$data/nets/$name.log" 2>&1
  echo "$name trained"
}
mkdir -p "$data/nets"
train unet-r22 "${INIT:-unet}" 2e-4 22 t80_r20 t80_r22 t50_r20 c50_r22
train unet-r22c "$data/nets/unet-r22.json" 1.5e-4 23 t80_r20 t80_r22 t50_r20 c50_r22 c80_r23 c50_r23
