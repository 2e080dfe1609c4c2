"""Files of a prediction: the output folder of ``napari-hrtem predict`` and folders of samples to score.

An output folder holds ``<network>.csv`` per network and ``consensus.csv`` (sites ``y, x`` in Å,
class, confidence; see :mod:`napari_hrtem.io.sites`) and ``predict.json``, a sidecar saying what
was run on what (:func:`prediction_sidecar`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from napari_hrtem.records import Prediction

#: Units and origin of the site tables.
ORIGIN = "centre of pixel (0, 0)"
#: The specimen mask beside the site tables.
SPECIMEN_FILE = "specimen_mask.tif"


def write_specimen_mask(specimen: Any, path: str | os.PathLike[str]) -> Path:
    """Write a :class:`~napari_hrtem.analysis.specimen.SpecimenMask` as a uint8 0/1 TIFF, atomically.

    The TIFF resolution holds the sampling (pixels per cm, ResolutionUnit cm, as
    :func:`napari_hrtem.read_focal_series` reads it) and the description the mask's summary
    (JSON: ``fraction``, thresholds, ``sampling`` Å/px, ``origin`` Å of pixel (0, 0) in the sites'
    frame). Returns ``path``.
    """
    import secrets

    import numpy as np
    import tifffile

    path = Path(path)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    per_cm = 1e8 / float(specimen.sampling)
    try:
        tifffile.imwrite(
            tmp,
            np.asarray(specimen.mask, np.uint8),
            resolution=(per_cm, per_cm),
            resolutionunit="CENTIMETER",
            description=json.dumps(specimen.to_dict()),
            metadata=None,
        )
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def prediction_sidecar(prediction: Prediction) -> dict[str, Any]:
    """The ``predict.json`` record of a prediction.

    Keys: ``inputs`` (absolute paths of the input files), ``sampling`` (Å/px), ``shape`` (of the
    series the networks saw: ``(N, H, W)``, after frame choice and drift alignment),
    ``consensus`` (its settings ``k``, ``n``, ``radius`` and how much the networks agree:
    ``unanimous`` and ``majority`` consensus sites, ``disputed`` columns, ``p_column_std_mean``
    the mean column-probability spread of the consensus sites; see
    :mod:`napari_hrtem.analysis.uncertainty`), ``networks`` (name -> ``sha256``,
    ``sampling`` Å/px of the card, ``threshold`` used, ``seconds``), ``units``, ``origin``,
    ``frames`` (0-based input frames used, in order), ``defocus`` (Å, abTEM convention, or
    None), ``defocus_convention``, ``energy_kv`` (beam energy, kV, or None) and
    ``energy_source`` (``"file"``, ``"given"`` or None), ``warnings`` (where the input lies
    outside what a network was trained for, :func:`napari_hrtem.analysis.domain.domain_warnings`;
    empty when none), ``specimen`` (the specimen mask, :mod:`napari_hrtem.analysis.specimen`:
    ``fraction`` of the field on the specimen, ``signal_threshold``, ``lattice_threshold``,
    ``noise_level``, ``origin`` Å, the windows, ``dropped`` sites per network and ``consensus``,
    ``file`` ``specimen_mask.tif``; None when the mask was turned off) and, for an aligned
    series, ``alignment``.
    """
    series = prediction.series
    if series is None:
        raise ValueError("the prediction does not record its focal series")
    cons = prediction.consensus
    sidecar: dict[str, Any] = dict(
        inputs=[str(Path(p).resolve()) for p in series.sources],
        sampling=series.sampling,
        shape=list(series.images.shape),
        consensus=dict(cons.meta),
        networks={
            n.name: dict(
                sha256=n.card.sha256,
                sampling=n.card.sampling,
                threshold=prediction.results[n.name].meta["threshold"],
                seconds=round(prediction.seconds[n.name], 3),
            )
            for n in prediction.networks
        },
        units=dict(y="Å", x="Å"),
        origin=ORIGIN,
    )
    sidecar.update(
        frames=series.metadata.get("frames"),
        defocus=series.defocus,
        defocus_convention=series.metadata.get("defocus_convention"),
        energy_kv=None if series.energy is None else round(series.energy / 1e3, 3),
        energy_source=series.metadata.get("energy_source", None if series.energy is None else "file"),
        warnings=list(prediction.warnings),
    )
    specimen = getattr(prediction, "specimen", None)
    sidecar["specimen"] = None if specimen is None else {**specimen.to_dict(), "file": SPECIMEN_FILE}
    alignment = series.metadata.get("alignment")
    if alignment is not None:
        frames = series.metadata.get("frames") or list(range(series.images.shape[0]))
        sidecar["origin"] = (
            f"{ORIGIN} of frame {frames[alignment['reference']]} of the input (the alignment's reference frame)"
        )
        sidecar["alignment"] = alignment
    return sidecar


def write_prediction_files(prediction: Prediction, out_folder: str | os.PathLike[str]) -> dict[str, Path]:
    """Write ``<network>.csv``, ``consensus.csv``, ``specimen_mask.tif`` (when the prediction has a
    specimen mask, :func:`write_specimen_mask`) and ``predict.json`` into ``out_folder`` (made if
    needed); returns ``{network name or "consensus" or "specimen_mask" or "predict.json": path}``."""
    out = Path(out_folder)
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    for name, sites in prediction.results.items():
        paths[name] = sites.write_csv(out / f"{name}.csv")
    paths["consensus"] = prediction.consensus.write_csv(out / "consensus.csv")
    if getattr(prediction, "specimen", None) is not None:
        paths["specimen_mask"] = write_specimen_mask(prediction.specimen, out / SPECIMEN_FILE)
    paths["predict.json"] = out / "predict.json"
    paths["predict.json"].write_text(json.dumps(prediction_sidecar(prediction), indent=2) + "\n")
    return paths


def evaluation_pairs(
    predicted: str | os.PathLike[str], truth: str | os.PathLike[str], network: str = "consensus"
) -> list[tuple[str, Path, Path]]:
    """``(name, predicted CSV, truth CSV)`` for two files or two folders of samples.

    With folders: each ``NAME.truth.csv`` (or ``NAME.csv``) of ``truth`` is paired with
    ``NAME.csv`` or ``NAME/<network>.csv`` (the layout of ``napari-hrtem predict --out
    PREDICTED/NAME``) of ``predicted``.

    Raises
    ------
    ValueError
        If the two are not both files or both folders, the truth folder holds no CSV, or a sample
        has no prediction (the message names up to five of them).
    """
    predicted, truth = Path(predicted), Path(truth)
    if truth.is_file() and predicted.is_file():
        return [(truth.stem, predicted, truth)]
    if not (truth.is_dir() and predicted.is_dir()):
        raise ValueError(f"{predicted} and {truth}: give two CSV files, or two folders (predictions and ground truth)")
    truths = sorted(truth.glob("*.csv"))
    if not truths:
        raise ValueError(f"{truth}: no ground-truth .csv files in the folder")
    pairs, missing = [], []
    for t in truths:
        name = t.name[: -len(".truth.csv")] if t.name.endswith(".truth.csv") else t.stem
        candidates = [predicted / f"{name}.csv", predicted / name / f"{network}.csv"]
        found = next((c for c in candidates if c.is_file()), None)
        if found is None:
            missing.append(name)
        else:
            pairs.append((name, found, t))
    if missing:
        raise ValueError(
            f"{predicted}: no prediction for {len(missing)} sample(s) of {truth} "
            f"({', '.join(missing[:5])}{'...' if len(missing) > 5 else ''}); expected NAME.csv or "
            f"NAME/{network}.csv for each NAME.truth.csv"
        )
    return pairs
