#!/usr/bin/env bash
# Issue 17, round 3 (CPU plan, 50-80 kV): per network k (1 unet, 2 unetpp, 3 msdnet) four exit-wave stores of
# its own seeds: Table 1 at 50 and 80 kV (train-data-t1.yaml) and contaminated at 50 and 80 kV
# (train-data-t1c.yaml; the U-Net++'s with the MD vibration table, train-data-t1c-md.yaml). About 3 s of CPU
# per 128² exit wave. Resumable, and the counts can grow (N_T, N_C). Usage: generate-round3.sh DATA_DIR [WORKERS]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:?data folder}"; workers="${2:-2}"
hrtem="${HRTEM:-napari-hrtem}"
mkdir -p "$out"
store() {  # name energy_kV structures seed config
  "$hrtem" simulate-dataset --out "$out/$1.zarr" --structures "$3" --config "$here/$5" \
    --energy "$2" --size 128 --image-epochs 1 --seed "$4" --workers "$workers"
}
for k in 1 3 2; do  # network k owns seeds 17k00-17k99 (generate.sh used 17k15, 17k18, 17k30)
  contaminated=train-data-t1c.yaml; [ "$k" = 2 ] && contaminated=train-data-t1c-md.yaml
  store "t50_net$k" 50 "${N_T:-30}" "17${k}40" train-data-t1.yaml
  store "t80_net$k" 80 "${N_T:-30}" "17${k}41" train-data-t1.yaml
  store "c50_net$k" 50 "${N_C:-20}" "17${k}42" "$contaminated"
  store "c80_net$k" 80 "${N_C:-20}" "17${k}43" "$contaminated"
done
echo "round 3 stores complete"
