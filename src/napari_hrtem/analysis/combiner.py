"""A learned consensus: the networks' class probabilities at a column combined by a trained classifier.

The sum rule (:func:`napari_hrtem.analysis.consensus.consensus`) weighs every network alike. Where one
network is far better than the others (under amorphous carbon, at 300 kV) that lets the weaker ones
outvote it, and the consensus falls below its best member. A :class:`Combiner` instead learns, from
simulated series with known columns, how much each network's probabilities are worth: it is a
multinomial logistic regression (stacked generalization [1]_; a trained combiner in the sense of
Kittler et al. [2]_) from, per network, "found the column" and its probability of each class at its
site, to the column's class or "no column". It applies only to the very networks it was trained with
(their weights' SHA-256), so a set with another network falls back to the sum rule.

Features of a column (the sites of the networks matched one-to-one within the agreement radius, as
for the sum rule), per network in the combiner's order: 1 if the network found the column, then its
``p_<class>`` at its site (:func:`~napari_hrtem.analysis.consensus.class_probabilities`; 0 where it
did not find it), then ``log(p_<class> + 0.001)``: the probabilities make a weighted sum rule, their
logarithms a weighted product rule, and the regression learns which to trust. They are standardized
with the training set's mean and standard deviation.

References
----------
.. [1] D. H. Wolpert, "Stacked generalization", Neural Networks 5 (2), 241-259 (1992).
.. [2] J. Kittler, M. Hatef, R. P. W. Duin, J. Matas, "On combining classifiers", IEEE Transactions on
   Pattern Analysis and Machine Intelligence 20 (3), 226-239 (1998), section 1 (trained combiners).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from napari_hrtem.io.sites import Sites

#: The folder of the combiners shipped with the package (not among the networks' model cards).
COMBINER_DIR = Path(__file__).resolve().parents[1] / "models" / "consensus"

#: The combiners shipped with the package, one per shipped network set.
COMBINER_FILES = ("consensus.json", "consensus-80kv.json", "consensus-300kv.json")

#: Added to the probabilities before their logarithm (a network that did not find the column has 0).
LOG_FLOOR = 1e-3

#: Largest combiner file read, bytes (a combiner is a few kB).
MAX_COMBINER_BYTES = 1 << 20


@dataclass(eq=False)
class Combiner:
    """A trained consensus rule for one set of networks.

    Attributes
    ----------
    networks : tuple of str
        The networks' names, in feature order.
    sha256 : tuple of str
        SHA-256 of each network's weights (its model card's ``sha256``): the combiner applies only
        to these networks.
    class_names : tuple of str
        The site classes; the combiner's outputs are these, then "no column".
    mean, scale : numpy.ndarray
        ``(F,)`` float64, ``F = n_networks * (1 + 2 n_classes)``: the features' standardization.
    weight : numpy.ndarray
        ``(n_classes + 1, F)`` float64 logistic-regression weights (standardized features).
    bias : numpy.ndarray
        ``(n_classes + 1,)`` float64.
    info : dict
        Provenance (training series, seeds, regularization) and validation figures, free-form JSON.
    name : str
        A label for notes and logs (the file's stem).
    """

    networks: tuple[str, ...]
    sha256: tuple[str, ...]
    class_names: tuple[str, ...]
    mean: np.ndarray
    scale: np.ndarray
    weight: np.ndarray
    bias: np.ndarray
    info: dict = field(default_factory=dict)
    name: str = "combiner"

    def __post_init__(self):
        self.networks = tuple(str(n) for n in self.networks)
        self.sha256 = tuple(str(s) for s in self.sha256)
        self.class_names = tuple(str(c) for c in self.class_names)
        n, c = len(self.networks), len(self.class_names)
        if n < 1 or c < 1 or len(self.sha256) != n or len(set(self.networks)) != n:
            raise ValueError("a combiner needs one SHA-256 per network, distinct network names and classes")
        f = n * (1 + 2 * c)
        self.mean = np.asarray(self.mean, float).reshape(-1)
        self.scale = np.asarray(self.scale, float).reshape(-1)
        self.weight = np.asarray(self.weight, float)
        self.bias = np.asarray(self.bias, float).reshape(-1)
        shapes = (self.mean.shape, self.scale.shape, self.weight.shape, self.bias.shape)
        if shapes != ((f,), (f,), (c + 1, f), (c + 1,)):
            raise ValueError(
                f"combiner arrays of shapes {shapes}; {n} networks and {c} classes need "
                f"{((f,), (f,), (c + 1, f), (c + 1,))}"
            )
        arrays = (self.mean, self.scale, self.weight, self.bias)
        if not all(np.all(np.isfinite(a)) for a in arrays) or np.any(self.scale <= 0):
            raise ValueError("combiner arrays must be finite, with scales > 0")

    def matches(self, networks: Sequence[Any]) -> bool:
        """Whether ``networks`` (loaded networks with a ``card``) are exactly this combiner's, in any order."""
        have = {(net.name, getattr(net.card, "sha256", "")) for net in networks}
        return len(have) == len(self.networks) and have == set(zip(self.networks, self.sha256))

    def features(self, clusters: list[list[tuple[str, np.ndarray, np.ndarray, int]]]) -> np.ndarray:
        """``(n, F)`` float64 features of columns (clusters of matched sites, see the module docstring)."""
        return column_features(clusters, self.networks, len(self.class_names))

    def probabilities(self, features: np.ndarray) -> np.ndarray:
        """``(n, n_classes + 1)`` probability of each class, then of "no column", from :meth:`features`."""
        z = (np.asarray(features, float) - self.mean) / self.scale @ self.weight.T + self.bias
        z -= z.max(axis=1, keepdims=True) if len(z) else 0.0
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)

    def to_dict(self) -> dict:
        """JSON-ready record (arrays as lists)."""
        return dict(
            kind="napari-hrtem consensus combiner",
            version=1,
            networks=list(self.networks),
            sha256=list(self.sha256),
            class_names=list(self.class_names),
            mean=self.mean.tolist(),
            scale=self.scale.tolist(),
            weight=self.weight.tolist(),
            bias=self.bias.tolist(),
            info=self.info,
        )

    @classmethod
    def from_dict(cls, data: Any, name: str = "combiner") -> Combiner:
        """A combiner from :meth:`to_dict`'s record.

        Raises
        ------
        ValueError
            If the record is not a combiner's, or its arrays have the wrong shapes or are not finite.
        """
        if not isinstance(data, dict) or data.get("kind") != "napari-hrtem consensus combiner":
            raise ValueError(f"{name}: not a napari-hrtem consensus combiner")
        try:
            return cls(
                networks=tuple(data["networks"]),
                sha256=tuple(data["sha256"]),
                class_names=tuple(data["class_names"]),
                mean=np.asarray(data["mean"], float),
                scale=np.asarray(data["scale"], float),
                weight=np.asarray(data["weight"], float),
                bias=np.asarray(data["bias"], float),
                info=dict(data.get("info") or {}),
                name=name,
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"{name}: incomplete combiner record ({exc})") from None

    def save(self, path: str | Path) -> Path:
        """Write the combiner as JSON; returns the path."""
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), indent=1) + "\n")
        return path

    @classmethod
    def load(cls, path: str | Path) -> Combiner:
        """Read a combiner written by :meth:`save`.

        Raises
        ------
        ValueError
            If the file is larger than :data:`MAX_COMBINER_BYTES`, not JSON, or not a valid combiner.
        """
        path = Path(path)
        if path.stat().st_size > MAX_COMBINER_BYTES:
            raise ValueError(f"{path}: {path.stat().st_size} bytes is too large for a combiner")
        try:
            data = json.loads(path.read_text())
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"{path}: not a JSON file ({exc})") from None
        return cls.from_dict(data, name=path.stem)


