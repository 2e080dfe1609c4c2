#!/usr/bin/env bash
# Issue 17, round 19: the GPU session's commands (the lent device: 16 cores, one H200). From the round-14
# banks exported by export-bank.py into .device/bank (carried with the wheels of ase and platformdirs in
# .device/whl), two networks train side by side for BUDGET seconds each: the shipped MSD-net deepened to
# 64 layers, and the shipped U-Net continued. With a second budget, the shipped U-Net++ is then continued
# alone with all the workers (round 19 ran `round19-gpu.sh 420`, then `round19-gpu.sh 0 270` on the same
# machine). The networks (or, when stopped at the budget, their last checkpoints) and the logs go to $OUT.
# Usage (device, repo root): bash recipes/issue17/round19-gpu.sh [BUDGET [UNETPP_BUDGET]]
set -u
budget="${1:-450}"; unetpp_budget="${2:-0}"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .device/whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:src OMP_NUM_THREADS=1 PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader; nproc
work=/tmp/r19; mkdir -p "$work"
job() {  # NAME BUDGET ARGS...
  local name=$1 seconds=$2; shift 2
  python3 recipes/issue17/train-round19-gpu.py .device/bank "$work" "$name" --budget "$seconds" "$@" \
    > "$OUT/$name.log" 2>&1
  if [ -f "$work/$name.pt" ]; then cp "$work/$name.pt" "$work/$name.json" "$OUT/"
  elif [ -f "$work/$name.checkpoint/checkpoint.pt" ]; then cp "$work/$name.checkpoint/checkpoint.pt" "$OUT/$name.checkpoint.pt"; fi
}
if [ "$budget" != 0 ]; then
  job msdnet-r19-d64 "$budget" --init msdnet --set depth=64 --workers 7 --batch-size 16 --lr 1e-3 &
  job unet-r19 "$budget" --init unet --workers 7 --batch-size 16 --lr 5e-4 &
  wait
fi
if [ "$unetpp_budget" != 0 ]; then
  job unetpp-r19 "$unetpp_budget" --init unetpp --workers 14 --batch-size 16 --lr 5e-4
fi
nvidia-smi --query-gpu=memory.used --format=csv,noheader
for f in "$OUT"/*.log; do echo "== $f"; grep -v "^\s*$" "$f" | tail -n 8; done
ls -la "$OUT"
