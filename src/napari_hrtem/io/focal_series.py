"""Reading HRTEM images and focal series (float32 (N, H, W), Å/px, eV, Å) from microscope files.

Qt-free; tifffile and rosettasciio are imported inside the functions that need them.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import math
import os
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

SUPPORTED_EXTENSIONS = (".npy", ".npz", ".tif", ".tiff", ".dm3", ".dm4", ".ser", ".emi", ".emd", ".mrc", ".mrcs")
_FORMAT_NAMES = {
    ".npy": "NumPy .npy",
    ".npz": "NumPy .npz",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".dm3": "DigitalMicrograph",
    ".dm4": "DigitalMicrograph",
    ".ser": "FEI TIA",
    ".emi": "FEI TIA",
    ".emd": "EMD (Velox/Berkeley HDF5)",
    ".mrc": "MRC",
    ".mrcs": "MRC",
}
_MAGIC = {".npy": b"\x93NUMPY", ".npz": b"PK"}  # NumPy's header, and a zip archive's
_TOL = 0.01  # relative tolerance for y/x and file-to-file sampling agreement
_UNITS = {
    "å": 1.0,
    "a": 1.0,
    "angstrom": 1.0,
    "angstroms": 1.0,
    "ångström": 1.0,
    "nm": 10.0,
    "nanometer": 10.0,
    "pm": 0.01,
    "um": 1e4,
    "micron": 1e4,
    "micrometer": 1e4,
    "mm": 1e7,
    "m": 1e10,
    "meter": 1e10,
}
_VOLTAGE_KEYS = {
    "high_tension",
    "high_tension_kv",
    "accelerating_voltage",
    "acceleratingvoltage",
    "accelerationvoltage",
    "voltage",
}
_DEFOCUS_KEY = re.compile(r"^defocus(?:_?\(?(um|µm|μm|nm|a|å)\)?)?$")
#: Seconds a file read in a child process may take before it is stopped (``timeout=`` of the readers;
#: the environment variable ``NAPARI_HRTEM_READ_TIMEOUT`` overrides it, e.g. for very large files).
READ_TIMEOUT = 60.0
#: Formats read in a child process: a damaged HDF5 file can make h5py's C code loop forever
#: (seen: a Velox .emd with 200 zeroed bytes in its global heap), which no thread can interrupt.
ISOLATED_EXTENSIONS = (".emd",)


class FocalSeriesError(ValueError):
    """Bad input for a focal series; the message names the file(s) and the problem."""


def _check_sampling(value: Any, where: str) -> float:
    number = _as_float(value) if np.ndim(value) == 0 else None
    if number is None or number <= 0:
        raise FocalSeriesError(f"{where}: sampling must be a finite number > 0 Å/px, got {value!r}")
    return number


@dataclass
class FocalSeries:
    """A stack of HRTEM images with calibration.

    Attributes
    ----------
    images : np.ndarray
        (N, H, W), axes (frame, y, x), increasing defocus; cast to float32; H, W >= 2.
    sampling, energy : float or None
        Pixel size in Å/px and beam energy in eV; None when unknown.
    defocus : list of float or None
        Defocus per frame in Å; None if absent. As stored in the file (the microscope's sign
        convention) after reading; in abTEM's convention after :func:`assemble_focal_series`
        (``metadata['defocus_convention']`` says which).
    sources : list of str
        File path(s) the images came from.
    metadata : dict
        Extra information: 'reader', 'original_units', 'original_metadata', ...

    Raises
    ------
    FocalSeriesError
        `images` not 3-D, smaller than 2x2 px, not real or holding NaN/Inf; `sampling`
        not finite and > 0; `defocus` not one value per frame.
    """

    images: np.ndarray
    sampling: float | None = None
    energy: float | None = None
    defocus: list[float] | None = None
    sources: list[str] = field(default_factory=list)
    metadata: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.sources = [str(s) for s in self.sources]
        where = ", ".join(Path(s).name for s in self.sources) or "<array>"
        arr = np.asarray(self.images)
        if np.iscomplexobj(arr) or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
            raise FocalSeriesError(f"{where}: images must be real numbers, got dtype {arr.dtype} (FFT/complex?)")
        if arr.ndim != 3 or arr.shape[0] < 1 or min(arr.shape[1:]) < 2:
            raise FocalSeriesError(f"{where}: images must be 3-D (N, H, W) with N >= 1, H, W >= 2, got {arr.shape}")
        with np.errstate(over="ignore", invalid="ignore"):
            self.images = np.ascontiguousarray(arr, dtype=np.float32)
        bad = int(np.count_nonzero(~np.isfinite(self.images)))
        if bad:
            raise FocalSeriesError(f"{where}: images contain {bad} NaN/Inf (or float32-overflowing) pixels")
        if self.sampling is not None:
            self.sampling = _check_sampling(self.sampling, where)
        self.energy = None if self.energy is None else float(self.energy)
        if self.defocus is not None:
            self.defocus = [float(d) for d in self.defocus]
            if len(self.defocus) != arr.shape[0]:
                raise FocalSeriesError(f"{where}: {len(self.defocus)} defocus values for {arr.shape[0]} frames")


def unit_to_angstrom(unit: str) -> float:
    """Return the factor converting a length in `unit` to Å (e.g. 'nm' -> 10.0).

    Parameters
    ----------
    unit : str
        Å/A/angstrom, nm (also NCEM's 'n_m'), pm, µm/μm/um/micron (both micro signs and
        ImageJ's literal '\\u00B5m'), mm or m; brackets and blanks are ignored.

    Returns
    -------
    float
        Å per `unit`.

    Raises
    ------
    FocalSeriesError
        Reciprocal (1/nm, nm^-1: diffraction/FFT), unknown or empty units.
    """
    u = re.sub(r"\\u([0-9a-fA-F]{4})", lambda m: chr(int(m.group(1), 16)), str(unit))  # ImageJ escapes
    u = unicodedata.normalize("NFKC", u).strip().strip("[]()").replace("μ", "u").replace("_", "").replace(" ", "")
    if "/" in u or "-1" in u or u.startswith("1"):
        raise FocalSeriesError(f"unit {unit!r} is reciprocal (diffraction/FFT), not a real-space length")
    if u.lower() not in _UNITS:
        raise FocalSeriesError(f"unknown length unit {unit!r}; expected one of Å, nm, pm, µm, mm, m")
    return _UNITS[u.lower()]


def _norm(key: Any) -> str:
    return re.sub(r"[\s_]+", "_", str(key).strip().lower())


def _flat(tree: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dict -> {'a.b_c.d': leaf} with keys lower-cased and blanks/underscores as '_'."""
    out: dict[str, Any] = {}
    for k, v in tree.items() if hasattr(tree, "items") else ():
        out.update(_flat(v, f"{prefix}{_norm(k)}.") if hasattr(v, "items") else {prefix + _norm(k): v})
    return out


def _as_float(value: Any) -> float | None:
    try:
        value = float(np.asarray(value.decode() if isinstance(value, bytes) else value, dtype=float).ravel()[0])
    except (TypeError, ValueError, IndexError, UnicodeDecodeError):
        return None
    return value if math.isfinite(value) else None


def _xy_sampling(sy: float, sx: float, name: str) -> float:
    if abs(sy - sx) > _TOL * max(abs(sy), abs(sx)):
        raise FocalSeriesError(f"{name}: y and x sampling differ by more than 1 % ({sy:.6g} vs {sx:.6g} Å/px)")
    return float(sx)


def _sniff(path: Path) -> tuple[str, tuple[str, ...]] | None:
    """(format name, its extensions) that a file's first bytes announce (for error messages), or None."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
    except OSError:
        return None
    for magic, name, exts in (
        (b"\x93NUMPY", "NumPy .npy", (".npy",)),
        (b"PK\x03\x04", "zip/NumPy .npz", (".npz",)),
        (b"II*\x00", "TIFF", (".tif", ".tiff")),
        (b"MM\x00*", "TIFF", (".tif", ".tiff")),
        (b"II+\x00", "BigTIFF", (".tif", ".tiff")),
        (b"\x89HDF", "HDF5/EMD", (".emd",)),
        (b"II\x97\x01", "FEI TIA .ser", (".ser",)),
        (b"\x00\x00\x00\x03", "DigitalMicrograph 3", (".dm3",)),
        (b"\x00\x00\x00\x04", "DigitalMicrograph 4", (".dm4",)),
    ):
        if head.startswith(magic):
            return name, exts
    return None


def _check_size(shape, dtype, where: str, copies: float = 1.0) -> None:
    """:func:`napari_hrtem.io.limits.check_array_size` raising :class:`FocalSeriesError`."""
    from napari_hrtem.io.limits import LimitError, check_array_size

    try:
        check_array_size(shape, dtype, where, copies=copies)
    except LimitError as err:
        raise FocalSeriesError(str(err)) from None


def _check_npy_header(fh, where: str, stored: int | None = None) -> None:
    """Check the shape and dtype a NumPy header declares (:func:`~napari_hrtem.io.limits.check_array_size`)
    before the array is allocated; ``stored``: the bytes the file or zip member holds in all."""
    try:
        version = np.lib.format.read_magic(fh)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = read(fh, max_header_size=10000)
    except ValueError as err:
        raise FocalSeriesError(f"{where}: not a valid NumPy array header ({err})") from None
    if dtype.hasobject:
        return  # refused by np.load(allow_pickle=False)
    _check_size(shape, dtype, where)
    if stored is not None and math.prod(shape) * dtype.itemsize > stored - fh.tell():
        raise FocalSeriesError(
            f"{where}: declares {tuple(shape)} {dtype} but holds only {stored:,} bytes (truncated or corrupt file?)"
        )


def _check_npz_members(path: Path) -> None:
    """Every array of an .npz: the zip member's uncompressed size and its NumPy header, before reading."""
    import zipfile

    from napari_hrtem.io.limits import human_bytes, max_bytes

    try:
        with zipfile.ZipFile(path) as zf:
            infos = [i for i in zf.infolist() if i.filename.endswith(".npy")]
            total = sum(i.file_size for i in infos)
            if total > 2 * max_bytes():  # each array is checked below; this bounds the archive
                raise FocalSeriesError(
                    f"{path.name}: its arrays hold {human_bytes(total)} uncompressed, over the limit of "
                    f"{human_bytes(2 * max_bytes())} (set NAPARI_HRTEM_MAX_BYTES to raise it)"
                )
            for info in infos:
                with zf.open(info) as fh:
                    _check_npy_header(fh, f"{path.name}: array {info.filename[:-4]!r}", info.file_size)
    except zipfile.BadZipFile as err:
        raise FocalSeriesError(f"{path.name}: not a readable .npz archive ({err})") from None


def _read_numpy(path: Path) -> dict:
    with open(path, "rb") as fh:  # else np.load tries pickle and talks of "pickled data"
        magic = fh.read(6)
    if magic[: len(_MAGIC[path.suffix.lower()])] != _MAGIC[path.suffix.lower()]:
        raise FocalSeriesError(
            f"{path.name}: not a {_FORMAT_NAMES[path.suffix.lower()]} file (it starts with "
            f"{magic!r}; wrong extension, or a truncated/corrupt file?)"
        )
    if path.suffix.lower() == ".npy":
        with open(path, "rb") as fh:
            _check_npy_header(fh, path.name, path.stat().st_size)
        return {"images": np.load(path, allow_pickle=False), "reader": "numpy"}
    _check_npz_members(path)
    with np.load(path, allow_pickle=False) as z:
        keys = [k for k in z.files if k not in ("sampling", "energy", "defocus")]
        if not keys:
            raise FocalSeriesError(f"{path.name}: the .npz archive holds no image array")
        key = "images" if "images" in keys else keys[0]
        out = {k: _as_float(z[k]) for k in ("sampling", "energy") if k in z.files}
        if "defocus" in z.files:
            out["defocus"] = np.asarray(z["defocus"], dtype=float).ravel().tolist()
        return {**out, "images": z[key], "reader": "numpy", "array_name": key}


def _read_tiff(path: Path) -> dict:
    import tifffile

    with tifffile.TiffFile(path) as tf:
        series, page = tf.series[0], tf.pages[0]
        if "S" in series.axes:
            raise FocalSeriesError(
                f"{path.name}: RGB/multi-sample TIFF (axes {series.axes}), expected grayscale"
                " (a focal series of 3 or 4 images written with tifffile needs "
                "photometric='minisblack')"
            )
        _check_size(series.shape, series.dtype, path.name)  # declared, before decoding
        out: dict[str, Any] = {"images": series.asarray(), "reader": "tifffile"}
        ij_unit = str((tf.imagej_metadata or {}).get("unit", "")).strip()
        if ij_unit and ij_unit.lower() not in ("pixel", "pixels", "px", "inch"):
            unit = ij_unit
        else:  # TIFF ResolutionUnit cm, mm, µm; inch is print DPI (72, 96, ...), not a calibration
            unit = {3: "cm", 4: "mm", 5: "um"}.get(int(page.resolutionunit or 1))
        if "XResolution" in page.tags and unit is not None and min(page.resolution) > 0:
            factor = 1e8 if unit == "cm" else unit_to_angstrom(unit)
            xres, yres = page.resolution
            out["sampling"] = _xy_sampling(factor / yres, factor / xres, path.name)
            out["original_units"] = unit
    return out


def _read_mrc(path: Path) -> dict:
    """MRC/MRCS (mrcfile): voxel size in Å from the header; FEI1/FEI2 extended header (EPU,
    Velox exports) for the high tension (V) and each section's defocus (m) and pixel size (m)."""
    import mrcfile

    with mrcfile.open(path, mode="r", permissive=False, header_only=True) as mrc:  # declared size first
        h = mrc.header
        dtype = mrcfile.utils.data_dtype_from_header(h)
        _check_size((int(h.nz), int(h.ny), int(h.nx)), dtype, path.name)
    with mrcfile.open(path, mode="r", permissive=False) as mrc:
        out: dict[str, Any] = {"images": np.array(mrc.data), "reader": "mrcfile", "mrc_mode": int(mrc.header.mode)}
        vs = mrc.voxel_size
        if float(vs.x) > 0 and float(vs.y) > 0:  # an all-zero cell means "not calibrated"
            out["sampling"], out["original_units"] = _xy_sampling(float(vs.y), float(vs.x), path.name), "Å"
        ext = None
        with contextlib.suppress(Exception):  # no or unknown extended header
            ext = mrc.indexed_extended_header
        names = getattr(getattr(ext, "dtype", None), "names", None) or ()
        if "HT" in names and len(ext):
            n = int(np.prod(out["images"].shape[:-2])) if out["images"].ndim > 2 else 1
            volts = _as_float(ext["HT"][0])
            out["energy"] = volts if volts is not None and 1e3 <= volts <= 5e6 else None
            if "Defocus" in names and len(ext) >= n:
                values = [_as_float(v) for v in ext["Defocus"][:n]]
                if None not in values and any(values):
                    out["defocus"] = [v * 1e10 for v in values]
            if "sampling" not in out and "Pixel size X" in names:
                px, py = _as_float(ext["Pixel size X"][0]), _as_float(ext["Pixel size Y"][0])
                if px and py and px > 0 and py > 0:
                    out["sampling"], out["original_units"] = _xy_sampling(py * 1e10, px * 1e10, path.name), "m"
    return out


def _energy_ev(rec: dict, om: dict[str, Any]) -> float | None:
    """Beam energy in eV from rsciio metadata, its mapping, or a voltage tag (kV or V)."""
    kev = _as_float(_flat(rec.get("metadata")).get("acquisition_instrument.tem.beam_energy"))
    for src, (dst, fn) in (rec.get("mapping") or {}).items():
        if kev is None and str(dst).endswith("beam_energy") and om.get(_norm(src)) is not None:
            try:
                kev = _as_float(fn(om[_norm(src)]) if fn else om[_norm(src)])
            except Exception:
                kev = None
    if kev is None:  # e.g. Berkeley EMD microscope/'high tension'
        volts = [_as_float(v) for k, v in om.items() if k.rsplit(".", 1)[-1] in _VOLTAGE_KEYS]
        volts = [v for v in volts if v and v > 0]
        kev = volts[0] / (1e3 if volts[0] > 1e3 else 1.0) if volts else None
    return kev * 1e3 if kev is not None and 1.0 <= kev <= 5e3 else None


def _defocus(om: dict[str, Any], n: int, path: Path, meta: dict) -> list[float] | None:
    """Defocus per frame in Å; None when absent, of unknown unit or one value for n > 1 frames."""
    velox = _as_float(om.get("optics.defocus"))
    if velox is not None:  # Velox, in m; rsciio keeps frame 0's metadata only: read each frame's
        meta["defocus_raw"] = velox
        try:
            import h5py

            with h5py.File(path, "r") as f:
                group = next(g for g in f["Data/Image"].values() if g["Data"].shape[-1] == n)
                text = [group["Metadata"][:, i].tobytes().decode("utf-8").rstrip("\x00") for i in range(n)]
            return [float(json.loads(t)["Optics"]["Defocus"]) * 1e10 for t in text]
        except Exception:
            return [velox * 1e10] if n == 1 else None
    for key, value in om.items():
        match = _DEFOCUS_KEY.match(key.rsplit(".", 1)[-1])
        if match and _as_float(value) is not None:
            meta["defocus_raw"] = {key: value}
            unit = match.group(1)
            return [_as_float(value) * unit_to_angstrom(unit)] if unit and n == 1 else None
    return None


def _read_rsciio(path: Path) -> dict:
    ext = path.suffix.lower()
    module = "rsciio." + {".dm3": "digitalmicrograph", ".dm4": "digitalmicrograph", ".emd": "emd"}.get(ext, "tia")
    eager_reader = importlib.import_module(module).file_reader

    def file_reader(name: str) -> list:  # lazily (dask): the declared shapes are checked before reading
        try:
            return eager_reader(name, lazy=True)
        except (TypeError, NotImplementedError):
            return eager_reader(name)

    emi, records = path.with_name(re.sub(r"_\d+$", "", path.stem) + ".emi"), []
    if ext == ".ser" and emi.is_file():  # the .emi partner holds the microscope metadata
        with contextlib.suppress(Exception):  # a broken .emi: read the .ser alone
            records = [
                r for r in file_reader(str(emi)) if r["metadata"]["General"].get("original_filename") == path.name
            ]
    records = records or file_reader(str(path))
    if ext == ".emi" and not records:  # rsciio reads the images from the .ser files next to it
        raise FocalSeriesError(
            f"{path.name}: no image read: the .emi holds only metadata and its data file(s) "
            f"({path.stem}_1.ser, ...) are missing or unreadable"
        )
    # the first real image or image stack: last two axes are signal (not navigation) axes
    rec = next(
        (
            r
            for r in records
            if np.ndim(r.get("data")) >= 2
            and not np.iscomplexobj(r["data"])
            and (len(r.get("axes") or []) != np.ndim(r["data"]) or not any(a.get("navigate") for a in r["axes"][-2:]))
        ),
        None,
    )
    if rec is None:
        shapes = [np.shape(r.get("data")) for r in records]
        raise FocalSeriesError(f"{path.name}: holds no real-valued image (signals found with shapes {shapes})")
    _check_size(np.shape(rec["data"]), rec["data"].dtype, path.name)  # declared, before reading the pixels
    rec["data"] = np.asarray(rec["data"])
    axes, om = list(rec.get("axes") or []), rec.get("original_metadata")
    flat = _flat(om)
    out: dict[str, Any] = {
        "images": rec["data"],
        "reader": module,
        "original_shape": tuple(np.shape(rec["data"])),
        "axes": [a.get("name") for a in axes],
        "n_signals_in_file": len(records),
        "original_metadata": om,
        "title": _flat(rec.get("metadata")).get("general.title"),
    }
    if len(axes) >= 2:
        ay, ax = axes[-2], axes[-1]
        units = (str(ay.get("units") or "").strip(), str(ax.get("units") or "").strip())
        out["original_units"], out["original_scale"] = units, (ay.get("scale"), ax.get("scale"))
        if all(u and u.lower() not in ("<undefined>", "px", "pixel", "pixels") for u in units):
            sy = abs(float(ay.get("scale", 1.0))) * unit_to_angstrom(units[0])
            sx = abs(float(ax.get("scale", 1.0))) * unit_to_angstrom(units[1])
            out["sampling"] = _xy_sampling(sy, sx, path.name)
    out["energy"] = _energy_ev(rec, flat)
    out["defocus"] = _defocus(flat, int(np.prod(np.shape(rec["data"])[:-2])), path, out)
    return out


def read_timeout(timeout: float | None = None) -> float:
    """The time limit in s for reading one file in a child process.

    ``timeout`` if given, else the environment variable ``NAPARI_HRTEM_READ_TIMEOUT``, else
    :data:`READ_TIMEOUT` (60 s). ``inf`` (or ``NAPARI_HRTEM_READ_TIMEOUT=inf``) reads in the calling
    process without a limit.

    Raises
    ------
    FocalSeriesError
        A limit that is not a number > 0.
    """
    value = os.environ.get("NAPARI_HRTEM_READ_TIMEOUT", READ_TIMEOUT) if timeout is None else timeout
    try:
        value = float(value)
    except (TypeError, ValueError):
        value = math.nan
    if not value > 0:
        source = "timeout" if timeout is not None else "NAPARI_HRTEM_READ_TIMEOUT"
        raise FocalSeriesError(
            f"{source}: the read time limit must be a number of seconds > 0 (or inf), "
            f"got {timeout if timeout is not None else os.environ.get(source)!r}"
        )
    return value


class _ReaderFailure(Exception):
    """An exception raised by a reader in the child process (its type name and message)."""

    def __init__(self, type_name: str, message: str):
        super().__init__(message)
        self.type_name = type_name


def _plain(obj: Any, depth: int = 0) -> Any:
    """Metadata as builtins and numeric NumPy arrays only (what :class:`_PlainUnpickler` accepts)."""
    if depth > 64:
        return repr(obj)
    if isinstance(obj, dict):
        return {str(k): _plain(v, depth + 1) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_plain(v, depth + 1) for v in obj)
    if isinstance(obj, np.ndarray):
        return obj if obj.dtype.kind in "biufc" else [_plain(v, depth + 1) for v in obj.ravel().tolist()]
    if isinstance(obj, np.generic):
        return obj.item() if obj.dtype.kind in "biufcSUb" else repr(obj)
    if obj is None or isinstance(obj, (bool, int, float, complex, str, bytes)):
        return obj
    return repr(obj)  # e.g. a rosettasciio mapping function: not needed after reading


class _PlainUnpickler:
    """Unpickles only builtins and NumPy arrays/dtypes: what :func:`_plain` produces."""

    _ALLOWED = frozenset(
        {
            ("builtins", "complex"),
            ("numpy", "dtype"),
            ("numpy", "ndarray"),
            ("numpy.core.multiarray", "_reconstruct"),
            ("numpy._core.multiarray", "_reconstruct"),
            ("numpy.core.multiarray", "scalar"),
            ("numpy._core.multiarray", "scalar"),
            ("numpy.core.numeric", "_frombuffer"),
            ("numpy._core.numeric", "_frombuffer"),
        }
    )

    @classmethod
    def loads(cls, data: bytes) -> Any:
        import io as _io
        import pickle

        class Restricted(pickle.Unpickler):
            def find_class(self, module, name):
                if (module, name) not in cls._ALLOWED:
                    raise pickle.UnpicklingError(f"{module}.{name} is not allowed")
                return super().find_class(module, name)

        return Restricted(_io.BytesIO(data)).load()


def _child_main(path: str, out_dir: str) -> None:
    """Entry point of the reading child process: read ``path``, write ``images.npy`` and ``info.pkl``."""
    import pickle

    out = Path(out_dir)
    try:
        info = _read_rsciio(Path(path))
        images = info.pop("images")
        if isinstance(images, np.ndarray) and images.dtype.kind in "biufc":
            np.save(out / "images.npy", images, allow_pickle=False)
        else:
            info["images"] = images
        result = ("ok", _plain(info))
    except FocalSeriesError as err:
        result = ("FocalSeriesError", str(err))
    except ImportError as err:
        result = ("ImportError", str(err))
    except Exception as err:
        result = (type(err).__name__, str(err))
    data = pickle.dumps(_plain(result), protocol=pickle.HIGHEST_PROTOCOL)
    (out / "info.tmp").write_bytes(data)
    os.replace(out / "info.tmp", out / "info.pkl")  # complete or absent


def _read_in_child(path: Path, timeout: float, waiting=None) -> dict:
    """:func:`_read_rsciio` in a fresh Python process stopped after ``timeout`` s.

    ``waiting()`` is called about every 50 ms while the child reads (e.g. to keep a GUI painting).
    The images come back through a ``.npy`` file in a private temporary folder, the metadata as a
    pickle of builtins and numeric arrays only (:class:`_PlainUnpickler` refuses anything else).
    """
    import shutil
    import subprocess
    import sys
    import tempfile
    import time

    out = Path(tempfile.mkdtemp(prefix="napari-hrtem-read-"))
    code = (
        "import sys; sys.path[:0] = [p for p in sys.argv[3:] if p not in sys.path]; "
        "from napari_hrtem.io.focal_series import _child_main; _child_main(sys.argv[1], sys.argv[2])"
    )
    proc = None
    try:
        with open(out / "stderr.txt", "wb") as err:
            proc = subprocess.Popen(
                [sys.executable, "-c", code, str(path.resolve()), str(out), *sys.path],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
                cwd=str(out),
            )
        deadline = time.monotonic() + timeout
        while True:
            try:
                proc.wait(timeout=min(0.05, max(deadline - time.monotonic(), 0.001)))
                break
            except subprocess.TimeoutExpired:
                if time.monotonic() >= deadline:
                    raise FocalSeriesError(
                        f"{path.name}: reading it as {_FORMAT_NAMES[path.suffix.lower()]} took more than "
                        f"{timeout:g} s and was stopped (a damaged file can make the HDF5 library loop forever; "
                        "for a very large file raise the limit: timeout=, --read-timeout or "
                        "NAPARI_HRTEM_READ_TIMEOUT=seconds)"
                    ) from None
                if waiting is not None:
                    waiting()
        if not (out / "info.pkl").is_file():
            tail = (out / "stderr.txt").read_text(errors="replace").strip().splitlines()[-1:]
            raise _ReaderFailure(
                "crash",
                f"the reader process ended with exit code {proc.returncode}" + (f" ({tail[0][:200]})" if tail else ""),
            )
        status, payload = _PlainUnpickler.loads((out / "info.pkl").read_bytes())
        if status == "FocalSeriesError":
            raise FocalSeriesError(payload)
        if status == "ImportError":
            raise ImportError(payload)
        if status != "ok":
            raise _ReaderFailure(status, payload)
        if (out / "images.npy").is_file():
            payload["images"] = np.load(out / "images.npy", allow_pickle=False)
        return payload
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        shutil.rmtree(out, ignore_errors=True)


def read_image_file(
    path: str | os.PathLike, sampling: float | None = None, *, timeout: float | None = None, waiting=None
) -> FocalSeries:
    """Read one file holding one image (H, W) or a stack (N, H, W).

    Parameters
    ----------
    path : str or PathLike
        .npy, .npz (array 'images' or the first one; optional 'sampling' Å/px, 'energy'
        eV, 'defocus' Å), .tif/.tiff (ImageJ unit + resolution, or TIFF resolution in
        cm/mm/µm; inch = print DPI, ignored), .dm3/.dm4, .ser/.emi (FEI TIA; a .ser takes
        metadata from its .emi), .emd (Velox, Berkeley/NCEM; needs h5py), .mrc/.mrcs
        (voxel size in Å; FEI extended header: high tension, defocus per section). Leading axes
        (e.g. Time) are flattened into N.
    sampling : float, optional
        Pixel size in Å/px overriding the file's calibration (use when it has none).
    timeout : float, optional
        Seconds the read of an HDF5-based file (:data:`ISOLATED_EXTENSIONS`: .emd) may take; it
        runs in a child process that is stopped then (a damaged HDF5 file can hang h5py's C code,
        which no thread can interrupt). Default :func:`read_timeout` (60 s or
        ``NAPARI_HRTEM_READ_TIMEOUT``); ``inf`` reads in this process. Costs about 0.5 s per file
        (starting Python, NumPy and h5py).
    waiting : callable, optional
        Called without arguments about every 50 ms while a child process reads (e.g. to let a GUI
        paint).

    Returns
    -------
    FocalSeries
        images float32 (N, H, W); sampling Å/px or None; energy eV or None; defocus per
        frame in Å or None; metadata ('reader', 'original_units', 'file_sampling', ...).

    Raises
    ------
    FocalSeriesError
        Unknown extension, missing or unreadable file ("<name>: could not be read as
        <format>: <reason>"), complex/RGB/1-D data, reciprocal or unknown units, y/x
        sampling differing by > 1 %, NaN/Inf pixels, or `sampling` not > 0; a read that took
        longer than `timeout` or whose process crashed.
    """
    path = Path(path)
    ext = path.suffix.lower()
    if ext not in _FORMAT_NAMES:
        raise FocalSeriesError(
            f"{path.name}: unsupported extension {path.suffix!r}; supported: {', '.join(SUPPORTED_EXTENSIONS)}"
        )
    if not path.is_file():
        raise FocalSeriesError(f"{path.name}: file not found ({path})")
    try:
        reader = {
            ".npy": _read_numpy,
            ".npz": _read_numpy,
            ".tif": _read_tiff,
            ".tiff": _read_tiff,
            ".mrc": _read_mrc,
            ".mrcs": _read_mrc,
        }
        limit = read_timeout(timeout) if ext in ISOLATED_EXTENSIONS else math.inf
        info = _read_in_child(path, limit, waiting) if math.isfinite(limit) else reader.get(ext, _read_rsciio)(path)
    except FocalSeriesError as err:  # name the file in messages from unit_to_angstrom etc.
        raise FocalSeriesError(str(err) if str(err).startswith(path.name) else f"{path.name}: {err}") from None
    except Exception as err:
        hint = " (install it to read this format)" if isinstance(err, ImportError) else ""
        looks = _sniff(path)
        hint = hint or (
            f" (its content looks like a {looks[0]} file: wrong extension?)"
            if looks and ext not in looks[1]
            else " (truncated or corrupt file, or a wrong extension?)"
        )
        raise FocalSeriesError(
            f"{path.name}: could not be read as {_FORMAT_NAMES[ext]}{hint}: "
            f"{getattr(err, 'type_name', type(err).__name__)}: {err}"
        ) from err
    images, file_sampling = np.asarray(info.pop("images")), info.pop("sampling", None)
    if images.ndim < 2:
        raise FocalSeriesError(f"{path.name}: expected an image (H, W) or a stack (N, H, W), got shape {images.shape}")
    if images.size == 0:  # found by fuzzing: a damaged TIFF header can give shape (0, W)
        raise FocalSeriesError(f"{path.name}: holds an empty image (shape {images.shape}; truncated or corrupt file?)")
    return FocalSeries(
        images=images.reshape((-1,) + images.shape[-2:]),
        sampling=file_sampling if sampling is None else sampling,
        energy=info.pop("energy", None),
        defocus=info.pop("defocus", None),
        sources=[str(path)],
        metadata={**info, "file_sampling": file_sampling},
    )


def _expand(paths: Sequence[str | os.PathLike]) -> list[Path]:
    """Replace directories by their supported files sorted by name (.emi skipped if its .ser is there)."""
    files: list[Path] = []
    for p in map(Path, paths):
        if not p.is_dir():
            files.append(p)
            continue
        found = sorted(f for f in p.iterdir() if f.suffix.lower() in SUPPORTED_EXTENSIONS and f.is_file())
        sers = {re.sub(r"_\d+$", "", f.stem) for f in found if f.suffix.lower() == ".ser"}
        files.extend(f for f in found if not (f.suffix.lower() == ".emi" and f.stem in sers))
        if not found:
            raise FocalSeriesError(f"{p.name}: directory holds no supported file ({', '.join(SUPPORTED_EXTENSIONS)})")
    return files


def read_focal_series(
    paths: Sequence[str | os.PathLike] | str | os.PathLike,
    sampling: float | None = None,
    *,
    timeout: float | None = None,
    waiting=None,
) -> FocalSeries:
    """Read a focal series from one stack file, several single-image files or a directory.

    Parameters
    ----------
    paths : sequence of str/PathLike, or one path
        One file: `read_image_file` (may be a stack). Several files: one image each,
        stacked in the given order (increasing defocus). A directory stands for its
        supported files sorted by name (an .emi is skipped when its .ser is there).
    sampling : float, optional
        Pixel size in Å/px overriding the files' calibration.
    timeout, waiting :
        Time limit in s per HDF5-based file, and a function called while waiting for it (see
        :func:`read_image_file`).

    Returns
    -------
    FocalSeries
        images float32 (N, H, W); sampling Å/px (None if no file is calibrated); energy
        eV if all files agree, else None; defocus in Å if every file has one, else None;
        metadata['files'] holds each file's metadata.

    Raises
    ------
    FocalSeriesError
        No files, any `read_image_file` error, a multi-frame file among several, frames
        of different shapes, calibrations disagreeing by > 1 % or missing in some files
        only (pass `sampling=`), or `sampling` not > 0.
    """
    if timeout is not None:
        read_timeout(timeout)  # checked whatever the files' format (used only for HDF5-based ones)
    files = _expand([paths] if isinstance(paths, (str, os.PathLike)) else list(paths))
    if not files:
        raise FocalSeriesError("no files given")
    if len(files) == 1:
        return read_image_file(files[0], sampling, timeout=timeout, waiting=waiting)
    series = [read_image_file(f, sampling, timeout=timeout, waiting=waiting) for f in files]
    for f, s in zip(files, series):
        if s.images.shape[0] != 1:
            raise FocalSeriesError(f"{f.name}: holds {len(s.images)} frames; several files must hold one image each")
        if s.images.shape[1:] != series[0].images.shape[1:]:
            raise FocalSeriesError(
                f"{files[0].name}, {f.name}: frames have different shapes "
                f"{series[0].images.shape[1:]} vs {s.images.shape[1:]}"
            )
    if sampling is None:
        known = [(f.name, s.sampling) for f, s in zip(files, series) if s.sampling is not None]
        missing = [f.name for f, s in zip(files, series) if s.sampling is None]
        if known and missing:
            raise FocalSeriesError(
                f"{', '.join(missing)}: no calibration while {known[0][0]} has "
                f"{known[0][1]:.6g} Å/px; pass sampling= to set it"
            )
        values = [v for _, v in known]
        if values and max(values) > min(values) * (1 + _TOL):
            listing = ", ".join(f"{n} {v:.6g}" for n, v in known)
            raise FocalSeriesError(f"{listing}: sampling (Å/px) differs by more than 1 % between files")
        sampling = float(np.mean(values)) if values else None
    energies = [s.energy for s in series]
    same = None not in energies and max(energies) - min(energies) <= 1e-3 * max(energies)
    defocus = None if any(s.defocus is None for s in series) else [s.defocus[0] for s in series]
    return FocalSeries(
        images=np.concatenate([s.images for s in series]),
        sampling=sampling,
        energy=energies[0] if same else None,
        defocus=defocus,
        sources=[str(f) for f in files],
        metadata={"reader": "read_focal_series", "energies": energies, "files": [s.metadata for s in series]},
    )


#: Sign conventions of defocus values: factor to abTEM's convention (defocus = -C10, positive = underfocus).
DEFOCUS_CONVENTIONS = {"abtem": 1.0, "microscope": -1.0}
ABTEM_CONVENTION = "abTEM: defocus = -C10 in Å, positive = underfocus"


#: Nodes the frame search may visit (a safety net; pruning keeps real series far below it).
_CHOOSE_MAX_NODES = 200_000


def _choose_frames(defocus: np.ndarray, n: int, step: float) -> list[int]:
    """The ``n`` frames whose sorted defocus steps are closest to ``step`` (then closest to the middle).

    The choice of trying every ``n``-frame combination (in the order of ``itertools.combinations`` over
    the frames sorted by defocus; ties keep the first), found without trying them all: a dynamic
    programme gives, for every frame, the least step cost of the frames still to choose after it, and
    a depth-first search in combination order visits only the branches that can still reach the least
    cost (and one branch per distinct defocus value at each level). O(N² n) work for N frames.
    """
    values = np.asarray(defocus, dtype=float)
    order = np.argsort(values, kind="stable")
    v = values[order]
    total = len(v)
    finite = np.isfinite(v)
    if int(finite.sum()) < n:
        raise FocalSeriesError(f"cannot choose {n} frames: only {int(finite.sum())} have a finite defocus")
    middle = np.median(values)
    # rest[r, j]: least step cost of r more frames after frame j (sorted positions); inf where impossible
    rest = np.zeros((n, total))
    rest[:, ~finite] = np.inf
    index = np.arange(total)
    for r in range(1, n):
        for lo in range(0, total, 512):
            rows = index[lo : lo + 512]
            cost = np.abs(v[None, :] - v[rows, None] - step) + rest[r - 1][None, :]
            cost[(index[None, :] <= rows[:, None]) | ~finite[None, :]] = np.inf
            rest[r, rows] = np.where(finite[rows], cost.min(axis=1, initial=np.inf), np.inf)
    target = float(np.min(rest[n - 1]))
    slack = 1e-9 * (1.0 + abs(target) + n * abs(step) + float(np.max(np.abs(v[finite]))))
    best: list[int] | None = None
    best_cost: tuple[float, float] | None = None
    nodes = 0

    def visit(chosen: list[int], partial: float) -> None:
        nonlocal best, best_cost, nodes
        left = n - len(chosen)
        if left == 0:
            d = v[chosen]
            cost = (float(np.abs(np.diff(d) - step).sum()), float(abs(d.mean() - middle)))
            if best_cost is None or cost < best_cost:
                best, best_cost = order[chosen].tolist(), cost
            return
        first = chosen[-1] + 1 if chosen else 0
        for k in range(first, total - left + 1):
            if nodes >= _CHOOSE_MAX_NODES:
                return
            if k > first and v[k] == v[k - 1]:
                continue  # the same values as the branch before, which comes first: it cannot win
            gap = abs(v[k] - v[chosen[-1]] - step) if chosen else 0.0
            if not partial + gap + rest[left - 1][k] <= target + slack:
                continue
            nodes += 1
            visit([*chosen, k], partial + gap)

    visit([], 0.0)
    if best is None:
        raise FocalSeriesError(f"cannot choose {n} frames with finite defocus steps")
    return best


def parse_frames(text: str | Sequence[int] | None) -> list[int] | None:
    """0-based frame indices from text: ``"0,2,4"`` or ``"3-5"`` (ranges inclusive), or a sequence.

    Returns
    -------
    list of int or None
        None for empty text or None (all frames).

    Raises
    ------
    FocalSeriesError
        For text that is not comma-separated numbers or ranges.
    """
    if text is None:
        return None
    if not isinstance(text, str):
        return [int(f) for f in text] or None
    frames: list[int] = []
    for part in text.replace(" ", "").split(","):
        if not part:
            continue
        a, sep, b = part.partition("-")
        try:
            frames += list(range(int(a), int(b) + 1)) if sep else [int(a)]
        except ValueError:
            raise FocalSeriesError(f"frames {text!r}: use 0-based numbers such as 0,2,4 or 3-5") from None
    return frames or None


def assemble_focal_series(
    series: FocalSeries,
    frames: Sequence[int] | None = None,
    *,
    defocus: Sequence[float] | None = None,
    convention: str = "microscope",
    n: int | None = None,
    step: float | None = None,
    reverse: bool = False,
) -> FocalSeries:
    """Choose frames of a (longer) series and order them by increasing defocus in abTEM's convention.

    The networks take a focal series ordered by increasing defocus in abTEM's sign convention
    (``defocus = -C10``, positive = underfocus, the convention of the simulations). Microscope
    software often reports defocus with the opposite sign (e.g. MacTempas' overfocus in
    M. H. L. Larsen et al., "Reconstructing the exit wave of 2D materials in high-resolution transmission electron
    microscopy using machine learning", Fig. 9; TIA/Velox/EPU report underfocus as negative), so
    the values are
    converted with ``convention`` and the conversion is stated in the result's metadata.

    Parameters
    ----------
    series : FocalSeries
        As read by :func:`read_focal_series`.
    frames : sequence of int, optional
        0-based indices of the frames to keep; default all (or ``n`` chosen by ``step``).
    defocus : sequence of float, optional
        Defocus in Å given by the user, one per frame of ``series`` or one per chosen frame;
        default the file's values (``series.defocus``).
    convention : {"microscope", "abtem", "auto"}
        Sign convention of the defocus values: "microscope" (opposite to abTEM: negative =
        underfocus) or "abtem". "auto": "abtem" for values given by the user and for .npy/.npz
        files (written by ``napari-hrtem simulate``), "microscope" for microscope files.
    n, step : int and float, optional
        Without ``frames``: choose the ``n`` frames whose defocus steps are closest to ``step``
        Å (e.g. a network card's ``defocus_step``); needs known defocus.
    reverse : bool
        Without any defocus: the frames were recorded from over- to underfocus; reverse them.

    Returns
    -------
    FocalSeries
        images ``(n, H, W)`` float32 ordered by increasing abTEM defocus; ``defocus`` in Å in
        abTEM's convention (None if unknown); ``metadata['frames']`` the original index of each
        frame, ``metadata['defocus_convention']`` the convention and what was assumed,
        ``metadata['defocus_steps']`` the steps in Å.

    Raises
    ------
    FocalSeriesError
        Frame indices out of range or repeated, a wrong number of defocus values, an unknown
        convention, or ``n`` without known defocus. Frames of equal defocus keep their order.
    """
    where = ", ".join(Path(s).name for s in series.sources) or "<array>"
    total = series.images.shape[0]
    if convention == "auto":
        readers = [m.get("reader") for m in series.metadata.get("files", [series.metadata])]
        convention = "abtem" if defocus is not None or set(readers) <= {"numpy", None} else "microscope"
    if convention not in DEFOCUS_CONVENTIONS:
        raise FocalSeriesError(f"unknown defocus convention {convention!r}; use 'microscope', 'abtem' or 'auto'")
    if frames is not None:
        frames = [int(f) for f in frames]
        bad = [f for f in frames if not 0 <= f < total]
        if bad or len(set(frames)) != len(frames) or not frames:
            raise FocalSeriesError(f"{where}: frames {frames} must be distinct 0-based indices below {total}")
    given = None if defocus is None else np.asarray(defocus, float).ravel()
    if given is not None and not np.all(np.isfinite(given) & (np.abs(given) <= 1e5)):
        raise FocalSeriesError(
            f"{where}: defocus values must be finite numbers between -1e5 and 1e5 Å, got {list(defocus)}"
        )
    if given is not None and len(given) != total and (frames is None or len(given) != len(frames)):
        raise FocalSeriesError(
            f"{where}: {len(given)} defocus values for {total} frames"
            + (f" ({len(frames)} chosen)" if frames is not None else "")
        )
    if given is not None and len(given) == total:
        values, source = given, "given"
    elif given is not None:
        values, source = np.full(total, np.nan), "given"
        values[frames] = given
    elif series.defocus is not None and np.all(np.isfinite(series.defocus)):
        values, source = np.asarray(series.defocus, float), "file"
    else:  # none recorded, or NaN/Inf in the file: not a defocus to sort by (noted in the metadata)
        values, source = None, None
    if values is not None:
        values = values * DEFOCUS_CONVENTIONS[convention]
    if frames is None and n is not None:
        if values is None or step is None:
            raise FocalSeriesError(f"{where}: choosing {n} frames needs defocus values (file or given) and a step")
        if not 1 <= n <= total:
            raise FocalSeriesError(f"{where}: cannot choose {n} frames of {total}")
        frames = _choose_frames(values, n, float(step))
    frames = list(range(total)) if frames is None else frames
    meta = dict(series.metadata, frames=frames)
    if given is None and series.defocus is not None and values is None:
        meta["defocus_ignored"] = [str(d) for d in series.defocus]  # e.g. "nan": JSON-safe
    if values is not None:
        chosen = values[frames]
        ties = len(set(np.round(chosen, 6))) != len(chosen)  # e.g. a time series: keep their order
        order = [frames[i] for i in np.argsort(chosen, kind="stable")]
        new_defocus = (values[order] + 0.0).tolist()  # + 0.0: no -0.0
        meta.update(
            frames=order,
            defocus_steps=np.diff(new_defocus).tolist(),
            defocus_source=source,
            defocus_convention=f"{ABTEM_CONVENTION}; the {source} values were read as {convention} "
            f"convention"
            + (" (sign flipped)" if convention == "microscope" else "")
            + ("; frames of equal defocus kept in the given order" if ties else ""),
        )
    else:
        order = frames[::-1] if reverse else frames
        new_defocus = None
        meta.update(
            frames=order,
            defocus_steps=None,
            defocus_source=None,
            defocus_convention=(
                f"unknown: the file's defocus values [{', '.join(meta['defocus_ignored'])}] are not all finite "
                "numbers and were ignored (give the defocus, --defocus on the command line); "
                if "defocus_ignored" in meta
                else "unknown: no defocus recorded or given; "
            )
            + "frames assumed in order of increasing defocus (abTEM convention: toward underfocus)"
            + (", reversed" if reverse else ""),
        )
    return FocalSeries(
        images=series.images[order],
        sampling=series.sampling,
        energy=series.energy,
        defocus=new_defocus,
        sources=series.sources,
        metadata=meta,
    )
