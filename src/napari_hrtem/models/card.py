"""The model card: what a network is, what it expects of its input and how it was trained.

A card is stored as ``<name>.json`` next to the weights ``<name>.pt``. In Python it is a
:class:`ModelCard`; :meth:`ModelCard.from_dict` checks a card read from a file (every key
inference needs, with sensible values) and :meth:`ModelCard.to_dict` gives the JSON object back,
keys the class does not know included, so that a card written by a newer version survives a
round trip.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field, fields
from typing import Any

#: Architecture name -> (module path, class name, default configuration).
ARCHITECTURES: dict[str, tuple[str, str, dict[str, Any]]] = {
    "unet": ("napari_hrtem.models.unet", "UNet", dict(base_channels=8, depth=3)),
    "unetpp": ("napari_hrtem.models.unetpp", "UNetPlusPlus", dict(base_channels=8, depth=3)),
    "msdnet": (
        "napari_hrtem.models.msdnet",
        "MSDNet",
        dict(width=2, depth=24, kernel_size=3, max_dilation=10, checkpoint=True),
    ),
}

#: Column probability threshold of a card that records none.
DEFAULT_THRESHOLD = 0.5


class NetworkError(ValueError):
    """A network's weight file or model card is missing, corrupt or does not fit."""


@dataclass
class ModelCard:
    """A network's model card.

    Attributes
    ----------
    architecture : str
        A key of :data:`ARCHITECTURES` (``"unet"``, ``"unetpp"``, ``"msdnet"``).
    classes : list of str
        Class names in the order of the network's output channels (background is the last,
        extra channel), e.g. ``["Mo", "S2", "S"]``.
    n_images : int
        Number of images of the focal series the network takes (its input channels).
    sampling : float
        Å/px of the images the network was trained on; inputs are resampled to it.
    normalization_distance : float
        Å, the length scale of the local normalization (thesis eq. 3.3.1).
    sha256 : str
        Hex SHA-256 of the weight file (checked before the weights are loaded); empty for a
        card not yet saved with weights.
    name : str or None
        The network's name (the file stem when absent).
    config : dict
        Architecture settings over the defaults of :data:`ARCHITECTURES`.
    defocus_step : float
        Å, defocus step between the images of the training focal series (abTEM sign
        convention: defocus = -C10, positive = underfocus).
    support_filter : bool
        Whether the support lattice is Fourier-filtered before the network sees the images.
    support_lattice_constant : float
        Å, the support's lattice constant (graphene 2.46 Å).
    material : str
        The material the network was trained on.
    threshold : float or None
        Column probability threshold chosen on the validation set (None: :data:`DEFAULT_THRESHOLD`).
    parameters : int or None
        Number of trainable parameters.
    training, validation : dict or None
        How the network was trained (command, datasets, steps, ...) and its validation scores.
    extra : dict
        Keys of the JSON card this class does not know, kept for the round trip.

    References
    ----------
    .. [1] M. Mitchell et al., "Model cards for model reporting", Proc. FAT* 2019, 220-229.
    """

    architecture: str
    classes: list[str]
    n_images: int
    sampling: float
    normalization_distance: float
    sha256: str = ""
    name: str | None = None
    config: dict[str, Any] = field(default_factory=dict)
    defocus_step: float = 50.0
    support_filter: bool = True
    support_lattice_constant: float = 2.46
    material: str = "MoS2"
    threshold: float | None = None
    parameters: int | None = None
    training: dict[str, Any] = field(default_factory=dict)
    validation: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def column_threshold(self) -> float:
        """The column probability threshold to use by default (the card's, else 0.5)."""
        return DEFAULT_THRESHOLD if self.threshold is None else float(self.threshold)

    @classmethod
    def from_dict(cls, data: Any, where: str = "model card", *, require_sha256: bool = True) -> ModelCard:
        """A checked card from a JSON object.

        Parameters
        ----------
        data : dict
            The decoded JSON card.
        where : str
            Names the card in error messages (e.g. the file name).
        require_sha256 : bool
            Whether the SHA-256 of the weights must be present (it is for any card on disk).

        Raises
        ------
        NetworkError
            Naming ``where`` and the problem: not a JSON object, missing keys, an unknown
            architecture or setting, classes that are not distinct names, ``n_images`` not a
            positive integer, ``sampling`` or ``normalization_distance`` not a finite number > 0,
            ``sha256`` not a 64-digit hex string, or ``threshold`` not in (0, 1).
        """
        check_card(data, where, require_sha256=require_sha256)
        known = {f.name for f in fields(cls)} - {"extra"}
        values = {k: v for k, v in data.items() if k in known}
        values["extra"] = {k: v for k, v in data.items() if k not in known}
        values["classes"] = list(values["classes"])
        values["config"] = dict(values.get("config") or {})
        values["training"] = dict(values.get("training") or {})
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of the card (``None`` entries of optional fields left out)."""
        out = asdict(self)
        extra = out.pop("extra")
        optional = ("name", "threshold", "parameters")
        out = {k: v for k, v in out.items() if not (k in optional and v is None)}
        if not out["sha256"]:
            del out["sha256"]
        return {**out, **extra}


def check_card(card: Any, where: str = "model card", *, require_sha256: bool = True) -> None:
    """Check that a model card (a JSON object) has every key inference needs, with sensible values.

    Raises
    ------
    NetworkError
        Naming ``where`` and the problem (see :meth:`ModelCard.from_dict`).
    """
    if not isinstance(card, dict):
        raise NetworkError(f"{where}: a model card must be a JSON object, got {type(card).__name__}")
    required = ["architecture", "classes", "n_images", "sampling", "normalization_distance"]
    if require_sha256:
        required.append("sha256")
    missing = [k for k in required if k not in card]
    if missing:
        raise NetworkError(f"{where}: model card lacks {missing}")
    if card["architecture"] not in ARCHITECTURES:
        raise NetworkError(f"{where}: unknown architecture {card['architecture']!r}; known: {', '.join(ARCHITECTURES)}")
    classes = card["classes"]
    if (
        not isinstance(classes, list)
        or not classes
        or not all(isinstance(c, str) and c.strip() for c in classes)
        or len(set(classes)) != len(classes)
    ):
        raise NetworkError(
            f'{where}: classes must be a list of distinct names (e.g. ["Mo", "S2", "S"]), got {classes!r}'
        )
    if isinstance(card["n_images"], bool) or not isinstance(card["n_images"], int) or card["n_images"] < 1:
        raise NetworkError(f"{where}: n_images must be a positive integer, got {card['n_images']!r}")
    for key in ("sampling", "normalization_distance"):
        value = card[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            raise NetworkError(f"{where}: {key} must be a finite number > 0 (Å/px, Å), got {value!r}")
    if not isinstance(card.get("config", {}), dict):
        raise NetworkError(f"{where}: config must be an object of architecture settings, got {card['config']!r}")
    unknown = sorted(set(card.get("config", {})) - set(ARCHITECTURES[card["architecture"]][2]))
    if unknown:
        raise NetworkError(
            f"{where}: unknown settings for {card['architecture']}: {unknown}; known: "
            f"{sorted(ARCHITECTURES[card['architecture']][2])}"
        )
    if "sha256" in card and not (isinstance(card["sha256"], str) and re.fullmatch(r"[0-9a-f]{64}", card["sha256"])):
        raise NetworkError(f"{where}: sha256 must be the 64-digit hex SHA-256 of the weights, got {card['sha256']!r}")
    threshold = card.get("threshold", DEFAULT_THRESHOLD)
    if threshold is None:
        threshold = DEFAULT_THRESHOLD
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 < threshold < 1:
        raise NetworkError(
            f"{where}: threshold (column probability) must be a number between 0 and 1, got {threshold!r}"
        )
    for key in ("training", "validation"):
        if card.get(key) is not None and not isinstance(card[key], dict):
            raise NetworkError(f"{where}: {key} must be an object, got {type(card[key]).__name__}")
    if card.get("name") is not None and not isinstance(card["name"], str):
        raise NetworkError(f"{where}: name must be a string, got {card['name']!r}")
