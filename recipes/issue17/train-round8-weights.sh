#!/usr/bin/env bash
# Issue 17, round 8 (50-80 kV): single S weighted 8 instead of 3 in the loss (`--class-weights 1 1 8 0.5`).
# The MSD-net exactly as round 7's depth-24 variant (train-round7-msdnet.sh, its control: same stores, steps,
# learning rate, seed); the U-Net and the U-Net++ 600 steps at 1e-4 on their own round-3 stores
# (generate-round3.sh). The MSD-net on one core, the two U-Nets one after the other on the other.
# Resumable from checkpoints. Usage: recipes/issue17/train-round8-weights.sh DATA_DIR
set -euo pipefail
data="${1:?data folder}"
hrtem="${HRTEM:-napari-hrtem}"
mkdir -p "$data/nets"  # for the logs, before train creates it
run() {  # name init steps seed banks...
  local name="$1" init="$2" steps="$3" seed="$4"; shift 4
  [ -f "$data/nets/$name.json" ] && { echo "$name already trained"; return; }
  local resume=(); [ -f "$data/nets/$name.checkpoint/checkpoint.pt" ] && resume=(--resume)
  local banks=(); for b in "$@"; do banks+=(--bank "$data/$b.zarr"); done
  "$hrtem" train --init "$init" --class-weights 1 1 8 0.5 "${banks[@]}" --validation "$data/val80.zarr" \
    --steps "$steps" --batch-size 8 --lr 1e-4 --seed "$seed" --threads 1 --name "$name" --out "$data/nets" \
    --validate-every 0 --log-every 10 --checkpoint-every 25 "${resume[@]}" > "$data/nets/$name.log" 2>&1
}
run msdnet-r8s8 msdnet 1000 37 t50_net3 t80_net3 t50v_net3 t80v_net3 & msd=$!
( run unet-r8s8 unet 600 41 t50_net1 t80_net1 c50_net1 c80_net1
  run unetpp-r8s8 unetpp 600 43 t50_net2 t80_net2 c50_net2 c80_net2 ) & unets=$!
wait "$msd"; wait "$unets"  # each by its PID: a bare `wait` would hide a failed run
echo "round 8 (class weights) trained"
