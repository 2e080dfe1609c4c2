"""Layer data for napari (no Qt, no napari import): focal series images and sites as Points.

Points hold pixel coordinates ``(row, col)`` = position in Å / sampling and carry
``scale=(sampling, sampling)``, so the viewer's axes are in Å. Class colours are the same in
every layer.
"""

from __future__ import annotations

import numpy as np

from napari_hrtem.io.sites import Sites

#: Face colour of each class in every Points layer.
CLASS_COLOURS = {"Mo": "#1f77ff", "S2": "#ffd700", "S": "#ff3030"}

#: Default diameter of a site marker, Å (``metadata["marker_size"]`` of the plugin's Points layers).
MARKER_SIZE = 0.6

#: Smallest and largest marker on screen, in screen pixels: markers are ``marker_size`` Å wide when
#: zoomed in, and never smaller than this when zoomed out (a whole 1024² image in view: 0.6 Å would
#: be under 2 screen pixels), so the sites stay visible at any field of view.
MARKER_CANVAS_LIMITS = (5.0, 10000.0)


def image_layer_data(images: np.ndarray, sampling: float | None, name: str, **metadata) -> tuple:
    """``(data, kwargs, "image")`` for a focal series ``(N, H, W)`` at ``sampling`` Å/px.

    ``sampling=None`` (no calibration) shows the image in pixels and records no sampling;
    otherwise the layer's ``units`` are Å on ``(y, x)`` (napari's scale bar then reads Å, or nm).
    """
    meta = dict(sampling=None if sampling is None else float(sampling), **metadata)
    s = 1.0 if sampling is None else float(sampling)
    scale = (1.0, s, s) if images.ndim == 3 else (s, s)
    units = None if sampling is None else (("pixel",) * (images.ndim - 2) + ("angstrom", "angstrom"))
    return (
        images,
        dict(
            name=name,
            scale=scale,
            metadata=meta,
            colormap="gray",
            axis_labels=("image", "y (Å)", "x (Å)")[-images.ndim :],
            units=units,
        ),
        "image",
    )


def points_layer_data(
    sites: Sites, sampling: float, prefix: str, *, size_angstrom: float = MARKER_SIZE, visible: bool = True
) -> list[tuple]:
    """One ``(data, kwargs, "points")`` per class: ``"<prefix> <class>"``.

    Features: ``confidence``, plus ``votes`` and ``networks`` for a consensus (where the size
    grows with the votes), and every per-site figure of ``sites.extra`` (a consensus: each
    network's column probability, their mean ``p_column_mean`` and spread ``p_column_std``, ...).
    Empty classes still get a layer, so layer names are predictable.
    """
    out = []
    for code, cls in enumerate(sites.class_names):
        mask = sites.classes == code
        features = {"confidence": sites.confidence[mask]}
        size = np.full(int(mask.sum()), size_angstrom / sampling)
        if sites.votes is not None:
            features["votes"] = sites.votes[mask]
            features["networks"] = np.array(sites.networks, dtype=object)[mask] if sites.networks else []
            size = size * (0.6 + 0.4 * sites.votes[mask] / max(int(sites.votes.max(initial=1)), 1))
        for key, values in sites.extra.items():
            features.setdefault(key, np.asarray(values)[mask])
        out.append(
            (
                sites.yx[mask] / sampling,
                dict(
                    name=f"{prefix} {cls}",
                    scale=(sampling, sampling),
                    face_color=CLASS_COLOURS.get(cls, "white"),
                    border_color="black",
                    border_width=0.1,
                    size=size,
                    canvas_size_limits=MARKER_CANVAS_LIMITS,
                    features=features,
                    visible=visible,
                    metadata=dict(sampling=sampling, site_class=cls, source=prefix, marker_size=size_angstrom),
                ),
                "points",
            )
        )
    return out


#: Name of the layer of the sites the networks dispute (Predict and Compare widgets).
DISAGREEMENT = "disagreement"

#: Border colour of a disputed site: missed by some networks, or given different classes.
DISAGREEMENT_COLOURS = {"missed": "#ff8c00", "class differs": "#ff00ff"}


def disagreement_layer_data(
    yx: np.ndarray, kind: list[str], says: list[str], sampling: float, *, name: str = DISAGREEMENT, visible: bool = True
) -> tuple:
    """``(data, kwargs, "points")`` of the disputed sites
    (:func:`napari_hrtem.analysis.comparison.disagreements`): open circles, orange where some
    networks miss the column, magenta where they give it different classes; features ``kind``
    and ``says`` (what each network says there)."""
    colours = [
        DISAGREEMENT_COLOURS["missed"] if k.startswith("missed") else DISAGREEMENT_COLOURS["class differs"]
        for k in kind
    ]
    features = dict(kind=np.array(kind, dtype=object), says=np.array(says, dtype=object))
    return _rings(yx, sampling, name, 1.1, colours or DISAGREEMENT_COLOURS["missed"], 0.15, features, visible)


def _rings(yx, sampling: float, name: str, diameter: float, colour, width: float, features: dict, visible: bool):
    """``(data, kwargs, "points")`` of open circles ``diameter`` Å wide around sites ``yx`` (Å); on
    screen a little larger than the site markers at any zoom."""
    return (
        np.asarray(yx, float).reshape(-1, 2) / sampling,
        dict(
            name=name,
            scale=(sampling, sampling),
            size=diameter / sampling,
            canvas_size_limits=(MARKER_CANVAS_LIMITS[0] + 6 * (diameter - 0.6), MARKER_CANVAS_LIMITS[1]),
            face_color="transparent",
            border_color=colour,
            border_width=width,
            features=features,
            visible=visible,
            metadata=dict(sampling=sampling, marker_size=diameter),
        ),
        "points",
    )


