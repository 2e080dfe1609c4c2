#!/usr/bin/env bash
# The wheels issue17_gpu.py needs on the device machine (Python 3.12, x86-64; it has torch, numpy, scipy,
# scikit-image, numba, pandas, matplotlib, tifffile, h5py, pyyaml, tqdm, but not these), downloaded here into
# .whl/ (ignored: `echo /.whl/ >> .git/info/exclude`), about 25 MB. Usage: bash recipes/gpu/wheels.sh
set -euo pipefail
mkdir -p .whl
platforms=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64)
for p in abTEM==1.0.11 ase==3.29.0 dask==2026.8.0 distributed==2026.8.0 zarr==3.1.6 numcodecs==0.16.6 \
  donfig==0.8.1.post1 google-crc32c==1.9.0 platformdirs==4.14.9 partd==1.4.2 locket==1.0.0 zict==3.0.0 \
  tblib==3.2.2 tornado==6.6.1 rosettasciio==0.15.0 mrcfile==1.5.4 Pint==0.25.3 flexcache==0.3 flexparser==0.4 \
  python-box==7.4.1 pooch==1.9.0 pyFFTW==0.15.1; do
  "${PYTHON:-python3}" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    "${platforms[@]}" -d .whl "$p"
done
du -sh .whl
