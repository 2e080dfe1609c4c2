"""Simulate dock widget: a shell over :func:`napari_hrtem.api.iter_simulate` (focal series + ground-truth Points)."""

from __future__ import annotations

from pathlib import Path

from magicgui.widgets import (
    CheckBox,
    ComboBox,
    FileEdit,
    FloatSpinBox,
    PushButton,
    SpinBox,
    TextEdit,
)

from napari_hrtem.plugin.simulate import describe_parameters, simulate_layers
from napari_hrtem.plugin.widgets._common import WorkerWidget, add_layer_tuples


def _optional_path(value) -> str | None:
    """A FileEdit value, or None when it is empty (magicgui gives Path('.'))."""
    text = str(value) if value is not None else ""
    return None if text in ("", ".") or Path(text).is_dir() else text


class SimulateWidget(WorkerWidget):
    """Simulate an HRTEM focal series of MoS2 (or another 2H-MX2), bare or on graphene, with its ground truth.

    Defaults are the thesis' (section 3.1 and Table 1 [1]_; mid-range values where the table
    gives a range, which each tooltip shows). "draw microscope parameters" draws them from the
    parameter file instead; the parameters used are shown after each run. The simulation is
    :func:`napari_hrtem.api.iter_simulate`; this widget only collects its parameters and shows
    the result.

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

        self.size = SpinBox(value=256, min=64, max=1536, step=64, label="size (px)")
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
            FloatSpinBox(value=0.0, min=0.0, max=10.0, step=0.1, label="stacking distance (Å, 0 = draw)"),
            f"graphene to bottom S plane; 0 draws it in {smp['stacking_distance']} Å (thesis)",
        )
        self.rotation = tip(
            FloatSpinBox(value=10.0, min=0, max=90, label="flake rotation (°)"),
            "thesis recipe: 0°, 15°, 30° or uniform 0-90°",
        )
        self.rotation_recipe = tip(
            CheckBox(value=False, label="draw rotation (0°, 15°, 30° or 0-90°)"),
            "each a quarter of the cases (thesis section 3.1), with the seed",
        )
        self.vacancies = tip(
            FloatSpinBox(value=0.03, min=0, max=0.5, step=0.01, label="S vacancy fraction"),
            f"up to this fraction of chalcogen atoms removed (thesis {smp['vacancy_fraction']})",
        )
        self.carbon_vacancies = tip(
            FloatSpinBox(value=0.0, min=0, max=0.5, step=0.01, label="C vacancy fraction"),
            f"up to this fraction of C atoms removed (thesis {smp['carbon_vacancy_fraction']})",
        )
        self.holes = tip(
            FloatSpinBox(value=0.02, min=0, max=0.5, step=0.01, label="hole fraction"),
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
        self.temperature = tip(
            FloatSpinBox(value=300.0, min=0, max=2000, step=50, label="temperature (K)"),
            f"Debye model, θ_D = {t1['vibrations']['debye_temperature']:.0f} K; "
            f"Table 1: {t1['vibrations']['temperature']} K",
        )
        self.phonons = tip(
            SpinBox(value=4, min=1, max=50, label="frozen phonon configurations"),
            f"thesis: {t1['simulation']['phonon_configs']} (1 = static lattice)",
        )
        self.vibration_table = tip(
            FileEdit(mode="r", filter="*.json", label="vibration table (optional)"),
            "coordination-number amplitudes from an MD trajectory instead of Debye",
        )
        self.n_images = tip(
            SpinBox(value=int(mic["n_images"]), min=1, max=10, label="images"), "images in the focal series"
        )
        self.draw = tip(
            CheckBox(value=False, label="draw microscope parameters and temperature (Table 1)"),
            "draw all microscope parameters below and the temperature from the parameter file with the seed",
        )
        self.parameter_file = tip(
            FileEdit(mode="r", filter="*.yaml *.yml *.json", label="parameter file (optional)"),
            "YAML/JSON ranges; empty = thesis Table 1",
        )
        self.defocus = tip(
            FloatSpinBox(value=-50.0, min=-1000, max=1000, step=10, label="first defocus (Å, abTEM)"),
            f"abTEM sign: defocus = -C10, + = underfocus; Table 1: {mic['defocus']} Å",
        )
        self.step = tip(
            FloatSpinBox(value=50.0, min=0, max=500, step=5, label="defocus step (Å)"),
            f"Table 1: {mic['defocus_step']} Å",
        )
        self.cs = tip(
            FloatSpinBox(value=0.0, min=-100, max=100, step=1, label="Cs / C30 (µm)"),
            f"Table 1: {mic['Cs'][0] / 1e4:g} to {mic['Cs'][1] / 1e4:g} µm",
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
            f"Table 1: {mic['focal_spread']} Å",
        )
        self.blur = tip(
            FloatSpinBox(value=0.15, min=0, max=2, step=0.01, label="blur (Å)"), f"Table 1: {mic['blur']} Å"
        )
        self.dose = tip(
            FloatSpinBox(value=1e4, min=10, max=1e7, step=1000, label="dose (e/Å²)"),
            f"Table 1: 10^{mic['log10_dose'][0]}-10^{mic['log10_dose'][1]} e/Å², log-uniform",
        )
        self.mtf_c1 = tip(
            FloatSpinBox(value=0.4, min=-1, max=1, step=0.05, label="MTF c1"),
            f"MTF (1-c1)/(1+(q/(2 c2 q_N))^c3)+c1; Table 1: {mic['mtf_c1']}; c2 0.15, c3 1.2",
        )
        self.readout = tip(
            FloatSpinBox(value=0.01, min=0, max=0.2, step=0.001, label="readout noise"),
            f"in units of the vacuum intensity; Table 1: {mic['readout']}",
        )
        self.seed = SpinBox(value=0, min=0, max=2**31 - 1, label="seed")
        self.run = PushButton(text="Simulate")
        self.parameters = TextEdit(value="", label="parameters used")
        self.parameters.native.setReadOnly(True)
        self.last_metadata: dict = {}
        super().__init__(
            napari_viewer,
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
                self.temperature,
                self.phonons,
                self.vibration_table,
                self.n_images,
                self.draw,
                self.parameter_file,
                self.defocus,
                self.step,
                self.cs,
                self.c12,
                self.c21,
                self.focal_spread,
                self.blur,
                self.dose,
                self.mtf_c1,
                self.readout,
                self.seed,
                self.run,
            ],
        )
        self.extend([self.progress, self.status, self.parameters])
        self.run.changed.connect(self.start)

    def start(self):
        """Start the simulation (:func:`napari_hrtem.api.iter_simulate`) in a worker thread."""
        if self.worker is not None:
            return None
        return self._start(
            simulate_layers,
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
            on_yield=self._step,
            on_return=self._done,
            busy="simulating…",
        )

    def _step(self, event):
        """Show a :class:`~napari_hrtem.records.Progress` event of the simulation."""
        self.status.value = f"{event.stage}…"
        self.progress.max, self.progress.value = event.total, event.done

    def _done(self, tuples):
        add_layer_tuples(self.viewer, tuples)
        self.last_metadata = dict(tuples[0][1]["metadata"])
        self.parameters.value = describe_parameters(self.last_metadata)
        self.status.value = "simulated focal series and ground truth (truth layers hidden)"