#: Border colour of a site with a neighbour of its own sublattice too close (Predict widget).
SUBLATTICE_CONFLICT_COLOUR = "#00e5ff"


def sublattice_conflict_layer_data(sites: Sites, sampling: float, name: str | None = None) -> tuple:
    """``(data, kwargs, "points")`` of the sites marked ``extra["sublattice_conflict"]``
    (:func:`napari_hrtem.analysis.sublattice.sublattice_conflicts`): open cyan circles named
    ``name`` (default ``"sublattice conflicts"``), feature ``site_class`` (the site's label). With no
    site marked the layer is empty and hidden (it still replaces an earlier run's)."""
    from napari_hrtem.analysis.sublattice import SUBLATTICE_CONFLICTS

    flag = np.asarray(sites.extra.get("sublattice_conflict", np.zeros(len(sites.yx))), float) > 0
    names = np.array(sites.class_names, dtype=object)[sites.classes[flag]]
    features = dict(site_class=names)
    return _rings(
        sites.yx[flag],
        sampling,
        name or SUBLATTICE_CONFLICTS,
        1.4,
        SUBLATTICE_CONFLICT_COLOUR,
        0.12,
        features,
        bool(flag.any()),
    )


#: Name of the layer of the specimen mask (Predict widget).
SPECIMEN = "specimen mask"


def specimen_layer_data(specimen, *, name: str = SPECIMEN, opacity: float = 0.25, visible: bool = True) -> tuple:
    """``(data, kwargs, "labels")`` of a :class:`~napari_hrtem.analysis.specimen.SpecimenMask`:
    label 1 on the specimen, translucent, ``scale=(sampling, sampling)`` and ``translate`` its
    origin, so that it lies over the image in Å; metadata the mask's summary."""
    s = float(specimen.sampling)
    return (
        np.asarray(specimen.mask, np.uint8),
        dict(
            name=name,
            scale=(s, s),
            translate=tuple(float(v) for v in specimen.origin),
            opacity=opacity,
            visible=visible,
            metadata=dict(sampling=s, specimen=specimen.to_dict()),
        ),
        "labels",
    )


def probability_layer_data(column: np.ndarray, sampling: float, network: str, *, visible: bool = False) -> tuple:
    """``(data, kwargs, "image")`` of a network's column probability map ``1 - P(background)``
    (``(H', W')`` in [0, 1] at the network's ``sampling`` Å/px, origin at the centre of pixel (0, 0)
    of the series it saw): named ``"<network> column probability"``, float32, ``scale=(sampling,
    sampling)`` so that it lies over the focal series in Å, colormap ``inferno`` with contrast
    limits (0, 1), additive blending at opacity 0.6 (the series shows through)."""
    s = float(sampling)
    return (
        np.asarray(column, np.float32),
        dict(
            name=f"{network} column probability",
            scale=(s, s),
            colormap="inferno",
            contrast_limits=(0.0, 1.0),
            blending="additive",
            opacity=0.6,
            visible=visible,
            axis_labels=("y (Å)", "x (Å)"),
            units=("angstrom", "angstrom"),
            metadata=dict(sampling=s, network=network, quantity="column probability 1 - P(background)"),
        ),
        "image",
    )


def sites_from_points(
    data: np.ndarray, scale, features=None, metadata=None, class_names: tuple[str, ...] | None = None
) -> Sites:
    """:class:`Sites` (positions in Å) from a Points layer's data, scale, features and metadata.

    The class comes from the ``class`` feature (a labels layer) or, for the per-class layers of
    :func:`points_layer_data`, from ``metadata["site_class"]``; ``confidence`` from the features
    when present, else 1; the class probabilities ``p_<class>`` (``extra``, weighed by the
    consensus) when the features hold them for every class.

    Raises
    ------
    ValueError
        If the class of the points cannot be told or is unknown.
    """
    from napari_hrtem.simulation.structures import CLASSES

    class_names = tuple(class_names or CLASSES)
    data = np.asarray(data, float).reshape(-1, np.asarray(data).shape[-1] if np.asarray(data).ndim == 2 else 2)
    yx = data[:, -2:] * np.asarray(scale, float)[-2:]
    n = len(yx)
    features = {} if features is None else features
    metadata = {} if metadata is None else metadata
    if "class" in features and len(features["class"]) == n:
        names = [str(c) for c in np.asarray(features["class"])]
    elif metadata.get("site_class") in class_names:
        names = [metadata["site_class"]] * n
    else:
        raise ValueError("the points have no class (a 'class' feature or a per-class layer)")
    lookup = {c: i for i, c in enumerate(class_names)}
    unknown = sorted(set(names) - set(lookup))
    if unknown:
        raise ValueError(f"unknown class(es) {unknown}; known: {', '.join(class_names)}")
    conf = (
        np.asarray(features["confidence"], float)
        if "confidence" in features and len(features["confidence"]) == n
        else np.ones(n)
    )
    probabilities = {
        f"p_{c}": np.asarray(features[f"p_{c}"], float)
        for c in class_names
        if f"p_{c}" in features and len(features[f"p_{c}"]) == n
    }
    extra = probabilities if len(probabilities) == len(class_names) else {}  # all classes' or none
    return Sites(yx, np.array([lookup[c] for c in names], int), conf, class_names=class_names, extra=extra)
