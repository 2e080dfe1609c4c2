#!/usr/bin/env bash
# Issue 17, round 8 (300 kV): the 300 kV U-Net has only seen its wide store (hv300_net1, 60 exit waves) and the
# U-Net++ gained most from Table 1 exit waves at 300 kV (round 4: validation F1 0.951 -> 0.977). So: a Table 1
# store at 300 kV for the U-Net (train-data-t1-hv.yaml, its own seeds 171xx), the U-Net++'s grown to N2 waves,
# then each network continued on its wide store together with its Table 1 store, one per CPU core.
# Resumable (stores and checkpoints). Usage: recipes/issue17/train-round8-300kv.sh DATA_DIR [WORKERS]
# Round 9 is this script again on grown stores, from round 8's networks:
#   N1=160 N2=160 R=r9 INIT_UNET=DATA/nets/unet-300kv-r8.json INIT_UNETPP=DATA/nets/unetpp-300kv-r8.json \
#   LR_UNET=2e-4 LR_UNETPP=1e-4 train-round8-300kv.sh DATA
# and round 10 the same with N1=260 N2=260 R=r10 and round 9's networks as INIT_UNET, INIT_UNETPP.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
data="${1:?data folder}"; workers="${2:-2}"
hrtem="${HRTEM:-napari-hrtem}"
store() {  # name structures seed
  "$hrtem" simulate-dataset --out "$data/$1.zarr" --structures "$2" --config "$here/train-data-t1-hv.yaml" \
    --energy 300 --size 128 --image-epochs 1 --seed "$3" --workers "$workers"
}
store t300_net1 "${N1:-60}" 17160
store t300_net2 "${N2:-70}" 17260  # round 4 made the first 35
mkdir -p "$data/nets"  # for the logs, before train creates it
again() {  # init wide-store k steps lr name
  local init="$1" wide="$2" k="$3" steps="$4" lr="$5" name="$6"
  [ -f "$data/nets/$name.json" ] && { echo "$name already trained"; return; }
  local resume=(); [ -f "$data/nets/$name.checkpoint/checkpoint.pt" ] && resume=(--resume)
  "$hrtem" train --init "$init" --bank "$data/$wide.zarr" --bank "$data/t300_net$k.zarr" --validation "$data/val300.zarr" \
    --steps "$steps" --batch-size 8 --lr "$lr" --seed 8 --threads 1 --name "$name" --out "$data/nets" \
    --validate-every 0 --log-every 20 --checkpoint-every 50 "${resume[@]}" > "$data/nets/$name.log" 2>&1
}
r="${R:-r8}"
again "${INIT_UNET:-unet-300kv}" hv300_net1 1 "${STEPS_UNET:-800}" "${LR_UNET:-3e-4}" "unet-300kv-$r" & unet=$!
again "${INIT_UNETPP:-unetpp-300kv}" hv300_net2 2 "${STEPS_UNETPP:-500}" "${LR_UNETPP:-2e-4}" "unetpp-300kv-$r" & unetpp=$!
wait "$unet"; wait "$unetpp"  # each by its PID: a bare `wait` would hide a failed run
echo "round ${r#r} (300 kV) trained"
