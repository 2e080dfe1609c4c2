#!/usr/bin/env bash
# Issue 17, round 3 (50-80 kV): fine-tune each shipped 50 kV network (unet, unetpp, msdnet) on its own four
# stores of generate-round3.sh (Table 1 and contaminated, 50 and 80 kV), at a lower learning rate than
# round 2 so that what it learned in Table 1 stays. Two runs at a time (one per CPU core): the U-Net then
# the U-Net++, and the MSD-net beside them. Each waits for its stores and resumes from its checkpoint when
# run again. Usage: recipes/issue17/train-round3.sh DATA_DIR
set -euo pipefail
data="${1:?data folder}"
hrtem="${HRTEM:-napari-hrtem}"
complete() {  # store: every sample asked for is written
  "${PYTHON:-python}" -c "import sys, zarr; from napari_hrtem.training.datastore import completed_samples as c
r = zarr.open_group(sys.argv[1], mode='r'); sys.exit(len(c(sys.argv[1])) < int(r.attrs['structures']))" "$1" 2>/dev/null
}
fine_tune() {  # architecture k steps name
  local arch="$1" k="$2" steps="$3" name="$4" banks=()
  for s in t50 t80 c50 c80; do
    until complete "$data/${s}_net$k.zarr"; do sleep 20; done
    banks+=(--bank "$data/${s}_net$k.zarr")
  done
  while pgrep -f -- "--name $name " > /dev/null; do sleep 20; done  # a run of it still going
  [ -f "$data/nets/$name.json" ] && { echo "$name already trained"; return; }
  local resume=(); [ -f "$data/nets/$name.checkpoint/checkpoint.pt" ] && resume=(--resume)
  "$hrtem" train --architecture "$arch" --init "$arch" "${banks[@]}" --validation "$data/val80.zarr" \
    --steps "$steps" --batch-size 8 --lr "${LR:-3e-4}" --seed "3$k" --threads 1 --name "$name" --out "$data/nets" \
    --validate-every 0 --log-every 20 --checkpoint-every 50 "${resume[@]}"
}
{ fine_tune unet 1 "${STEPS_UNET:-1000}" unet-r3; fine_tune unetpp 2 "${STEPS_UNETPP:-600}" unetpp-r3; } &
fine_tune msdnet 3 "${STEPS_MSDNET:-700}" msdnet-r3 &
wait
echo "round 3 trained"
