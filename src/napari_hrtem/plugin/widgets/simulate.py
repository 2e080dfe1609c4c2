"""Simulate dock widget: a shell over :func:`napari_hrtem.api.iter_simulate` (focal series + ground-truth Points).

The form is in collapsible groups (sample, vibrations, microscope, detector and noise) inside a
scroll area; the simulation runs in a compute process of its own
(:func:`~napari_hrtem.plugin.widgets._common.in_process`, pool ``"simulate"``), so that Cancel
can end it within seconds even inside one long frozen-phonon configuration.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FileEdit,
    FloatSpinBox,
    PushButton,
    SpinBox,
    TextEdit,
)

from napari_hrtem.plugin.simulate import describe_parameters, simulate_layers
from napari_hrtem.plugin.widgets._common import Cancelled, WorkerWidget, add_layer_tuples, in_process

#: Seconds Cancel waits for the simulation to stop at its next step (the end of a frozen-phonon
#: configuration) before it ends the simulation's compute process.
CANCEL_GRACE_S = 2.0


def _optional_path(value) -> str | None:
    """A FileEdit value, or None when it is empty (magicgui gives Path('.'))."""
    text = str(value) if value is not None else ""
    return None if text in ("", ".") or Path(text).is_dir() else text


def simulate_in_process(stop: threading.Event, *args, **kwargs):
    """Worker generator: :func:`~napari_hrtem.plugin.simulate.simulate_layers` in the
    ``"simulate"`` compute process; returns its layer tuples, or None when ``stop`` was set
    (it stops at its next step, or its process is ended :data:`CANCEL_GRACE_S` s after)."""
    try:
        return (
            yield from in_process(
                simulate_layers, *args, _pool_name="simulate", _stop=stop, _end_after=CANCEL_GRACE_S, **kwargs
            )
        )
    except Cancelled:
        return None


def collapsible_groups(container: Container, groups: dict, expanded=()) -> dict:
    """Put each group (a magicgui Container, already in ``container``) into a collapsible
    section (superqt ``QCollapsible``) titled by its key, in place; ``expanded``: the titles open
    at first. Returns title -> QCollapsible."""
    from superqt import QCollapsible

    out = {}
    for title, group in groups.items():
        native = group.native
        layout = native.parentWidget().layout()
        index = layout.indexOf(native)
        box = QCollapsible(title, expandedIcon="▼", collapsedIcon="▶")
        box.setDuration(0)  # no animation: the form reflows at once
        layout.insertWidget(index, box)
        box.addWidget(native)
        if title in expanded:
            box.expand(animate=False)
        out[title] = box
    return out


class SimulateWidget(WorkerWidget):
    """Simulate an HRTEM focal series of MoS2 (or another 2H-MX2), bare or on graphene, with its ground truth.

    Defaults are the thesis' (section 3.1 and Table 1 [1]_; mid-range values where the table
    gives a range, which each tooltip shows). "draw from parameter file" draws the microscope
    parameters (all but the beam energy) and the temperature from the parameter file instead;
    the parameters used are shown after each run. The simulation is
    :func:`napari_hrtem.api.iter_simulate`; this widget only collects its parameters and shows
    the result. The progress bar counts the frozen-phonon configurations of the multislice, the
    status line the time spent; Cancel stops the run and changes no layer.

    References
    ----------
    .. [1] J. B. Christensen, "Machine learning for interpreting HR-TEM images of
       two-dimensional materials", Bachelor project, DTU (2024).
    """

    def __init__(self, napari_viewer):
        from napari_hrtem.simulation.parameters import load_parameter_ranges
        from napari_hrtem.simulation.structures import MX2_LATTICE

        t1 = load_parameter_ranges()
        mic, smp = t1["microscope"], t1["sample"]

        def tip(widget, text):
            widget.tooltip = text
            return widget

        # Sample ---------------------------------------------------------------------------------
        self.size = tip(SpinBox(value=256, min=64, max=1536, step=64, label="size (px)"), "image edge, square")
        self.sampling = tip(
            FloatSpinBox(value=0.22, min=0.05, max=1.0, step=0.005, label="sampling (Å/px)"),
            f"Table 1: {mic['sampling'][0]}-{mic['sampling'][1]} Å/px",
        )
        self.material = tip(
            ComboBox(value="MoS2", choices=list(MX2_LATTICE), label="material (2H-MX2)"),
            "ase.build.mx2 formula; classes are metal, X2 and X columns",
        )
        self.graphene = tip(
            SpinBox(value=2, min=0, max=6, label="graphene layers"),
            "AB-stacked graphene support (a = 2.46 Å, c = 6.7 Å), thesis: 0-6",
        )
        self.stacking = tip(
            FloatSpinBox(value=0.0, min=0.0, max=10.0, step=0.1, label="stacking (Å, 0 = draw)"),
            f"distance from the graphene to the bottom S plane; 0 draws it in {smp['stacking_distance']} Å (thesis)",
        )
        self.rotation = tip(
            FloatSpinBox(value=10.0, min=0, max=90, label="flake rotation (°)"),
            "thesis recipe: 0°, 15°, 30° or uniform 0-90°",
        )
        self.rotation_recipe = tip(
            CheckBox(value=False, text="draw rotation (thesis recipe)"),
            "0°, 15°, 30° or uniform 0-90°, each a quarter of the cases (thesis section 3.1), with the seed",
        )
        self.vacancies = tip(
            FloatSpinBox(value=0.03, min=0, max=0.5, step=0.01, label="S vacancies (fraction)"),
            f"up to this fraction of chalcogen atoms removed (thesis {smp['vacancy_fraction']})",
        )
        self.carbon_vacancies = tip(
            FloatSpinBox(value=0.0, min=0, max=0.5, step=0.01, label="C vacancies (fraction)"),
            f"up to this fraction of C atoms removed (thesis {smp['carbon_vacancy_fraction']})",
        )
        self.holes = tip(
            FloatSpinBox(value=0.02, min=0, max=0.5, step=0.01, label="holes (fraction)"),
            f"fraction of columns removed (thesis {smp['hole_fraction']})",
        )
        self.tilt = tip(
            FloatSpinBox(value=0.0, min=0, max=10, step=0.5, label="tilt (°)"),
            "specimen tilt about a random in-plane axis (not in the thesis)",
        )
        self.jitter = tip(
            FloatSpinBox(value=0.0, min=0, max=0.3, step=0.01, label="positional jitter (Å)"),
            "static Gaussian displacement of every atom (not in the thesis)",
        )
        self.seed = tip(
            SpinBox(value=0, min=0, max=2**31 - 1, label="seed"), "of every random draw: same seed, same series"
        )
        # Vibrations -------------------------------------------------------------------------------
        self.temperature = tip(
            FloatSpinBox(value=300.0, min=0, max=2000, step=50, label="temperature (K)"),
            f"Debye model, θ_D = {t1['vibrations']['debye_temperature']:.0f} K; "
            f"Table 1: {t1['vibrations']['temperature']} K",
        )
        self.phonons = tip(
            SpinBox(value=4, min=1, max=50, label="frozen phonons"),
            f"frozen-phonon configurations; thesis: {t1['simulation']['phonon_configs']} (1 = static lattice). "
            "The multislice time grows with their number.",
        )
        self.vibration_table = tip(
            FileEdit(mode="r", filter="*.json", label="vibration table"),
            "optional: coordination-number amplitudes from an MD trajectory instead of Debye",
        )
        # Microscope -------------------------------------------------------------------------------
        self.energy = tip(
            FloatSpinBox(value=float(mic["energy"]) / 1e3, min=1.0, max=3000.0, step=10.0, label="beam energy (kV)"),
            f"acceleration voltage, used for the multislice and the CTF; Table 1: {float(mic['energy']) / 1e3:g} kV. "
            "Kept when the other parameters are drawn.",
        )
        self.n_images = tip(
            SpinBox(value=int(mic["n_images"]), min=1, max=10, label="images"), "images in the focal series"
        )
        self.draw = tip(
            CheckBox(value=False, text="draw from parameter file"),
            "draw the microscope parameters below (not the beam energy) and the temperature from the "
            "parameter file (thesis Table 1) with the seed",
        )
        self.parameter_file = tip(
            FileEdit(mode="r", filter="*.yaml *.yml *.json", label="parameter file"),
            "optional YAML/JSON ranges; empty = thesis Table 1",
        )
        self.defocus = tip(
            FloatSpinBox(value=-50.0, min=-1000, max=1000, step=10, label="first defocus (Å)"),
            f"abTEM sign: defocus = -C10, + = underfocus; Table 1: {mic['defocus']} Å",
        )
        self.step = tip(
            FloatSpinBox(value=50.0, min=0, max=500, step=5, label="defocus step (Å)"),
            f"Table 1: {mic['defocus_step']} Å",
        )
        self.cs = tip(
            FloatSpinBox(value=0.0, min=-100, max=100, step=1, label="Cs / C30 (µm)"),
            f"spherical aberration; Table 1: {mic['Cs'][0] / 1e4:g} to {mic['Cs'][1] / 1e4:g} µm",
        )
        self.c12 = tip(
            FloatSpinBox(value=0.0, min=0, max=500, step=1, label="C12 astigmatism (Å)"),
            f"Table 1: {mic['C12']} Å, random angle",
        )
        self.c21 = tip(
            FloatSpinBox(value=0.0, min=0, max=5000, step=10, label="C21 coma (Å)"),
            f"Table 1: {mic['C21']} Å, random angle",
        )
        self.focal_spread = tip(
            FloatSpinBox(value=7.5, min=0, max=50, step=0.5, label="focal spread (Å)"),
            f"temporal partial coherence; Table 1: {mic['focal_spread']} Å",
        )
        # Detector and noise -----------------------------------------------------------------------
        self.blur = tip(
            FloatSpinBox(value=0.15, min=0, max=2, step=0.01, label="blur (Å)"), f"Gaussian; Table 1: {mic['blur']} Å"
        )
        self.dose = tip(
            FloatSpinBox(value=1e4, min=10, max=1e7, step=1000, label="dose (e/Å²)"),
            f"Table 1: 10^{mic['log10_dose'][0]}-10^{mic['log10_dose'][1]} e/Å², log-uniform",
        )
        self.mtf_c1 = tip(
            FloatSpinBox(value=0.4, min=-1, max=1, step=0.05, label="MTF c1"),
            f"detector MTF (1-c1)/(1+(q/(2 c2 q_N))^c3)+c1; Table 1: {mic['mtf_c1']}; c2 0.15, c3 1.2",
        )
        self.readout = tip(
            FloatSpinBox(value=0.01, min=0, max=0.2, step=0.001, label="readout noise (× vacuum)"),
            f"Gaussian σ in units of the vacuum intensity; Table 1: {mic['readout']}",
        )
        self.run = PushButton(text="Simulate")
        self.cancel = tip(PushButton(text="Cancel", enabled=False), "stop the simulation; no layer is changed")
        self.parameters = TextEdit(value="")
        self.parameters.native.setReadOnly(True)
        self.last_metadata: dict = {}
        self.groups = {
            "Sample": Container(
                widgets=[
                    self.size,
                    self.sampling,
                    self.material,
                    self.graphene,
                    self.stacking,
                    self.rotation,
                    self.rotation_recipe,
                    self.vacancies,
                    self.carbon_vacancies,
                    self.holes,
                    self.tilt,
                    self.jitter,
                    self.seed,
                ]
            ),
            "Vibrations (frozen phonons)": Container(widgets=[self.temperature, self.phonons, self.vibration_table]),
            "Microscope": Container(
                widgets=[
                    self.energy,
                    self.n_images,
                    self.draw,
                    self.parameter_file,
                    self.defocus,
                    self.step,
                    self.cs,
                    self.c12,
                    self.c21,
                    self.focal_spread,
                ]
            ),
            "Detector and noise": Container(widgets=[self.blur, self.dose, self.mtf_c1, self.readout]),
        }
        self.buttons = Container(widgets=[self.run, self.cancel], layout="horizontal", labels=False)
        self.used = Container(widgets=[self.parameters], labels=False)
        super().__init__(napari_viewer, widgets=[*self.groups.values(), self.buttons], labels=False, scrollable=True)
        self.extend([self.progress, self.status, self.used])
        self.sections = collapsible_groups(
            self, {**self.groups, "Parameters used": self.used}, expanded=("Sample", "Microscope")
        )
        self._stop = threading.Event()
        self._started = 0.0
        self._stage = ""
        from qtpy.QtCore import QTimer

        self._clock = QTimer()
        self._clock.setInterval(1000)
        self._clock.timeout.connect(self._tick)
        self.run.changed.connect(self.start)
        self.cancel.changed.connect(self.stop)
        self.draw.changed.connect(self._drawn)
        self.rotation_recipe.changed.connect(lambda value: setattr(self.rotation, "enabled", not value))

    def _drawn(self, value):
        """With "draw from parameter file", the microscope fields it draws are off (not the energy)."""
        for widget in (self.defocus, self.step, self.cs, self.c12, self.c21, self.focal_spread, self.temperature):
            widget.enabled = not value
        for widget in (self.blur, self.dose, self.mtf_c1, self.readout):
            widget.enabled = not value

    def elapsed(self) -> float:
        """Seconds since the running (or last) simulation started."""
        return time.perf_counter() - self._started

    def start(self):
        """Start the simulation (:func:`napari_hrtem.api.iter_simulate`) in its compute process."""
        if self.worker is not None:
            return None
        self._stop = threading.Event()
        self._started = time.perf_counter()
        self._stage = "starting the simulation process"
        worker = self._start(
            simulate_in_process,
            self._stop,
            self.size.value,
            self.sampling.value,
            self.graphene.value,
            None if self.rotation_recipe.value else self.rotation.value,
            self.vacancies.value,
            self.holes.value,
            self.defocus.value,
            self.step.value,
            self.cs.value,
            self.focal_spread.value,
            self.dose.value,
            self.seed.value,
            formula=self.material.value,
            carbon_vacancy_fraction=self.carbon_vacancies.value,
            stacking_distance=self.stacking.value or None,
            tilt=self.tilt.value,
            jitter=self.jitter.value,
            n_images=self.n_images.value,
            c12=self.c12.value,
            c21=self.c21.value,
            blur=self.blur.value,
            readout=self.readout.value,
            mtf_c1=self.mtf_c1.value,
            temperature=None if self.draw.value else self.temperature.value,
            phonon_configs=self.phonons.value,
            draw_microscope=self.draw.value,
            parameter_file=_optional_path(self.parameter_file.value),
            vibration_table=_optional_path(self.vibration_table.value),
            energy_kv=self.energy.value,
            on_yield=self._step,
            on_return=self._done,
            busy="starting the simulation process…",
        )
        self.run.enabled, self.cancel.enabled = False, True
        self._clock.start()
        return worker

    def stop(self):
        """Cancel the running simulation: no layer is added or changed."""
        if self.worker is None or self._stop.is_set():
            return
        self._stop.set()
        self.cancel.enabled = False
        self._stage = "cancelling"
        self._tick()

    def _tick(self):
        if self.worker is not None:
            self.status.value = f"{self._stage}… {self.elapsed():.0f} s"

    def _step(self, event):
        """Show a :class:`~napari_hrtem.records.Progress` event of the simulation, with the time spent."""
        if self._stop.is_set():
            return
        self._stage = event.stage
        self.progress.max, self.progress.value = event.total, event.done
        self._tick()

    def _errored(self, exc):
        self._clock.stop()
        super()._errored(exc)

    def _done(self, tuples):
        self._clock.stop()
        seconds = self.elapsed()
        if tuples is None or self._stop.is_set():
            self.status.value = f"cancelled after {seconds:.0f} s; no layer changed"
            return
        add_layer_tuples(self.viewer, tuples)
        self.last_metadata = dict(tuples[0][1]["metadata"])
        self.parameters.value = describe_parameters(self.last_metadata)
        self.status.value = f"simulated focal series and ground truth in {seconds:.0f} s (truth layers hidden)"

    def _finished(self):
        super()._finished()
        self._clock.stop()
        self.run.enabled, self.cancel.enabled = True, False