def column_features(clusters: list, networks: Sequence[str], n_classes: int) -> np.ndarray:
    """``(n, F)`` float64 features of columns, ``F = len(networks) * (1 + 2 n_classes)``: per network (in
    this order) 1 if it found the column, its class probabilities at its site and their logarithms
    (see the module docstring); ``clusters`` as :func:`napari_hrtem.analysis.consensus._clusters` builds them."""
    c = n_classes
    per = 1 + 2 * c
    out = np.zeros((len(clusters), len(networks) * per))
    for j in range(len(networks)):
        out[:, j * per + 1 + c : (j + 1) * per] = math.log(LOG_FLOOR)
    index = {name: j for j, name in enumerate(networks)}
    for i, members in enumerate(clusters):
        for name, _, p, _ in members:
            j = index[name] * per
            out[i, j] = 1.0
            out[i, j + 1 : j + 1 + c] = p
            out[i, j + 1 + c : j + per] = np.log(np.clip(p, 0.0, 1.0) + LOG_FLOOR)
    return out


def column_targets(clusters: list, true_yx: np.ndarray, true_classes: np.ndarray, radius: float, n_classes: int):
    """``(n,)`` int target of each cluster: the class of the true column matched to it one-to-one within
    ``radius`` Å, or ``n_classes`` ("no column")."""
    from napari_hrtem.analysis.consensus import cluster_centres
    from napari_hrtem.analysis.metrics import match_sites

    ia, ib = match_sites(cluster_centres(clusters), np.asarray(true_yx, float).reshape(-1, 2), radius)
    y = np.full(len(clusters), n_classes, int)
    y[ia] = np.asarray(true_classes, int)[ib]
    return y


