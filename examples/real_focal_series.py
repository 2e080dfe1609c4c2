"""
A real focal series from microscope files
=========================================

Read a through-focus series from DigitalMicrograph (or any supported) files, with the pixel size
and beam energy the files record, and run the shipped networks and their consensus on it.

Run:  ``.venv/bin/python examples/real_focal_series.py IMG07.dm3 IMG08.dm3 IMG09.dm3``
(one file per image, in order of increasing defocus).
"""

import sys

import napari_hrtem as hrtem

series = hrtem.read_focal_series(sys.argv[1:])
energy = f"{series.energy / 1e3:.0f} kV" if series.energy else "beam energy not recorded"
print(f"{series.images.shape} at {series.sampling:.4f} Å/px, {energy}")
prediction = hrtem.predict_consensus(None, series)
for name, sites in prediction.results.items():
    print(name, sites.counts(), f"{prediction.seconds[name]:.1f} s")
print("consensus", prediction.consensus.counts())
