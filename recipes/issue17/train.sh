#!/usr/bin/env bash
# Issue 17, stage 2 (CPU plan): fine-tune each shipped network on its own exit-wave stores, in the background.
# Each waits for its stores (recipes/issue17/generate.sh) to be complete; each resumes from its checkpoint
# when run again. Usage: recipes/issue17/train.sh DATA_DIR SET   (SET: hv = 300 kV, lv = 50 + 80 kV)
set -euo pipefail
data="${1:?data folder}"; set="${2:?hv or lv}"
hrtem="${HRTEM:-napari-hrtem}"; python="${PYTHON:-python}"
complete() {  # store: true when every sample asked for is written
  "$python" - "$1" <<'PY'
import sys, zarr
from napari_hrtem.training.datastore import completed_samples
try:
    root = zarr.open_group(sys.argv[1], mode="r")
    sys.exit(0 if len(completed_samples(sys.argv[1])) >= int(root.attrs["structures"]) else 1)
except Exception:
    sys.exit(1)
PY
}
wait_for() { for s in "$@"; do until complete "$data/$s.zarr"; do sleep 30; done; done; }
fine_tune() {  # architecture steps name validation banks...
  local arch="$1" steps="$2" name="$3" val="$4"; shift 4
  local banks=(); for b in "$@"; do banks+=(--bank "$data/$b.zarr"); done
  wait_for "$val" "$@"
  while pgrep -f -- "--name $name " > /dev/null; do sleep 20; done  # a run of it still going
  [ -f "$data/nets/$name.json" ] && { echo "$name already trained"; return; }
  local resume=(); [ -f "$data/nets/$name.checkpoint/checkpoint.pt" ] && resume=(--resume)
  "$hrtem" train --architecture "$arch" --init "$arch" "${banks[@]}" --validation "$data/$val.zarr" \
    --steps "$steps" --batch-size 8 --lr 1e-3 --seed "${#name}" --threads 1 --name "$name" --out "$data/nets" \
    --validate-every 0 --log-every 20 --checkpoint-every 50 "${resume[@]}"
}
case "$set" in
  hv)
    fine_tune unet "${STEPS_UNET:-600}" unet-300kv val300 hv300_net1
    fine_tune unetpp "${STEPS_UNETPP:-300}" unetpp-300kv val300 hv300_net2
    fine_tune msdnet "${STEPS_MSDNET:-200}" msdnet-300kv val300 hv300_net3 ;;
  lv)
    fine_tune unet "${STEPS_UNET:-400}" unet-lv val80 lv80_net1 lv50_net1
    fine_tune unetpp "${STEPS_UNETPP:-300}" unetpp-lv val80 lv80_net2 lv50_net2
    fine_tune msdnet "${STEPS_MSDNET:-200}" msdnet-lv val80 lv80_net3 lv50_net3 ;;
  *) echo "unknown set $set"; exit 2 ;;
esac
echo "set $set trained"
