#!/usr/bin/env bash
# Issue 17, round 4 (300 kV): Table 1 stores at 300 kV for the U-Net++ and the MSD-net (train-data-t1-hv.yaml, their
# own seeds), then each shipped 300 kV network continued on that store together with its wide store of rounds 1-3.
# Resumable (stores and checkpoints). Usage: recipes/issue17/train-round4-300kv.sh DATA_DIR [WORKERS]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
data="${1:?data folder}"; workers="${2:-2}"
hrtem="${HRTEM:-napari-hrtem}"
for k in 2 3; do
  "$hrtem" simulate-dataset --out "$data/t300_net$k.zarr" --structures "${N_T:-35}" --config "$here/train-data-t1-hv.yaml" \
    --energy 300 --size 128 --image-epochs 1 --seed "17${k}60" --workers "$workers"
done
again() {  # init wide-store k steps name
  local init="$1" wide="$2" k="$3" steps="$4" name="$5"
  while pgrep -f -- "--name $name " > /dev/null; do sleep 20; done  # a run of it still going
  [ -f "$data/nets/$name.json" ] && { echo "$name already trained"; return; }
  local resume=(); [ -f "$data/nets/$name.checkpoint/checkpoint.pt" ] && resume=(--resume)
  "$hrtem" train --init "$init" --bank "$data/$wide.zarr" --bank "$data/t300_net$k.zarr" --validation "$data/val300.zarr" \
    --steps "$steps" --batch-size 8 --lr "${LR:-3e-4}" --seed 4 --threads 1 --name "$name" --out "$data/nets" \
    --validate-every 0 --log-every 20 --checkpoint-every 50 "${resume[@]}"
}
again unetpp-300kv hv300_net2 2 "${STEPS_UNETPP:-400}" unetpp-300kv-r4 &
again msdnet-300kv hv300_net3 3 "${STEPS_MSDNET:-350}" msdnet-300kv-r4 &
wait
echo "round 4 (300 kV) trained"
