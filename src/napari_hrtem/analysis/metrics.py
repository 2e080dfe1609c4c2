"""Atomic F1: sites matched one-to-one within a radius in Å (thesis [1]_ section 4).

``F1 = TP / (TP + (FP + FN) / 2)`` (thesis eq. 4.0.1). A predicted site is a true positive when
it is matched to a ground-truth site of the same class within ``radius`` Å; the matching is
one-to-one and minimizes the total distance (``scipy.optimize.linear_sum_assignment``), so one
prediction never counts for two columns.

References
----------
.. [1] J. B. Christensen, "Machine learning for interpreting HR-TEM images of
   two-dimensional materials", Bachelor project, DTU (2024), section 4, eq. 4.0.1.
"""

from __future__ import annotations

import numpy as np

from napari_hrtem.simulation.structures import CLASSES


def match_sites(a: np.ndarray, b: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray]:
    """One-to-one matching of two point sets within ``radius``, minimizing the summed distance.

    Parameters
    ----------
    a, b : numpy.ndarray
        ``(n, 2)`` and ``(m, 2)`` positions ``(y, x)`` in Å.
    radius : float
        Largest distance of a matched pair, Å.

    Returns
    -------
    (ia, ib) : tuple of numpy.ndarray
        Indices of the matched pairs, ``a[ia[k]]`` with ``b[ib[k]]``.
    """
    from scipy.optimize import linear_sum_assignment
    from scipy.spatial import cKDTree

    a = np.asarray(a, float).reshape(-1, 2)
    b = np.asarray(b, float).reshape(-1, 2)
    if len(a) == 0 or len(b) == 0:
        return np.zeros(0, int), np.zeros(0, int)
    dist = cKDTree(a).sparse_distance_matrix(cKDTree(b), radius, output_type="coo_matrix")
    if dist.nnz == 0:
        return np.zeros(0, int), np.zeros(0, int)
    # Solve only on the rows/columns that have a candidate; others cannot match. The candidate
    # graph falls apart into small connected groups (a site and its neighbours within the
    # radius); each is solved on its own (the same optimum as one problem, without an n x m
    # matrix: 10^5 sites of a 4096² image would need tens of GB), single pairs directly.
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    rows, cols = np.unique(dist.row), np.unique(dist.col)
    ri, ci = np.searchsorted(rows, dist.row), np.searchsorted(cols, dist.col)
    n_r = len(rows)
    graph = coo_matrix((np.ones(len(ri)), (ri, n_r + ci)), shape=(n_r + len(cols),) * 2)
    _, label = connected_components(graph, directed=False)
    row_label, col_label = label[:n_r], label[n_r:]
    row_count = np.bincount(row_label, minlength=label.max() + 1)
    col_count = np.bincount(col_label, minlength=label.max() + 1)
    single = (row_count[row_label[ri]] == 1) & (col_count[col_label[ci]] == 1)
    out_a, out_b = [rows[ri[single]]], [cols[ci[single]]]
    big = 1e6
    multi = np.flatnonzero(~single)
    edge_label = row_label[ri[multi]]
    edge_order = multi[np.argsort(edge_label, kind="stable")]
    sorted_label = row_label[ri[edge_order]]
    starts = np.flatnonzero(np.diff(sorted_label)) + 1
    for edges in np.split(edge_order, starts) if len(multi) else []:
        gr, gc = np.unique(ri[edges]), np.unique(ci[edges])
        cost = np.full((len(gr), len(gc)), big)
        cost[np.searchsorted(gr, ri[edges]), np.searchsorted(gc, ci[edges])] = dist.data[edges]
        r, c = linear_sum_assignment(cost)
        ok = cost[r, c] < big
        out_a.append(rows[gr[r[ok]]])
        out_b.append(cols[gc[c[ok]]])
    return np.concatenate(out_a).astype(int), np.concatenate(out_b).astype(int)


def scores_from_counts(tp: int, fp: int, fn: int) -> dict:
    """Precision, recall and F1 (thesis eq. 4.0.1) from true-positive, false-positive and
    false-negative counts.

    A class absent from both sides (nothing to find and nothing found: TP = FP = FN = 0) has no
    score: precision, recall and F1 are NaN (:func:`is_absent`), so that it is printed as
    "absent" and left out of means; it is not a perfect 1. Otherwise precision is 0 when nothing
    was found and recall 0 when there was nothing to find.
    """
    if not tp + fp + fn:
        nan = float("nan")
        return dict(tp=tp, fp=fp, fn=fn, precision=nan, recall=nan, f1=nan)
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = tp / (tp + 0.5 * (fp + fn))
    return dict(tp=tp, fp=fp, fn=fn, precision=precision, recall=recall, f1=f1)


def is_absent(score: dict) -> bool:
    """Whether a score of :func:`scores_from_counts` is of a class absent from both sides."""
    return not (score["tp"] or score["fp"] or score["fn"])


