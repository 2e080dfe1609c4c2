#!/usr/bin/env bash
# Issue 17, stage 2 (CPU plan): one exit-wave store per network and energy, each with its own seed, plus
# small validation stores (thesis Table 1 microscope, for the model cards' validation F1; never the held-out
# series of benchmarks/eval_conditions.py). Resumable: run it again and each store computes only its
# missing samples (a store's size can grow, never shrink). Sized for 2 CPU cores shared with training
# (about 10 s of CPU per 128² exit wave with 4 frozen phonons); a GPU session can raise the counts.
# Usage: recipes/issue17/generate.sh DATA_DIR [WORKERS]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:?data folder}"; workers="${2:-2}"
hrtem="${HRTEM:-napari-hrtem}"
mkdir -p "$out"
store() {  # name energy_kV structures seed [config]
  "$hrtem" simulate-dataset --out "$out/$1.zarr" --structures "$3" --config "$here/${5:-train-data.yaml}" \
    --energy "$2" --size 128 --image-epochs 1 --seed "$4" --workers "$workers"
}
validation() {  # name energy_kV structures seed: Table 1 ranges at that energy, 3 focal series per wave
  "$hrtem" simulate-dataset --out "$out/$1.zarr" --structures "$3" --energy "$2" --size 128 \
    --image-epochs 3 --phonon-configs 4 --seed "$4" --workers "$workers"
}
# network k (1 unet, 2 unetpp, 3 msdnet) owns seeds 17k00-17k99; validation 17900-17999
store hv300_net1 300 60 17130
validation val300 300 10 17930
store hv300_net2 300 "${N_HV2:-50}" 17230
store hv300_net3 300 "${N_HV3:-50}" 17330
validation val80 80 6 17908
for k in 1 2 3; do  # 50-80 kV: a 0.1 Å wave grid (train-data-lv.yaml), a third of the cost
  store "lv80_net$k" 80 "${N_LV80:-15}" "17${k}18" train-data-lv.yaml
  store "lv50_net$k" 50 "${N_LV50:-12}" "17${k}15" train-data-lv.yaml
done
echo "all stores complete"
