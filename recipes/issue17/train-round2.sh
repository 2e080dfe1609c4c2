#!/usr/bin/env bash
# Issue 17, stage 2, round 2: continue the 300 kV U-Net++ and MSD-net from their round-1 weights (the shipped
# unetpp-300kv, msdnet-300kv) on their grown stores (generate.sh: 50 exit waves each). Resumable like train.sh.
# Usage: recipes/issue17/train-round2.sh DATA_DIR
set -euo pipefail
data="${1:?data folder}"
hrtem="${HRTEM:-napari-hrtem}"
complete() {  # store: every sample asked for is written
  "${PYTHON:-python}" -c "import sys, zarr; from napari_hrtem.training.datastore import completed_samples as c
r = zarr.open_group(sys.argv[1], mode='r'); sys.exit(len(c(sys.argv[1])) < int(r.attrs['structures']))" "$1"
}
again() {  # init steps name
  while pgrep -f -- "--name $3 " > /dev/null; do sleep 20; done  # a run of it still going
  [ -f "$data/nets/$3.json" ] && { echo "$3 already trained"; return; }
  local resume=(); [ -f "$data/nets/$3.checkpoint/checkpoint.pt" ] && resume=(--resume)
  local store="hv300_net2"; [ "$1" = msdnet-300kv ] && store="hv300_net3"
  until complete "$data/$store.zarr"; do sleep 20; done
  "$hrtem" train --init "$1" --bank "$data/$store.zarr" --validation "$data/val300.zarr" --steps "$2" \
    --batch-size 8 --lr 5e-4 --seed 2 --threads 1 --name "$3" --out "$data/nets" --validate-every 0 \
    --log-every 20 --checkpoint-every 50 "${resume[@]}"
}
again unetpp-300kv "${STEPS_UNETPP:-300}" unetpp-300kv-r2 &
again msdnet-300kv "${STEPS_MSDNET:-300}" msdnet-300kv-r2 &
wait
echo "round 2 trained"