def atomic_f1(
    pred_sites, pred_classes, true_sites, true_classes, radius: float = 0.5, classes: tuple[str, ...] = CLASSES
) -> dict:
    """Atomic precision, recall and F1 per class and overall.

    Parameters
    ----------
    pred_sites, true_sites : numpy.ndarray
        ``(n, 2)``, ``(m, 2)`` positions ``(y, x)`` in Å.
    pred_classes, true_classes : numpy.ndarray
        Integer codes into ``classes`` (or class-name strings).
    radius : float
        Matching radius in Å (default 0.5 Å; the thesis used 3 px ≈ 0.6 Å).
    classes : tuple of str
        Class names.

    Returns
    -------
    dict
        ``{class name: {tp, fp, fn, precision, recall, f1, rms}, "overall": {...}}``: overall sums
        TP, FP and FN over the classes (a site found with the wrong class counts as one FP and
        one FN); ``rms`` is the RMS distance of the matched pairs in Å (NaN when none).

    Raises
    ------
    ValueError
        (:class:`~napari_hrtem.arguments.ArgumentError`) If ``radius`` is not a finite number
        > 0 and at most :data:`~napari_hrtem.arguments.MAX_RADIUS` Å.
    """
    from napari_hrtem.arguments import check_radius

    radius = check_radius(radius)
    pc = _codes(pred_classes, classes)
    tc = _codes(true_classes, classes)
    ps, ts = np.asarray(pred_sites, float).reshape(-1, 2), np.asarray(true_sites, float).reshape(-1, 2)
    out, sq, totals = {}, [], np.zeros(3, int)
    for code, name in enumerate(classes):
        a, b = ps[pc == code], ts[tc == code]
        ia, ib = match_sites(a, b, radius)
        d2 = np.sum((a[ia] - b[ib]) ** 2, axis=1)
        sq.append(d2)
        counts = np.array([len(ia), len(a) - len(ia), len(b) - len(ib)])
        totals += counts
        out[name] = scores_from_counts(*map(int, counts)) | dict(
            rms=float(np.sqrt(d2.mean())) if len(d2) else float("nan")
        )
    d2 = np.concatenate(sq)
    out["overall"] = scores_from_counts(*map(int, totals)) | dict(
        rms=float(np.sqrt(d2.mean())) if len(d2) else float("nan")
    )
    return out


def split_matches(predicted, truth, radius: float = 0.5) -> dict[str, np.ndarray]:
    """The sites behind :func:`atomic_f1`'s counts: matched, missed and extra.

    Parameters
    ----------
    predicted, truth : napari_hrtem.io.sites.Sites
        Positions in Å with the same class names.
    radius : float
        Matching radius, Å.

    Returns
    -------
    dict
        ``matched`` (predicted positions of the true positives), ``missed`` (true positions of
        the false negatives) and ``extra`` (predicted positions of the false positives), each
        ``(n, 2)`` float ``(y, x)`` in Å. A site found with the wrong class is both missed and
        extra, as in the scores.
    """
    from napari_hrtem.arguments import check_radius

    radius = check_radius(radius)
    matched, missed, extra = [np.zeros((0, 2))], [np.zeros((0, 2))], [np.zeros((0, 2))]
    for code in range(len(truth.class_names)):
        a, b = predicted.of_class(code), truth.of_class(code)
        ia, ib = match_sites(a, b, radius)
        matched.append(a[ia])
        extra.append(np.delete(a, ia, axis=0))
        missed.append(np.delete(b, ib, axis=0))
    return dict(matched=np.concatenate(matched), missed=np.concatenate(missed), extra=np.concatenate(extra))


def combine_scores(scores: list[dict]) -> dict:
    """Pool :func:`atomic_f1` results of several images: TP, FP and FN summed per class, the
    scores recomputed from the sums, and the RMS error over all matched pairs (Å)."""
    out = {}
    for name in scores[0] if scores else {}:
        tp, fp, fn = (sum(s[name][k] for s in scores) for k in ("tp", "fp", "fn"))
        sq = sum(s[name]["rms"] ** 2 * s[name]["tp"] for s in scores if s[name]["tp"])
        out[name] = scores_from_counts(tp, fp, fn) | dict(rms=float(np.sqrt(sq / tp)) if tp else float("nan"))
    return out


