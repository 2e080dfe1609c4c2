#!/usr/bin/env bash
# Issue 17, round 11 (300 kV): the 300 kV MSD-net is the weak vote of the 300 kV set (held-out overall F1 0.83
# against the U-Net's 0.977), and it has seen far less 300 kV training than the U-Nets: 350 steps of 8 on 31
# wide-store exit waves (200 + 150, rounds 1-2; round 4's 350 more were not shipped), against the U-Net's 3,000
# on 60 + 260. So: its own Table 1 store at 300 kV (t300_net3, seed 17360, round 4 made the first 35) grown
# to N3 waves, then the shipped msdnet-300kv continued on that store with its wide store, at a learning rate
# of 1e-3 on both CPU cores (a step of 8 takes about 3 s on one core here: 0.8 of it the network's forward
# and backward).
# Resumable (stores and checkpoints). Usage: recipes/issue17/train-round11-msdnet-300kv.sh DATA_DIR [WORKERS]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
data="${1:?data folder}"; workers="${2:-2}"
hrtem="${HRTEM:-napari-hrtem}"
"$hrtem" simulate-dataset --out "$data/hv300_net3.zarr" --structures "${N_HV3:-50}" \
  --config "$here/train-data.yaml" --energy 300 --size 128 --image-epochs 1 --seed 17330 --workers "$workers"
"$hrtem" simulate-dataset --out "$data/val300.zarr" --structures 10 --energy 300 --size 128 \
  --image-epochs 3 --phonon-configs 4 --seed 17930 --workers "$workers"  # as generate.sh
"$hrtem" simulate-dataset --out "$data/t300_net3.zarr" --structures "${N3:-160}" \
  --config "$here/train-data-t1-hv.yaml" --energy 300 --size 128 --image-epochs 1 --seed 17360 --workers "$workers"
mkdir -p "$data/nets"  # for the logs, before train creates it
name=msdnet-300kv-r11
if [ -f "$data/nets/$name.json" ]; then echo "$name already trained"; exit 0; fi
resume=(); [ -f "$data/nets/$name.checkpoint/checkpoint.pt" ] && resume=(--resume)
"$hrtem" train --init "${INIT:-msdnet-300kv}" --bank "$data/hv300_net3.zarr" --bank "$data/t300_net3.zarr" \
  --validation "$data/val300.zarr" --steps "${STEPS:-1800}" --batch-size 8 --lr "${LR:-1e-3}" --seed 11 \
  --threads "${THREADS:-2}" --name "$name" --out "$data/nets" --validate-every 0 --log-every 20 \
  --checkpoint-every 50 "${resume[@]}" > "$data/nets/$name.log" 2>&1
echo "round 11 (300 kV MSD-net) trained"
