"""Site tables: atomic columns with class and confidence, and their CSV files.

CSV columns: ``y,x,class,confidence`` (positions in Å, origin at the centre of pixel (0, 0),
``class`` one of the class names); a consensus adds ``votes`` and ``networks`` (the agreeing
networks joined by ``;``).

Per-site figures (:attr:`Sites.extra`) follow as further numeric columns, in their order. A
consensus of ``napari-hrtem predict`` (and :func:`napari_hrtem.api.predict_consensus`) carries
the ensemble's uncertainty (:mod:`napari_hrtem.analysis.uncertainty`):

* ``p_column_<network>``, one per network: that network's column probability
  ``1 - P(background)`` at the site (read bilinearly from its probability map, whether or not
  it voted for the site);
* ``p_column_mean``, ``p_column_std``: their mean and spread (standard deviation across the
  networks; 0 when they all agree);
* ``p_<class>_mean`` per class (``p_Mo_mean``, ``p_S2_mean``, ``p_S_mean``): each class'
  probability at the site, averaged over the networks;
* ``p_class_std``: the spread across the networks of the probability of the site's own class.

:func:`read_csv` reads every further numeric column into :attr:`Sites.extra` (empty cells:
NaN) and ignores non-numeric ones, so files without these columns (older files, hand-made
tables) read as before.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from napari_hrtem.simulation.structures import CLASSES


@dataclass
class Sites:
    """Atomic-column sites.

    Attributes
    ----------
    yx : numpy.ndarray
        ``(n, 2)`` float64 positions ``(y, x)`` in Å.
    classes : numpy.ndarray
        ``(n,)`` int codes into ``class_names``.
    confidence : numpy.ndarray
        ``(n,)`` float64 in [0, 1].
    votes : numpy.ndarray, optional
        ``(n,)`` int, consensus only: how many networks found the site with this class.
    networks : list of str, optional
        Consensus only: the agreeing networks per site, joined by ``;``.
    class_names : tuple of str
    meta : dict
        Settings and summary figures (a consensus: ``k``, ``n``, ``radius``, and the agreement
        counts ``unanimous``, ``majority``, ``disputed``).
    extra : dict of str to numpy.ndarray
        Further per-site figures, ``(n,)`` float each, written as CSV columns after the others
        in this order (a consensus: the ensemble's uncertainty, see the module docstring).
    """

    yx: np.ndarray
    classes: np.ndarray
    confidence: np.ndarray
    votes: np.ndarray | None = None
    networks: list[str] | None = None
    class_names: tuple[str, ...] = CLASSES
    meta: dict = field(default_factory=dict)
    extra: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self):
        self.yx = np.asarray(self.yx, float).reshape(-1, 2)
        self.classes = np.asarray(self.classes, int).reshape(-1)
        self.confidence = np.asarray(self.confidence, float).reshape(-1)
        if not (len(self.yx) == len(self.classes) == len(self.confidence)):
            raise ValueError("yx, classes and confidence must have the same length")
        self.extra = {str(k): np.asarray(v, float).reshape(-1) for k, v in (self.extra or {}).items()}
        wrong = [k for k, v in self.extra.items() if len(v) != len(self.yx)]
        if wrong:
            raise ValueError(f"per-site column(s) {', '.join(wrong)} must have one value per site ({len(self.yx)})")

    def take(self, index: np.ndarray | list[int] | slice) -> Sites:
        """The sites selected by a boolean mask or integer indices, with their votes, networks and
        per-site figures (``extra``)."""
        import dataclasses

        index = np.arange(len(self))[np.asarray(index)] if len(self) else np.zeros(0, int)
        return dataclasses.replace(
            self,
            yx=self.yx[index],
            classes=self.classes[index],
            confidence=self.confidence[index],
            votes=None if self.votes is None else np.asarray(self.votes)[index],
            networks=None if self.networks is None else [self.networks[i] for i in index],
            meta=dict(self.meta),
            extra={k: v[index] for k, v in self.extra.items()},
        )

    def __len__(self) -> int:
        return len(self.yx)

    def of_class(self, code: int) -> np.ndarray:
        """``(k, 2)`` positions of the sites of one class."""
        return self.yx[self.classes == code]

    def counts(self) -> dict[str, int]:
        """Number of sites per class name."""
        return {n: int(np.sum(self.classes == i)) for i, n in enumerate(self.class_names)}

    def write_csv(self, path: str | os.PathLike[str]) -> Path:
        """Write the table as CSV, atomically.

        The rows go to a temporary file next to ``path`` (``.<name>.<random>.tmp``), which is
        flushed to disk and then renamed over ``path``: a writer killed at any moment leaves either
        the old file or the complete new one under ``path``, never a partial file. Text cells (class
        and network names, column names) that a spreadsheet would run as a formula get a leading
        ``'`` (:func:`napari_hrtem.names.csv_text`); numbers are written as numbers. Returns ``path``.
        """
        import os
        import secrets

        from napari_hrtem.names import csv_text

        path = Path(path)
        header = ["y", "x", "class", "confidence"] + (["votes", "networks"] if self.votes is not None else [])
        header += [csv_text(k) for k in self.extra]
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")  # "x": new file, usual permissions
        try:
            with open(tmp, "x", newline="", encoding="utf-8") as fh:
                writer = csv.writer(fh)
                writer.writerow(header)
                for i in range(len(self)):
                    row = [
                        f"{self.yx[i, 0]:.4f}",
                        f"{self.yx[i, 1]:.4f}",
                        csv_text(self.class_names[self.classes[i]]),  # never a spreadsheet formula
                        f"{self.confidence[i]:.4f}",
                    ]
                    if self.votes is not None:
                        row += [str(int(self.votes[i])), csv_text((self.networks or [""] * len(self))[i])]
                    row += [f"{v[i]:.4f}" if np.isfinite(v[i]) else "" for v in self.extra.values()]
                    writer.writerow(row)
                fh.flush()
                os.fsync(fh.fileno())
            tmp.replace(path)
        except BaseException as exc:
            tmp.unlink(missing_ok=True)
            if isinstance(exc, OSError):
                from napari_hrtem.io.files import write_error

                raise write_error(path, exc) from exc
            raise
        return path


def read_csv(path: str | os.PathLike[str], class_names: tuple[str, ...] = CLASSES) -> Sites:
    """Read a site table written by :meth:`Sites.write_csv` (or any CSV with ``y,x,class``).

    ``confidence`` defaults to 1 when absent or empty. A file with only the header row is an
    empty table. Further columns whose every cell is a number or empty (NaN) go to
    :attr:`Sites.extra` (e.g. a consensus' ``p_column_mean``); other columns are ignored. UTF-8 (with or without a byte-order mark, as spreadsheet programs write it).

    Raises
    ------
    ValueError
        Naming the file (and line) and the problem: unreadable or empty file (no header),
        missing columns, an unknown class, a non-numeric or non-finite position or confidence,
        a confidence outside [0, 1], a non-integer vote count.
    """
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            header = [str(h).strip() for h in (reader.fieldnames or [])]
            if header:  # (a blank first line gives no header: found by fuzzing)
                reader.fieldnames = header
                rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ValueError(f"{path.name}: cannot be read as CSV: {exc}") from exc
    if not header:
        raise ValueError(
            f"{path.name}: no header row (empty file or blank first line); a site table needs a "
            "header row y,x,class[,confidence]"
        )
    if not {"y", "x", "class"} <= set(header):
        raise ValueError(f"{path.name}: needs the columns y, x, class (found {', '.join(map(repr, header))})")
    lookup = {n: i for i, n in enumerate(class_names)}
    yx, cls, conf, votes, nets = [], [], [], [], []
    for line, row in enumerate(rows, start=2):
        if not any((v or "").strip() for v in row.values() if isinstance(v, str)):
            continue  # a blank line
        try:
            y, x = float(row["y"]), float(row["x"])
            c = row.get("confidence")
            confidence = float(c) if c not in (None, "") else 1.0
        except (TypeError, ValueError):
            raise ValueError(
                f"{path.name}, line {line}: y, x and confidence must be numbers, got "
                f"{row.get('y')!r}, {row.get('x')!r}, {row.get('confidence')!r}"
            ) from None
        if not (np.isfinite(y) and np.isfinite(x)):
            raise ValueError(f"{path.name}, line {line}: position ({y}, {x}) is not finite")
        if not 0.0 <= confidence <= 1.0:
            raise ValueError(f"{path.name}, line {line}: confidence {c!r} is not a number in [0, 1]")
        name = row["class"]
        if name not in lookup:
            raise ValueError(f"{path.name}, line {line}: unknown class {name!r}; known: {', '.join(class_names)}")
        yx.append((y, x))
        cls.append(lookup[name])
        conf.append(confidence)
        if row.get("votes") not in (None, ""):
            try:
                votes.append(int(row["votes"]))
            except (TypeError, ValueError):
                raise ValueError(
                    f"{path.name}, line {line}: votes must be a whole number, got {row['votes']!r}"
                ) from None
            nets.append(row.get("networks") or "")
    return Sites(
        np.array(yx, float).reshape(-1, 2),
        np.array(cls, int),
        np.array(conf, float),
        votes=np.array(votes) if votes and len(votes) == len(yx) else None,
        networks=nets if votes and len(votes) == len(yx) else None,
        class_names=class_names,
        extra=_extra_columns(header, rows),
    )


#: The columns :func:`read_csv` reads as such (every other numeric column goes to ``extra``).
KNOWN_COLUMNS = ("y", "x", "class", "confidence", "votes", "networks")


def _extra_columns(header: list[str], rows: list[dict]) -> dict[str, np.ndarray]:
    """The further numeric columns of a CSV's non-blank rows (empty cells NaN)."""
    rows = [r for r in rows if any((v or "").strip() for v in r.values() if isinstance(v, str))]
    out: dict[str, np.ndarray] = {}
    for name in header:
        if name in KNOWN_COLUMNS or not name or name in out:
            continue
        cells = [(r.get(name) or "").strip() if isinstance(r.get(name), str) else "" for r in rows]
        try:
            values = np.array([float(c) if c else np.nan for c in cells], float)
        except ValueError:
            continue  # not a numeric column: ignored as before
        out[name] = values
    return out


def labels_sidecar_path(path: str | os.PathLike[str]) -> Path:
    """The JSON sidecar of a labels CSV: ``labels.csv`` -> ``labels.csv.json``."""
    path = Path(path)
    return path.with_name(path.name + ".json")


def write_labels(path: str | os.PathLike[str], sites: Sites, made_by: Any = None, **info: Any) -> Path:
    """Write corrected labels: a CSV (``y,x,class,confidence``, Å) and its JSON sidecar.

    Parameters
    ----------
    path : str or Path
        The CSV file; the sidecar is ``<path>.json`` (:func:`labels_sidecar_path`).
    sites : Sites
        The labelled sites (positions in Å).
    made_by : sequence of str, optional
        Who or what made each site (``"manual"``, ``"consensus 3/3"``, ...), one per site, in the
        CSV's row order.
    **info
        More sidecar entries, e.g. ``image`` (the focal series file(s)), ``sampling`` (Å/px).

    Both files are written to temporary names and renamed, so an interrupted save never leaves
    a half-written table. Returns the CSV path.
    """
    import datetime
    import json

    path = Path(path)
    made_by = list(made_by) if made_by is not None else ["unknown"] * len(sites)
    if len(made_by) != len(sites):
        raise ValueError(f"made_by has {len(made_by)} entries for {len(sites)} sites")
    sidecar = dict(
        format="napari-hrtem labels 1",
        csv=path.name,
        units="Å",
        axes="y, x (napari row, col)",
        classes=list(sites.class_names),
        counts=sites.counts(),
        saved=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        **info,
        made_by=made_by,
    )
    from napari_hrtem.io.files import fsync_folder, temporary_path, write_error

    # The pair: both files complete under temporary names first, then the CSV renamed, then the
    # sidecar. The sidecar holds the CSV's SHA-256 (csv_sha256): a kill between the two renames
    # leaves the new CSV beside the old sidecar, which read_labels recognises (and says so); a
    # failed rename of the sidecar puts the old CSV back.
    side = labels_sidecar_path(path)
    csv_tmp, side_tmp, backup = temporary_path(path), temporary_path(side), temporary_path(path)
    current = path
    try:
        Sites(sites.yx, sites.classes, sites.confidence, class_names=sites.class_names).write_csv(csv_tmp)
        sidecar["csv_sha256"] = _sha256(csv_tmp)
        current = side
        with open(side_tmp, "x", encoding="utf-8") as fh:
            fh.write(json.dumps(sidecar, indent=1, default=str) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        current = path
        had_old = path.is_file()
        if had_old:
            try:
                os.link(path, backup)  # the old CSV, to put back if the sidecar cannot be renamed
            except OSError:
                had_old = False  # no hard links here: read_labels still detects the mismatch
        os.replace(csv_tmp, path)
        current = side
        try:
            os.replace(side_tmp, side)
        except OSError:
            if had_old:
                os.replace(backup, path)
            raise
        fsync_folder(path.parent)
    except OSError as exc:
        raise write_error(current, exc) from exc
    finally:
        for tmp in (csv_tmp, side_tmp, backup):
            tmp.unlink(missing_ok=True)
    return path


def _sha256(path: Path) -> str:
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_labels(path: str | os.PathLike[str], class_names: tuple[str, ...] = CLASSES) -> tuple[Sites, list[str], dict]:
    """Read labels written by :func:`write_labels` (the sidecar is optional).

    Returns
    -------
    (sites, made_by, sidecar) : (Sites, list of str, dict)
        ``made_by`` is ``"file"`` for every site when the sidecar is missing or does not match.
        A sidecar whose ``csv_sha256`` is not the CSV's (the CSV was replaced without it: an
        interrupted save) is ignored: ``sidecar`` is then ``{"mismatch": message}``.

    Raises
    ------
    ValueError
        For an unreadable CSV (see :func:`read_csv`) or a sidecar that is not JSON (or nested
        deeper than :data:`napari_hrtem.io.limits.MAX_DEPTH`); every bad file gives a ValueError
        naming it.
    """

    sites = read_csv(path, class_names)
    side = labels_sidecar_path(path)
    sidecar: dict = {}
    if side.is_file():
        from napari_hrtem.io.limits import load_json_limited

        try:  # nesting depth limited: a RecursionError is no message for a user
            sidecar = load_json_limited(side.read_text(), side.name)
        except (OSError, ValueError, RecursionError) as exc:
            raise ValueError(f"{side.name}: not a readable JSON sidecar: {' '.join(str(exc).split())}") from None
        if not isinstance(sidecar, dict):
            raise ValueError(f"{side.name}: a labels sidecar must be a JSON object, got {type(sidecar).__name__}")
        if sidecar.get("sampling") is not None:
            from napari_hrtem.io.validation import check_sampling

            sidecar["sampling"] = check_sampling(sidecar["sampling"], side.name)
    expected = sidecar.get("csv_sha256") if isinstance(sidecar, dict) else None
    if isinstance(expected, str) and expected != _sha256(Path(path)):
        # the CSV was replaced without its sidecar (an interrupted save, or an edit by hand)
        sidecar = dict(
            mismatch=f"{side.name} does not belong to this {Path(path).name} (the CSV changed after the sidecar "
            "was written: an interrupted save or an edit); its provenance is ignored"
        )
    made_by = sidecar.get("made_by") if isinstance(sidecar, dict) else None
    if not isinstance(made_by, list) or len(made_by) != len(sites):
        made_by = [f"file {Path(path).name}"] * len(sites)
    return sites, [str(m) for m in made_by], sidecar
