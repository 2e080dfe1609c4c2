"""Load dock widget: microscope file(s) -> focal series image layer with its calibration."""

from __future__ import annotations

from magicgui.widgets import (
    CheckBox,
    ComboBox,
    FileEdit,
    FloatSpinBox,
    LineEdit,
    PushButton,
)

from napari_hrtem.plugin.widgets._common import WorkerWidget, add_layer_tuples


def load_layers(
    paths,
    sampling: float | None,
    frames: str = "",
    convention: str = "auto",
    align: bool = False,
    energy_kv: float | None = None,
):
    """Read (:func:`napari_hrtem.api.read_focal_series`) and prepare
    (:func:`napari_hrtem.api.prepare_focal_series`: choose frames, order by increasing abTEM
    defocus, optionally align) a focal series into an image layer tuple. ``energy_kv``: the beam
    energy in kV for a file that records none (or a wrong one); None keeps the file's.

    With ``align``, the layer holds the drift-aligned series cropped to the common area, placed
    with ``translate`` so that it lies over the reference (middle) frame in Å; its metadata keep
    the alignment (shifts in px and Å, origin) for mapping positions back.

    Raises
    ------
    napari_hrtem.io.focal_series.FocalSeriesError
        For unreadable files, bad frames or a missing pixel size (then give the sampling).
    napari_hrtem.analysis.alignment.AlignmentError
        When the frames cannot be aligned.
    """
    from pathlib import Path

    from napari_hrtem.api import prepare_focal_series, read_focal_series
    from napari_hrtem.plugin.layers import image_layer_data

    prepared = prepare_focal_series(
        read_focal_series(paths, sampling=sampling),
        frames=frames,
        defocus_convention=convention,
        align=align,
        energy=None if not energy_kv else float(energy_kv) * 1e3,
    )
    series = prepared.series
    name = Path(paths[0]).stem if len(paths) == 1 else f"{Path(paths[0]).stem}…{Path(paths[-1]).stem}"
    extra = {"frames": series.metadata["frames"], "defocus_convention": series.metadata["defocus_convention"]}
    translate = None
    if prepared.alignment is not None:
        extra["alignment"] = prepared.alignment.to_dict()
        translate = (0.0, *prepared.alignment.origin_angstrom)
        name += " aligned"
    data, kwargs, kind = image_layer_data(
        series.images,
        series.sampling,
        name,
        sources=list(series.sources),
        energy=series.energy,
        defocus=series.defocus,
        source="file",
        **extra,
    )
    if translate is not None:
        kwargs["translate"] = translate
    return [(data, kwargs, kind)]


class LoadWidget(WorkerWidget):
    """Load a focal series: one file holding (N, H, W), or one file per image by increasing defocus."""

    def __init__(self, napari_viewer):
        self.files = FileEdit(
            mode="rm", label="file(s)", filter="*.dm3 *.dm4 *.ser *.emi *.emd *.mrc *.mrcs *.tif *.tiff *.npy *.npz"
        )
        self.sampling = FloatSpinBox(value=0.0, min=0.0, max=1e4, step=0.001, label="sampling (Å/px, 0 = from file)")
        self.energy = FloatSpinBox(
            value=0.0,
            min=0.0,
            max=3000.0,
            step=10.0,
            label="beam energy (kV, 0 = from file)",
            tooltip="for a file that records none (or a wrong one); checked against the networks' training energy",
        )
        self.frames = LineEdit(value="", label="frames (0-based, e.g. 3-5)", tooltip="empty = all frames")
        self.convention = ComboBox(
            choices=["auto", "microscope", "abtem"],
            value="auto",
            label="defocus sign in file",
            tooltip="abtem: defocus = -C10, positive = underfocus (the networks' convention); "
            "microscope: the opposite (TIA, Velox, MacTempas). auto: abtem for .npy/.npz, "
            "microscope otherwise. Frames are ordered by increasing abTEM defocus.",
        )
        self.align = CheckBox(value=False, text="align frames (drift)")
        self.run = PushButton(text="Load")
        super().__init__(
            napari_viewer,
            widgets=[self.files, self.sampling, self.energy, self.frames, self.convention, self.align, self.run],
        )
        self.extend([self.progress, self.status])
        self.run.changed.connect(self.start)

    def start(self):
        """Read the chosen files in a worker thread."""
        paths = [str(p) for p in (self.files.value or []) if str(p) not in ("", ".")]
        if not paths:
            self.status.value = "choose one or more files first"
            return None
        return self._start(
            load_layers,
            paths,
            self.sampling.value or None,
            self.frames.value,
            self.convention.value,
            self.align.value,
            self.energy.value or None,
            on_return=self._done,
            busy="reading and aligning…" if self.align.value else "reading…",
        )

    def _done(self, tuples):
        add_layer_tuples(self.viewer, tuples)
        data, kwargs, _ = tuples[0]
        meta = kwargs["metadata"]
        energy = f", {meta['energy'] / 1e3:g} kV" if meta.get("energy") else ", beam energy unknown"
        text = (
            f"loaded {data.shape} at {meta['sampling']:.4f} Å/px{energy}, frames {meta['frames']}; "
            f"{meta['defocus_convention']}"
        )
        if "alignment" in meta:
            al = meta["alignment"]
            shifts = "; ".join(f"{i}: ({dy:+.2f}, {dx:+.2f})" for i, (dy, dx) in enumerate(al["shifts_angstrom"]))
            text += (
                f". Drift (dy, dx) Å relative to frame {al['reference']}: {shifts}; cropped to "
                f"{al['shape'][0]}x{al['shape'][1]} px starting at pixel {tuple(al['origin_px'])} of the "
                "reference frame"
            )
        self.status.value = text
