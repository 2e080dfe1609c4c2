"""Simulate dock widget: MoS2 (optionally on graphene) -> focal series + ground-truth Points."""

from __future__ import annotations

from magicgui.widgets import FloatSpinBox, PushButton, SpinBox

from .._simulate import simulate_layers
from ._common import WorkerWidget, add_layer_tuples


class SimulateWidget(WorkerWidget):
    """Simulate an HRTEM focal series of MoS2, bare or on graphene, with its ground truth."""

    def __init__(self, napari_viewer):
        self.size = SpinBox(value=256, min=64, max=2048, step=64, label="size (px)")
        self.sampling = FloatSpinBox(value=0.22, min=0.05, max=1.0, step=0.005, label="sampling (Å/px)")
        self.graphene = SpinBox(value=2, min=0, max=6, label="graphene layers")
        self.rotation = FloatSpinBox(value=10.0, min=0, max=90, label="flake rotation (°)")
        self.vacancies = FloatSpinBox(value=0.03, min=0, max=0.5, step=0.01, label="S vacancy fraction")
        self.holes = FloatSpinBox(value=0.02, min=0, max=0.5, step=0.01, label="hole fraction")
        self.defocus = FloatSpinBox(value=-50.0, min=-1000, max=1000, step=10, label="first defocus (Å, abTEM)")
        self.step = FloatSpinBox(value=50.0, min=0, max=500, step=5, label="defocus step (Å)")
        self.cs = FloatSpinBox(value=0.0, min=-100, max=100, step=1, label="Cs / C30 (µm)")
        self.focal_spread = FloatSpinBox(value=7.5, min=0, max=50, step=0.5, label="focal spread (Å)")
        self.dose = FloatSpinBox(value=1e4, min=10, max=1e7, step=1000, label="dose (e/Å²)")
        self.seed = SpinBox(value=0, min=0, max=2**31 - 1, label="seed")
        self.run = PushButton(text="Simulate")
        super().__init__(napari_viewer, widgets=[
            self.size, self.sampling, self.graphene, self.rotation, self.vacancies, self.holes, self.defocus,
            self.step, self.cs, self.focal_spread, self.dose, self.seed, self.run])
        self.extend([self.progress, self.status])
        self.run.changed.connect(self.start)

    def start(self):
        """Start the simulation in a worker thread."""
        if self.worker is not None:
            return None
        return self._start(
            simulate_layers, self.size.value, self.sampling.value, self.graphene.value, self.rotation.value,
            self.vacancies.value, self.holes.value, self.defocus.value, self.step.value, self.cs.value,
            self.focal_spread.value, self.dose.value, self.seed.value,
            on_yield=lambda text: setattr(self.status, "value", text), on_return=self._done, busy="simulating…")

    def _done(self, tuples):
        add_layer_tuples(self.viewer, tuples)
        self.status.value = "simulated focal series and ground truth (truth layers hidden)"
