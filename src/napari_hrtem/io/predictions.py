"""Files of a prediction: the output folder of ``napari-hrtem predict`` and folders of samples to score.

An output folder holds ``<network>.csv`` per network and ``consensus.csv`` (sites ``y, x`` in Å,
class, confidence; see :mod:`napari_hrtem.io.sites`) and ``predict.json``, a sidecar saying what
was run on what (:func:`prediction_sidecar`).

A batch (``napari-hrtem predict --batch``, :func:`napari_hrtem.api.predict_batch`) writes one such
folder per focal series and ``summary.csv`` beside them (:func:`write_batch_summary`); which
files and folders are series is decided by :func:`find_series_sources`
(:func:`napari_hrtem.api.find_focal_series`).
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
    except OSError as exc:
        from napari_hrtem.io.files import write_error

        raise write_error(path, exc) from exc
    finally:
        tmp.unlink(missing_ok=True)
    return path


def json_safe(value: Any) -> Any:
    """``value`` with every NaN/Inf float (NumPy scalars and arrays included) replaced by None and
    tuples/arrays as lists: what ``json.dumps(..., allow_nan=False)`` writes as valid JSON."""
    import math

    import numpy as np

    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return json_safe(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def prediction_sidecar(prediction: Prediction) -> dict[str, Any]:
    """The ``predict.json`` record of a prediction.

    Keys: ``inputs`` (absolute paths of the input files), ``sampling`` (Å/px), ``shape`` (of the
    series the networks saw: ``(N, H, W)``, after frame choice and drift alignment),
    ``consensus`` (its settings ``k``, ``n``, ``radius`` and how much the networks agree:
    ``unanimous`` and ``majority`` consensus sites, ``disputed`` columns, ``p_column_std_mean``
    the mean column-probability spread of the consensus sites, see
    :mod:`napari_hrtem.analysis.uncertainty`; ``sublattice_conflicts``, the consensus sites with a
    neighbour of their own sublattice closer than the lattice allows, see
    :mod:`napari_hrtem.analysis.sublattice`), ``networks`` (name -> ``sha256``,
    ``sampling`` Å/px of the card, ``threshold`` used, ``seconds``), ``units``, ``origin``,
    ``frames`` (0-based input frames used, in order), ``defocus`` (Å, abTEM convention, or
    None), ``defocus_convention``, ``energy_kv`` (beam energy, kV, or None) and
    ``energy_source`` (``"file"``, ``"given"`` or None), ``warnings`` (where the input lies
    outside what a network was trained for, :func:`napari_hrtem.analysis.domain.domain_warnings`,
    and where the consensus labels contradict the lattice; empty when none), ``specimen`` (the
    specimen mask, :mod:`napari_hrtem.analysis.specimen`:
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
                precision=prediction.results[n.name].meta.get("precision"),
                test_time_augmentation=bool(prediction.results[n.name].meta.get("test_time_augmentation", False)),
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


#: The sidecar of an output folder; it lists the files of its run (``files``).
SIDECAR_FILE = "predict.json"


def previous_prediction_files(out_folder: str | os.PathLike[str]) -> list[str] | None:
    """The files an earlier ``predict`` wrote into ``out_folder``, from its ``predict.json``.

    Its ``files`` list (or, for an older ``predict.json`` without one, ``<network>.csv`` of its
    networks, ``consensus.csv`` and ``specimen_mask.tif``), plus ``predict.json`` itself; only plain
    file names. None when the folder holds no ``predict.json`` written by napari-hrtem.
    """
    side = Path(out_folder) / SIDECAR_FILE
    if not side.is_file():
        return None
    try:
        data = json.loads(side.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    if not (isinstance(data, dict) and isinstance(data.get("networks"), dict) and isinstance(data.get("inputs"), list)):
        return None
    files = data.get("files")
    if not isinstance(files, list):
        files = [f"{n}.csv" for n in data["networks"]] + ["consensus.csv", SPECIMEN_FILE]
    plain = [f for f in files if isinstance(f, str) and f and Path(f).name == f and not f.startswith(".")]
    return sorted(set(plain) | {SIDECAR_FILE})


def check_prediction_folder(out_folder: str | os.PathLike[str] | None, overwrite: bool = False) -> Path:
    """Check an output folder of ``predict`` before the networks run; returns it as a Path.

    The folder may be new, empty, or hold only the files of an earlier ``predict`` (listed in its
    ``predict.json``, :func:`previous_prediction_files`). A folder holding other files is refused
    unless ``overwrite`` (then the prediction's files are written beside them, and only those are
    replaced). Our own lock and temporary files do not count.

    Raises
    ------
    ValueError
        On an empty name, a file, a folder that cannot be created or written, or (without
        ``overwrite``) a folder holding files that ``predict`` did not write; one line naming the folder.
    """
    from napari_hrtem.io.files import LOCK_NAME, TEMPORARY, check_output_path

    out = check_output_path(out_folder, "output folder")
    if not out.is_dir() or overwrite:
        return out
    ours = set(previous_prediction_files(out) or ())
    foreign = sorted(n for n in os.listdir(out) if n not in ours and n != LOCK_NAME and not TEMPORARY.match(n))
    if foreign:
        more = "..." if len(foreign) > 5 else ""
        raise ValueError(
            f"{out}: holds files that napari-hrtem predict did not write ({', '.join(foreign[:5])}{more}); "
            "choose a new folder, or pass --overwrite (overwrite=True) to write beside them, replacing only "
            "the prediction's own files"
        )
    return out


def write_prediction_files(
    prediction: Prediction, out_folder: str | os.PathLike[str], overwrite: bool = False
) -> dict[str, Path]:
    """Write ``<network>.csv``, ``consensus.csv``, ``specimen_mask.tif`` (when the prediction has a
    specimen mask, :func:`write_specimen_mask`) and ``predict.json`` into ``out_folder`` (made if
    needed); returns ``{network name or "consensus" or "specimen_mask" or "predict.json": path}``.

    The folder is checked first (:func:`check_prediction_folder`; ``overwrite`` as there) and locked
    while it is written (:class:`napari_hrtem.io.files.RunLock`). Every file is written atomically,
    ``predict.json`` last, listing the files of this run (``files``); the files of an earlier run
    into the same folder that this run did not rewrite (e.g. the CSV of a network no longer run)
    are then removed, and a note in ``prediction.notes`` names them. An input file of the
    prediction is never overwritten.
    """
    from napari_hrtem.io.files import RunLock, check_not_input, write_atomic
    from napari_hrtem.names import check_network_name, output_path

    out = check_prediction_folder(out_folder, overwrite=overwrite)
    # names are data, never paths: a network's name is checked (safe, not reserved) before anything is written
    names = {name: output_path(out, check_network_name(name), ".csv").name for name in prediction.results}
    names["consensus"] = "consensus.csv"
    if getattr(prediction, "specimen", None) is not None:
        names["specimen_mask"] = SPECIMEN_FILE
    names["predict.json"] = SIDECAR_FILE
    sources = list(prediction.series.sources) if prediction.series is not None else []
    for file in names.values():
        check_not_input(out / file, sources, "prediction")
    sidecar = prediction_sidecar(prediction)  # before anything is written: it may refuse
    sidecar["files"] = sorted(names.values())
    paths: dict[str, Path] = {}
    with RunLock(out, "predict"):
        previous = previous_prediction_files(out) or []
        for name, sites in prediction.results.items():
            paths[name] = sites.write_csv(out / names[name])
        paths["consensus"] = prediction.consensus.write_csv(out / "consensus.csv")
        if "specimen_mask" in names:
            paths["specimen_mask"] = write_specimen_mask(prediction.specimen, out / SPECIMEN_FILE)
        paths["predict.json"] = write_atomic(
            out / SIDECAR_FILE, json.dumps(json_safe(sidecar), indent=2, allow_nan=False) + "\n"
        )
        stale = [f for f in previous if f not in sidecar["files"] and (out / f).is_file()]
        for f in stale:
            (out / f).unlink(missing_ok=True)
    if stale:
        prediction.notes.append(f"removed {', '.join(stale)} of an earlier run in {out} (not written by this run)")
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


# --- batches of focal series -------------------------------------------------------------------

#: The summary table of a batch, beside its folders (one per series).
SUMMARY_FILE = "summary.csv"
_GLOB_CHARACTERS = frozenset("*?[")


def _frame_count(path: Path) -> int | None:
    """Frames in one image file, read cheaply where the format allows (the .npy header, the TIFF
    pages); None when the file cannot be read (its error is then reported when the series runs)."""
    import math

    import numpy as np

    from napari_hrtem.io.focal_series import read_image_file

    try:
        ext = path.suffix.lower()
        if ext == ".npy":
            shape = np.load(path, mmap_mode="r", allow_pickle=False).shape  # memory-mapped: no data read
        elif ext in (".tif", ".tiff"):
            import tifffile

            with tifffile.TiffFile(path) as tif:
                shape = tif.series[0].shape
                if tif.series[0].axes.endswith("S"):  # samples (RGB): not frames
                    shape = shape[:-1]
        else:
            shape = read_image_file(path).images.shape
    except Exception:  # unreadable here: the series' own read names the problem
        return None
    return int(math.prod(shape[:-2])) if len(shape) >= 2 else None


def _image_files(folder: Path) -> list[Path]:
    """The supported files directly in ``folder``, as :func:`~napari_hrtem.io.focal_series.read_focal_series`
    takes them (sorted by name; an .emi skipped when its .ser is there); hidden files skipped."""
    from napari_hrtem.io.focal_series import SUPPORTED_EXTENSIONS, FocalSeriesError, _expand

    if not any(f.suffix.lower() in SUPPORTED_EXTENSIONS and f.is_file() for f in folder.iterdir()):
        return []
    try:
        return [f for f in _expand([folder]) if not f.name.startswith(".")]
    except FocalSeriesError:
        return []


def _is_output(folder: Path) -> bool:
    """``folder`` was written by ``predict`` (its ``predict.json``) or is a batch's output (its ``summary.csv``)."""
    if previous_prediction_files(folder) is not None:
        return True
    try:
        with open(folder / SUMMARY_FILE, encoding="utf-8") as fh:
            return fh.readline().startswith("series,status,")
    except (OSError, UnicodeDecodeError):
        return False


def _series_folders(folder: Path) -> list[Path]:
    """The subfolders of ``folder`` holding supported files (not hidden, not outputs of a prediction), by name."""
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_dir() and not p.name.startswith(".") and not _is_output(p) and _image_files(p)
    )


def safe_series_name(text: str) -> str:
    """A safe name (:func:`napari_hrtem.names.check_name`) made from a file or folder name: other
    characters become ``_``, leading ``. - +`` and trailing ``.`` are dropped, at most 64
    characters; ``series`` when nothing is left or the name is a reserved one."""
    import re

    from napari_hrtem.names import MAX_NAME, check_name

    name = re.sub(r"[^A-Za-z0-9._+-]+", "_", text).lstrip(".-+").rstrip(".")[:MAX_NAME].rstrip(".")
    if name.lower() in ("summary", SUMMARY_FILE):
        name = f"{name}-series"
    try:
        return check_name(name or "series", "series name")
    except ValueError:
        return "series"


def _unique(names: list[str]) -> list[str]:
    """``names`` made unique ignoring case (``name``, ``name-2``, ``name-3``...): one folder each,
    also on file systems that ignore case."""
    seen: set[str] = set()
    out = []
    for name in names:
        candidate, i = name, 1
        while candidate.lower() in seen:
            i += 1
            suffix = f"-{i}"
            candidate = name[: 64 - len(suffix)] + suffix
        seen.add(candidate.lower())
        out.append(candidate)
    return out


def find_series_sources(inputs: Any) -> list[Any]:
    """The focal series in ``inputs`` for a batch: see :func:`napari_hrtem.api.find_focal_series`."""
    import glob

    from napari_hrtem.io.focal_series import SUPPORTED_EXTENSIONS
    from napari_hrtem.records import SeriesSource

    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    inputs = list(inputs)
    if any(isinstance(p, SeriesSource) for p in inputs):
        raise ValueError("give files, folders and patterns, or the series found by find_focal_series, not both")
    items = [os.fspath(p) for p in inputs]
    if not items:
        raise ValueError("no focal series given: give files, folders or a quoted glob pattern")
    found: list[tuple[str, tuple[Path, ...]]] = []
    for item in items:
        path = Path(item)
        if not path.exists() and _GLOB_CHARACTERS & set(item):
            matches = [Path(m) for m in sorted(glob.glob(item)) if not Path(m).name.startswith(".")]
            matches = [
                m for m in matches if (m.is_dir() and not _is_output(m)) or m.suffix.lower() in SUPPORTED_EXTENSIONS
            ]
            if not matches:
                raise ValueError(f"{item}: the pattern matches no supported file nor folder")
            for match in matches:
                found += _series_of(match)
            continue
        if not path.exists():
            raise ValueError(f"{item}: no such file or folder")
        found += _series_of(path)
    if not found:
        raise ValueError(f"{', '.join(items)}: no focal series found")
    seen: dict[tuple[Path, ...], str] = {}
    for _, paths in found:
        key = tuple(p.resolve() for p in paths)
        if key in seen:
            raise ValueError(f"{paths[0]}: given twice (also as {seen[key]}); give each focal series once")
        seen[key] = str(paths[0])
    names = _unique([safe_series_name(name) for name, _ in found])
    return [SeriesSource(name, paths) for name, (_, paths) in zip(names, found)]


def _series_of(path: Path) -> list[tuple[str, tuple[Path, ...]]]:
    """``(name, paths)`` of the series in one input item (a file, a folder or a glob's match)."""
    from napari_hrtem.io.focal_series import SUPPORTED_EXTENSIONS

    one_per_file = (
        "in a batch each file is one focal series; put the frames of one series (one image per file) into a "
        "folder of their own and give the folder"
    )
    if path.is_file():
        if path.suffix.lower() not in SUPPORTED_EXTENSIONS:
            raise ValueError(
                f"{path}: unsupported extension {path.suffix!r}; supported: {', '.join(SUPPORTED_EXTENSIONS)}"
            )
        if _frame_count(path) == 1:
            raise ValueError(f"{path}: holds one image; {one_per_file}")
        return [(path.stem, (path,))]
    if _is_output(path):
        raise ValueError(f"{path}: is an output folder of napari-hrtem predict, not a focal series")
    files, folders = _image_files(path), _series_folders(path)
    if files and folders:
        raise ValueError(
            f"{path}: holds both image files ({files[0].name}...) and folders of them ({folders[0].name}...): "
            "ambiguous; give the folders of the series, or the files, not both"
        )
    if folders:  # a folder of series: each subfolder is one series (one image per file)
        return [(f.name, tuple(_image_files(f))) for f in folders]
    if not files:
        raise ValueError(f"{path}: holds no supported file ({', '.join(SUPPORTED_EXTENSIONS)}) nor folders of them")
    counts = {f: _frame_count(f) for f in files}
    single = [f.name for f, n in counts.items() if n == 1]
    multi = [f.name for f, n in counts.items() if n is not None and n > 1]
    if single and multi:
        raise ValueError(
            f"{path}: holds single images ({', '.join(single[:3])}{'...' if len(single) > 3 else ''}) and "
            f"multi-frame files ({', '.join(multi[:3])}{'...' if len(multi) > 3 else ''}): ambiguous; a folder "
            "is either the frames of one series (one image per file) or a set of series (one multi-frame file each)"
        )
    if single:  # the frames of one series, in name order
        return [(path.resolve().name or "series", tuple(files))]
    return [(f.stem, (f,)) for f in files]


def summary_columns(class_names: Any) -> list[str]:
    """The columns of ``summary.csv`` for networks labelling ``class_names``."""
    return [
        "series",
        "status",
        "message",
        "sources",
        "folder",
        "frames",
        "sampling_A_per_px",
        "energy_kV",
        *(f"sites_{c}" for c in class_names),
        "sites_total",
        "warnings",
        "seconds",
    ]


def check_summary_file(out: str | os.PathLike[str], overwrite: bool = False) -> Path:
    """``out/summary.csv``, checked before a batch runs: a new file, or one of an earlier batch (its header
    starts ``series,status``), else ValueError unless ``overwrite``."""
    path = Path(out) / SUMMARY_FILE
    if path.is_dir():
        raise ValueError(f"{path}: is a folder; the batch writes its summary table there: choose another --out")
    if path.exists() and not overwrite:
        try:
            with open(path, encoding="utf-8") as fh:
                first = fh.readline()
        except (OSError, UnicodeDecodeError):
            first = ""
        if not first.startswith("series,status,"):
            raise ValueError(
                f"{path}: exists and was not written by a napari-hrtem batch; choose another output folder, or "
                "pass --overwrite (overwrite=True)"
            )
    return path


def write_batch_summary(rows: Any, class_names: Any, path: str | os.PathLike[str]) -> Path:
    """Write the rows of a batch (:class:`~napari_hrtem.records.BatchRow`) as ``summary.csv``, atomically.

    One row per series: ``series``, ``status`` (ok / error / cancelled), ``message``, ``sources``
    (``;``-separated), ``folder``, ``frames``, ``sampling_A_per_px`` (Å/px), ``energy_kV``,
    ``sites_<class>`` (consensus sites per class), ``sites_total``, ``warnings`` (input outside the
    networks' training domain), ``seconds``. Text cells that a spreadsheet would run as a formula
    get a leading ``'`` (:func:`napari_hrtem.names.csv_text`).
    """
    import csv
    import io

    from napari_hrtem.io.files import write_atomic
    from napari_hrtem.names import csv_text

    def cell(value: Any) -> str:
        return "" if value is None else str(value)

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(summary_columns(class_names))
    for r in rows:
        ok = r.status == "ok"
        writer.writerow(
            [
                csv_text(r.series),
                r.status,
                csv_text(" ".join(r.message.split())) if r.message else "",
                csv_text("; ".join(r.sources)),
                "" if r.folder is None else csv_text(r.folder),
                cell(r.frames),
                "" if r.sampling is None else f"{r.sampling:.6g}",
                "" if r.energy_kv is None else f"{r.energy_kv:g}",
                *(cell(r.sites.get(c)) if ok else "" for c in class_names),
                cell(sum(r.sites.values())) if ok else "",
                cell(r.warnings) if ok else "",
                f"{r.seconds:.2f}",
            ]
        )
    return write_atomic(path, buffer.getvalue())