def fit_combiner(
    examples: Iterable[tuple[dict[str, Sites], np.ndarray, np.ndarray]],
    networks: Sequence[Any],
    *,
    radius: float = 0.5,
    l2: float = 1e-3,
    info: dict | None = None,
) -> Combiner:
    """Train a :class:`Combiner` on the networks' sites in series with known columns.

    Parameters
    ----------
    examples : iterable of (dict, numpy.ndarray, numpy.ndarray)
        Per series: the sites of every network (name -> :class:`Sites`, at the networks' own
        thresholds, as :func:`~napari_hrtem.analysis.inference.predict_all` gives them), the true
        column positions ``(m, 2)`` ``(y, x)`` in Å and their integer classes ``(m,)``.
    networks : sequence of Network
        The loaded networks (names and model cards; their ``sha256`` bind the combiner to them).
    radius : float
        Agreement and matching radius, Å (that of the consensus and of atomic F1).
    l2 : float
        L2 penalty on the weights (standardized features), added to the mean cross-entropy.
    info : dict, optional
        Provenance to record.

    Returns
    -------
    Combiner

    Raises
    ------
    ValueError
        If there are no columns to learn from, or a series lacks a network's sites.

    References
    ----------
    .. [1] D. H. Wolpert, "Stacked generalization", Neural Networks 5 (2), 241-259 (1992).
    """
    from scipy.optimize import minimize

    from napari_hrtem.analysis.consensus import _clusters

    names = tuple(net.name for net in networks)
    class_names = tuple(networks[0].card.classes)
    c = len(class_names)
    xs, ys = [], []
    for results, true_yx, true_classes in examples:
        if set(results) != set(names):
            raise ValueError(f"a series has the sites of {sorted(results)}, the combiner needs {sorted(names)}")
        clusters = _clusters({n: results[n] for n in names}, radius)
        xs.append(column_features(clusters, names, c))
        ys.append(column_targets(clusters, true_yx, true_classes, radius, c))
    x, y = np.concatenate(xs) if xs else np.zeros((0, 1)), np.concatenate(ys) if ys else np.zeros(0, int)
    if not len(y):
        raise ValueError("no columns to learn from: the networks found none")
    mean, scale = x.mean(axis=0), x.std(axis=0)
    scale = np.where(scale > 1e-9, scale, 1.0)
    xs_ = (x - mean) / scale
    onehot = np.eye(c + 1)[y]
    f = x.shape[1]

    def loss(theta):
        w, b = theta[: (c + 1) * f].reshape(c + 1, f), theta[(c + 1) * f :]
        z = xs_ @ w.T + b
        z -= z.max(axis=1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        p = np.exp(logp)
        n = len(y)
        value = -np.sum(onehot * logp) / n + l2 * np.sum(w * w)
        g = (p - onehot) / n
        return value, np.concatenate([(g.T @ xs_ + 2 * l2 * w).ravel(), g.sum(axis=0)])

    res = minimize(loss, np.zeros((c + 1) * (f + 1)), jac=True, method="L-BFGS-B", options=dict(maxiter=2000))
    theta = res.x
    counts = {name: int(np.sum(y == i)) for i, name in enumerate((*class_names, "none"))}
    record = dict(info or {}) | dict(columns=counts, l2=l2, radius=radius, loss=float(res.fun))
    if not math.isfinite(float(res.fun)):
        raise ValueError("the combiner's training diverged")
    return Combiner(
        names,
        tuple(getattr(net.card, "sha256", "") for net in networks),
        class_names,
        mean,
        scale,
        theta[: (c + 1) * f].reshape(c + 1, f),
        theta[(c + 1) * f :],
        info=record,
    )


@lru_cache(maxsize=1)
def shipped_combiners() -> tuple[tuple[str, Combiner], ...]:
    """``(file name, combiner)`` of the combiners in :data:`COMBINER_DIR` (package data: read once per
    process). Each defines a set of shipped networks (:func:`napari_hrtem.models.registry.network_sets`)."""
    return tuple(
        (name, Combiner.load(COMBINER_DIR / name)) for name in COMBINER_FILES if (COMBINER_DIR / name).is_file()
    )


def shipped_combiner(networks: Sequence[Any]) -> Combiner | None:
    """The shipped combiner trained with exactly these networks (same names and weights), or ``None``."""
    return next((combiner for _, combiner in shipped_combiners() if combiner.matches(networks)), None)


def choose_rule(networks: Sequence[Any], rule: str = "auto", threshold: float | None = None):
    """The consensus rule and combiner for these networks.

    Parameters
    ----------
    networks : sequence of Network
        The loaded networks.
    rule : str
        ``"auto"`` (the learned rule where a shipped combiner was trained with exactly these networks
        at their own thresholds, else the sum rule), or one of
        :data:`napari_hrtem.analysis.consensus.RULES`.
    threshold : float, optional
        A column probability threshold for every network in place of each network's own: the
        shipped combiners were trained at the networks' own, so ``"auto"`` then takes the sum rule.

    Returns
    -------
    tuple of (str, Combiner or None)

    Raises
    ------
    ValueError
        For an unknown rule, or ``"learned"`` where no shipped combiner fits the networks.
    """
    from napari_hrtem.analysis.consensus import RULES

    if rule not in ("auto", *RULES):
        raise ValueError(f"unknown consensus rule {rule!r}; known: auto, {', '.join(RULES)}")
    if rule in ("auto", "learned"):
        combiner = shipped_combiner(networks) if threshold is None else None
        if combiner is not None:
            return "learned", combiner
        if rule == "learned":
            names = ", ".join(net.name for net in networks)
            why = "at a threshold of their own" if threshold is not None else f"with these networks ({names})"
            raise ValueError(f"no shipped consensus combiner was trained {why}; use the sum rule")
        return "sum", None
    return rule, None
