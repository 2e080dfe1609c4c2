#!/usr/bin/env bash
# Issue 17, round 15 (50-80 kV): the U-Net and the U-Net++ on carbon. Under 6 Å of amorphous carbon the
# consensus (held-out 0.963 / single S 0.643) is below the U-Net alone (0.981 / 0.714): each network saw
# 40 contaminated exit waves in round 3. As the 300 kV rounds 8-10 did for 300 kV, each gets fresh stores
# of its own seeds, three times as many contaminated exit waves as it has seen, with Table 1 at 50 and
# 80 kV beside them so that it keeps single S there. The U-Net++'s contaminated store uses the MD
# vibration table (train-data-t1c-md.yaml, as in round 3), so the two stay trained differently.
# First network 1's stores on both cores, then the U-Net trains on one core while network 2's stores are
# made on the other, then the U-Net++ trains. Resumable (stores and checkpoints).
# Usage: recipes/issue17/train-round15.sh DATA_DIR
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
data="${1:?data folder}"
hrtem="${HRTEM:-napari-hrtem}"
store() {  # name energy_kV structures seed config workers
  "$hrtem" simulate-dataset --out "$data/$1.zarr" --structures "$3" --config "$here/$5" \
    --energy "$2" --size 128 --image-epochs 1 --seed "$4" --workers "$6"
}
stores() {  # k contaminated-config workers; network k owns seeds 17k00-17k99
  store "c50_net$1_r15" 50 "${NC:-120}" "17${1}52" "$2" "$3"
  store "t50_net$1_r15" 50 "${N50:-60}" "17${1}50" train-data-t1.yaml "$3"
  store "t80_net$1_r15" 80 "${N80:-40}" "17${1}51" train-data-t1.yaml "$3"
}
fine_tune() {  # architecture k steps lr name
  local arch="$1" k="$2" name="$5"
  [ -f "$data/nets/$name.json" ] && { echo "$name already trained"; return; }
  local resume=(); [ -f "$data/nets/$name.checkpoint/checkpoint.pt" ] && resume=(--resume)
  "$hrtem" train --architecture "$arch" --init "$arch" --bank "$data/c50_net${k}_r15.zarr" \
    --bank "$data/t50_net${k}_r15.zarr" --bank "$data/t80_net${k}_r15.zarr" --validation "$data/val80.zarr" \
    --steps "$3" --batch-size 8 --lr "$4" --seed "15$k" --threads 1 --name "$name" --out "$data/nets" \
    --validate-every 0 --log-every 20 --checkpoint-every 50 "${resume[@]}" > "$data/nets/$name.log" 2>&1
}
mkdir -p "$data/nets"
[ -d "$data/val80.zarr" ] || "$hrtem" simulate-dataset --out "$data/val80.zarr" --structures 6 --energy 80 \
  --size 128 --image-epochs 3 --phonon-configs 4 --seed 17908 --workers 2  # as generate.sh
stores 1 train-data-t1c.yaml 2
fine_tune unet 1 "${STEPS_UNET:-1500}" "${LR_UNET:-3e-4}" unet-r15 &
{ stores 2 train-data-t1c-md.yaml 1; fine_tune unetpp 2 "${STEPS_UNETPP:-900}" "${LR_UNETPP:-2e-4}" unetpp-r15; } &
wait
echo "round 15 trained"