def pixel_counts(
    predicted: np.ndarray, truth: np.ndarray, n_classes: int = len(CLASSES) + 1, background: bool = True
) -> dict:
    """Pixel TP, FP, FN and F1 of a class map against the true one (thesis [1]_ section 4,
    "pixel F1-score").

    Each class is a binary channel; a pixel is a TP of a channel when it is 1 in both maps, an FP
    when 1 only in the prediction, an FN when 1 only in the truth; the counts are summed over the
    channels: all ``n_classes`` (with background) or all but the last (without background). With
    the background every wrongly classified pixel is one FP and one FN, so the F1 equals the
    pixel accuracy and is dominated by the background (thesis Table 5: 0.99 against 0.7).

    Parameters
    ----------
    predicted : numpy.ndarray
        ``(H, W)`` integer class map (background = ``n_classes - 1``), or ``(C, H, W)``
        probabilities (their argmax is taken).
    truth : numpy.ndarray
        ``(H, W)`` integer class map.
    n_classes : int
        Classes including the background (last).
    background : bool
        Count the background channel.

    Returns
    -------
    dict
        ``{tp, fp, fn, precision, recall, f1}``.

    Raises
    ------
    ValueError
        If the maps' shapes differ.

    References
    ----------
    .. [1] J. B. Christensen, "Machine learning for interpreting HR-TEM images of
       two-dimensional materials", Bachelor project, DTU (2024), section 4, Table 5.
    """
    predicted, truth = np.asarray(predicted), np.asarray(truth)
    if predicted.ndim == 3:
        predicted = predicted.argmax(axis=0)
    if predicted.shape != truth.shape:
        raise ValueError(f"pixel F1: predicted map {predicted.shape} and true map {truth.shape} differ in shape")
    channels = n_classes if background else n_classes - 1
    tp = fp = fn = 0
    for c in range(channels):
        p, t = predicted == c, truth == c
        tp += int(np.count_nonzero(p & t))
        fp += int(np.count_nonzero(p & ~t))
        fn += int(np.count_nonzero(~p & t))
    return scores_from_counts(tp, fp, fn)


def summarize(
    atomic: list[dict], pixel: list[dict] | None = None, pixel_no_background: list[dict] | None = None
) -> dict:
    """Scores of a set of samples: :func:`combine_scores` of the per-sample :func:`atomic_f1`
    results, with ``f1_p10`` (10th percentile of the per-sample overall atomic F1, samples with
    no site on either side left out), ``samples``
    and, when given per-sample :func:`pixel_counts`, ``pixel_f1`` /
    ``pixel_f1_no_background`` (pooled counts) and their 10th percentiles ``pixel_f1_p10`` /
    ``pixel_f1_no_background_p10``. Scalars sit beside the per-class dicts."""
    out = combine_scores(atomic)
    overall = [s["overall"]["f1"] for s in atomic if not is_absent(s["overall"])]  # empty samples have no F1
    out["f1_p10"] = float(np.percentile(overall, 10)) if overall else float("nan")
    out["samples"] = len(atomic)
    for key, counts in (("pixel_f1", pixel), ("pixel_f1_no_background", pixel_no_background)):
        if counts:
            out[key] = scores_from_counts(*(sum(c[k] for c in counts) for k in ("tp", "fp", "fn")))["f1"]
            out[key + "_p10"] = float(np.percentile([c["f1"] for c in counts], 10))
    return out


def _codes(values, classes) -> np.ndarray:
    values = np.asarray(values)
    if values.dtype.kind in "iu":
        return values.astype(int)
    lookup = {name: i for i, name in enumerate(classes)}
    try:
        return np.array([lookup[str(v)] for v in values], dtype=int)
    except KeyError as exc:
        raise ValueError(f"unknown class {exc.args[0]!r}; known: {', '.join(classes)}") from None


def format_scores(scores: dict) -> str:
    """A fixed-width table of precision, recall, F1 and RMS error per class.

    A class absent from both sides (no site to find, none found) reads ``absent`` instead of
    its scores, which are undefined (NaN).
    """
    lines = [f"{'class':<8} {'TP':>6} {'FP':>6} {'FN':>6} {'precision':>9} {'recall':>7} {'F1':>6} {'RMS/Å':>6}"]
    for name, s in scores.items():
        if not isinstance(s, dict):  # summary scalars (f1_p10, pixel F1, ...): see format_summary
            continue
        if is_absent(s):
            lines.append(f"{name:<8} {s['tp']:>6} {s['fp']:>6} {s['fn']:>6} {'absent':>9} {'-':>7} {'-':>6} {'-':>6}")
            continue
        lines.append(
            f"{name:<8} {s['tp']:>6} {s['fp']:>6} {s['fn']:>6} {s['precision']:>9.3f} "
            f"{s['recall']:>7.3f} {s['f1']:>6.3f} {s['rms']:>6.3f}"
        )
    return "\n".join(lines)


def format_summary(scores: dict) -> str:
    """The scalar lines of :func:`summarize` (10th percentiles, pixel F1) as text."""
    lines = []
    if "samples" in scores:
        lines.append(f"samples: {scores['samples']}")
    if "f1_p10" in scores:
        lines.append(f"atomic F1 (overall), 10th percentile over samples: {scores['f1_p10']:.3f}")
    for key, label in (("pixel_f1", "with background"), ("pixel_f1_no_background", "without background")):
        if key in scores:
            lines.append(f"pixel F1 {label}: {scores[key]:.3f} (10th percentile {scores[key + '_p10']:.3f})")
    return "\n".join(lines)
