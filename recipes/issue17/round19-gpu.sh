#!/usr/bin/env bash
# Issue 17, round 19: the one command of a GPU session (the lent device: 16 cores, one H200). Two
# networks train side by side for BUDGET seconds each, from the round-14 banks exported by
# export-bank.py into .device/bank (carried with the wheels of ase and platformdirs in .device/whl):
# the shipped MSD-net deepened to 64 layers, and the shipped U-Net continued. The networks (or, when
# stopped at the budget, their last checkpoints) and the logs go to $OUT.
# Usage (device, repo root): bash recipes/issue17/round19-gpu.sh [BUDGET]
set -u
budget="${1:-450}"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .device/whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:src OMP_NUM_THREADS=1 PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader; nproc
work=/tmp/r19; mkdir -p "$work"
job() {  # NAME ARGS...
  local name=$1; shift
  python3 recipes/issue17/train-round19-gpu.py .device/bank "$work" "$name" --budget "$budget" --workers 7 "$@" \
    > "$OUT/$name.log" 2>&1
  if [ -f "$work/$name.pt" ]; then cp "$work/$name.pt" "$work/$name.json" "$OUT/"
  elif [ -f "$work/$name.checkpoint/checkpoint.pt" ]; then cp "$work/$name.checkpoint/checkpoint.pt" "$OUT/$name.checkpoint.pt"; fi
}
job msdnet-r19-d64 --init msdnet --set depth=64 --batch-size 16 --lr 1e-3 &
job unet-r19 --init unet --batch-size 16 --lr 5e-4 &
wait
nvidia-smi --query-gpu=memory.used --format=csv,noheader
for f in "$OUT"/*.log; do echo "== $f"; grep -v "^\s*$" "$f" | tail -n 8; done
ls -la "$OUT"
