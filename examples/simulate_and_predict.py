"""
Simulate, predict and score
===========================

Simulate a MoS2-on-graphene focal series with its true atomic columns, run every shipped network
and their consensus, and score each against the truth (atomic F1, sites matched within 0.5 Å).

Run:  ``.venv/bin/python examples/simulate_and_predict.py`` (about a minute on 2 CPU cores).
"""

import napari_hrtem as hrtem
from napari_hrtem.analysis.metrics import format_scores

# Defocus in abTEM's convention (defocus = -C10, positive = underfocus): -50, 0, +50 Å; dose in e/Å².
microscope = hrtem.MicroscopeParameters(defocus=-50.0, dose=2e4)
sim = hrtem.simulate(size=256, sampling=0.22, graphene_layers=2, rotation=10.0, microscope=microscope, seed=1)
print("ground truth:", sim.truth.counts())

prediction = hrtem.predict_consensus(None, sim.series, progress=lambda p: print(p.stage))  # None: every network
for name, sites in [*prediction.results.items(), ("consensus", prediction.consensus)]:
    print(f"\n{name}: {len(sites)} sites")
    print(format_scores(hrtem.score(sites, sim.truth, radius=0.5)))
