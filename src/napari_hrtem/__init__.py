"""napari-hrtem: atomic columns in HRTEM focal series of 2D materials, found by several networks.

The public Python API::

    import napari_hrtem as hrtem

    sim = hrtem.simulate(size=128, sampling=0.22, graphene_layers=1, seed=0)
    networks = [hrtem.load_network(name) for name in ("unet", "unetpp", "msdnet")]
    prediction = hrtem.predict_consensus(networks, sim.series)
    print(hrtem.score(prediction.consensus, sim.truth)["overall"])

Subpackages: :mod:`~napari_hrtem.simulation` (samples, exit waves, focal series),
:mod:`~napari_hrtem.io` (microscope files, site tables, input checks),
:mod:`~napari_hrtem.analysis` (support filter, alignment, inference, consensus, metrics),
:mod:`~napari_hrtem.models` (architectures, model cards, the shipped networks),
:mod:`~napari_hrtem.training` (datasets, trainer, fine-tuning) and
:mod:`~napari_hrtem.plugin` (the napari plugin, with the ``napari`` extra). The core never
imports Qt or napari; torch and abTEM are imported only when a job needs them.
"""

__version__ = "0.1.0"

from napari_hrtem import api as _api
from napari_hrtem.api import *  # noqa: F403  (the public API: napari_hrtem.api.__all__)

__all__ = ["__version__", *_api.__all__]
