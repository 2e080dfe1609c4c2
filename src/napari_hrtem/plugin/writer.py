"""npe2 writer: a Points layer of sites -> labels CSV (``y,x,class,confidence`` in Å) + JSON sidecar."""

from __future__ import annotations


def write_labels_csv(path: str, data, attributes: dict) -> list[str]:
    """Write one Points layer as labels (:func:`napari_hrtem.io.sites.write_labels`).

    The class comes from the layer's ``class`` feature or, for a per-class layer, from its
    metadata; positions are converted to Å with the layer's scale. Returns the written paths.

    Raises
    ------
    ValueError
        If the points have no class.
    """
    import numpy as np

    from napari_hrtem.io.sites import labels_sidecar_path, write_labels
    from napari_hrtem.plugin.layers import sites_from_points

    features = attributes.get("features")
    features = {} if features is None else {k: np.asarray(features[k]) for k in features}
    metadata = attributes.get("metadata") or {}
    scale = attributes.get("scale") or (1.0, 1.0)
    sites = sites_from_points(data, scale, features, metadata)
    made_by = (
        [str(m) for m in features["made_by"]]
        if "made_by" in features
        else [metadata.get("source") or attributes.get("name", "napari")] * len(sites)
    )
    if not str(path).lower().endswith(".csv"):
        path = f"{path}.csv"
    write_labels(
        path, sites, made_by, sampling=float(scale[-1]), layer=attributes.get("name"), image=metadata.get("image")
    )
    return [str(path), str(labels_sidecar_path(path))]
