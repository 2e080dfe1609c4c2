#!/usr/bin/env bash
# Issue 17, round 3 (300 kV): continue the shipped unetpp-300kv and msdnet-300kv (round 2) on their grown
# stores (generate.sh with N_HV2=90 N_HV3=100), at a lower learning rate. Resumable like train.sh.
# Usage: recipes/issue17/train-round3-300kv.sh DATA_DIR
set -euo pipefail
data="${1:?data folder}"
hrtem="${HRTEM:-napari-hrtem}"
again() {  # init store steps name
  while pgrep -f -- "--name $4 " > /dev/null; do sleep 20; done  # a run of it still going
  [ -f "$data/nets/$4.json" ] && { echo "$4 already trained"; return; }
  local resume=(); [ -f "$data/nets/$4.checkpoint/checkpoint.pt" ] && resume=(--resume)
  "$hrtem" train --init "$1" --bank "$data/$2.zarr" --validation "$data/val300.zarr" --steps "$3" \
    --batch-size 8 --lr "${LR:-3e-4}" --seed 3 --threads 1 --name "$4" --out "$data/nets" --validate-every 0 \
    --log-every 20 --checkpoint-every 50 "${resume[@]}"
}
again unetpp-300kv hv300_net2 "${STEPS_UNETPP:-400}" unetpp-300kv-r3 &
again msdnet-300kv hv300_net3 "${STEPS_MSDNET:-400}" msdnet-300kv-r3 &
wait
echo "round 3 (300 kV) trained"
