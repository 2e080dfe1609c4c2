"""Run the shipped networks on a real through-focus series read from DigitalMicrograph files.

Run:  .venv/bin/python examples/real_focal_series.py IMG07.dm3 IMG08.dm3 IMG09.dm3
(files in order of increasing defocus; the pixel size is read from the files).
"""

import sys

from napari_hrtem.analysis.inference import predict_all
from napari_hrtem.io.focal_series import read_focal_series
from napari_hrtem.models.registry import available_networks

series = read_focal_series(sys.argv[1:])
print(f"{series.images.shape} at {series.sampling:.4f} Å/px, {series.energy or '?'} eV")
for event in predict_all(available_networks().values(), series.images, series.sampling):
    if "results" in event:
        for name, sites in event["results"].items():
            print(name, sites.counts(), f"{event['seconds'][name]:.1f} s")
        print("consensus", event["consensus"].counts())
