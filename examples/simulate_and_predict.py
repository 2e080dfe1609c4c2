"""Simulate a MoS2-on-graphene focal series, run every shipped network, score them and the consensus.

Run:  .venv/bin/python examples/simulate_and_predict.py
"""

from napari_hrtem.analysis.inference import predict_all
from napari_hrtem.analysis.metrics import atomic_f1, format_scores
from napari_hrtem.models.registry import available_networks
from napari_hrtem.simulation.imaging import MicroscopeParameters, simulate_focal_series
from napari_hrtem.simulation.structures import make_mos2_sample

sampling = 0.22  # Å/px
sample = make_mos2_sample(256 * sampling, graphene_layers=2, rotation=10.0, seed=1)
print("ground truth:", sample.counts())
# defocus in abTEM's convention (defocus = -C10, positive = underfocus): -50, 0, +50 Å
images, params = simulate_focal_series(
    sample, (256, 256), sampling, MicroscopeParameters(defocus=-50.0, dose=2e4), seed=1
)
*_, last = predict_all(available_networks().values(), images, sampling)
for name, sites in [*last["results"].items(), ("consensus", last["consensus"])]:
    print(f"\n{name}: {len(sites)} sites")
    print(format_scores(atomic_f1(sites.yx, sites.classes, sample.sites, sample.classes, radius=0.5)))
