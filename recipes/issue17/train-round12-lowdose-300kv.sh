#!/usr/bin/env bash
# Issue 17, round 12 (300 kV): the 300 kV consensus errors are Mo/S2 sublattice swaps that the U-Net++ and the
# MSD-net make together where the U-Net is right, and all three together on fewer, mostly at doses below 2,500
# e/Å² (round 11's error analysis, docs/measurements/accuracy.md). So each network gets a store of low-dose
# draws of its own (train-data-t1-hv-lowdose.yaml: Table 1 at 300 kV, dose 10^2.5-10^3.4 e/Å²; seeds 17190,
# 17290, 17390) and is continued on it together with its Table 1 and wide stores (regenerated from their seeds
# as in rounds 8-11; the U-Net's and U-Net++'s Table 1 stores only to their first N1, N2 waves). One network
# trains per core: the U-Net++ while the MSD-net's stores are made on the other core, then the MSD-net there,
# and the U-Net after the U-Net++ on the first.
# Resumable (stores and checkpoints). Usage: recipes/issue17/train-round12-lowdose-300kv.sh DATA_DIR
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
data="${1:?data folder}"
hrtem="${HRTEM:-napari-hrtem}"
store() {  # name structures config seed workers
  "$hrtem" simulate-dataset --out "$data/$1.zarr" --structures "$2" --config "$here/$3" --energy 300 --size 128 \
    --image-epochs 1 --seed "$4" --workers "$5"
}
again() {  # init name steps lr threads stores...
  local init="$1" name="$2" steps="$3" lr="$4" threads="$5"; shift 5
  [ -f "$data/nets/$name.json" ] && { echo "$name already trained"; return; }
  local banks=() resume=(); for s in "$@"; do banks+=(--bank "$data/$s.zarr"); done
  [ -f "$data/nets/$name.checkpoint/checkpoint.pt" ] && resume=(--resume)
  "$hrtem" train --init "$init" "${banks[@]}" --validation "$data/val300.zarr" --steps "$steps" --batch-size 8 \
    --lr "$lr" --seed 12 --threads "$threads" --name "$name" --out "$data/nets" --validate-every 0 --log-every 20 \
    --checkpoint-every 50 "${resume[@]}" > "$data/nets/$name.log" 2>&1
}
mkdir -p "$data/nets"
"$hrtem" simulate-dataset --out "$data/val300.zarr" --structures 10 --energy 300 --size 128 \
  --image-epochs 3 --phonon-configs 4 --seed 17930 --workers 2  # as generate.sh
store lowdose300_net2 "${NL:-80}" train-data-t1-hv-lowdose.yaml 17290 2
store hv300_net2 50 train-data.yaml 17230 2
store t300_net2 "${N2:-100}" train-data-t1-hv.yaml 17260 2
again "${INIT_UNETPP:-unetpp-300kv}" unetpp-300kv-r12 "${STEPS_UNETPP:-800}" "${LR_UNETPP:-1e-4}" 1 \
  hv300_net2 t300_net2 lowdose300_net2 & unetpp=$!
store lowdose300_net3 "${NL:-80}" train-data-t1-hv-lowdose.yaml 17390 1
store hv300_net3 50 train-data.yaml 17330 1
store t300_net3 "${N3:-160}" train-data-t1-hv.yaml 17360 1
again "${INIT_MSDNET:-msdnet-300kv}" msdnet-300kv-r12 "${STEPS_MSDNET:-600}" "${LR_MSDNET:-3e-4}" 1 \
  hv300_net3 t300_net3 lowdose300_net3 & msdnet=$!
wait "$unetpp"  # by its PID: a bare `wait` would hide a failed run
store lowdose300_net1 "${NL:-80}" train-data-t1-hv-lowdose.yaml 17190 1
store hv300_net1 60 train-data.yaml 17130 1
store t300_net1 "${N1:-100}" train-data-t1-hv.yaml 17160 1
again "${INIT_UNET:-unet-300kv}" unet-300kv-r12 "${STEPS_UNET:-800}" "${LR_UNET:-1e-4}" 1 \
  hv300_net1 t300_net1 lowdose300_net1
wait "$msdnet"
echo "round 12 (300 kV, low dose) trained"
