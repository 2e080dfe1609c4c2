"""The model card: what a network is, what it expects of its input and how it was trained.

A card is stored as ``<name>.json`` next to the weights ``<name>.pt``. In Python it is a
:class:`ModelCard`; :meth:`ModelCard.from_dict` checks a card read from a file (every key
inference needs, with sensible values) and :meth:`ModelCard.to_dict` gives the JSON object back,
keys the class does not know included, so that a card written by a newer version survives a
round trip. A card's :class:`Domain` says what input the network was trained on (beam energy,
sampling, defocus, aberrations, dose, material, support); inputs outside it get warnings
(:func:`napari_hrtem.analysis.domain.domain_warnings`).
"""

from __future__ import annotations

import copy
import math
import re
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from napari_hrtem.names import check_class_name, check_network_name

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


#: Most classes and focal-series images a card may declare.
MAX_CLASSES, MAX_N_IMAGES = 32, 64
#: Card key -> (low, high, unit): the ranges a card's numbers must lie in (checked before anything is built).
CARD_RANGES: dict[str, tuple[float, float, str]] = {
    "sampling": (0.05, 2.0, "Å/px"),
    "normalization_distance": (0.5, 200.0, "Å"),
}
#: Architecture -> setting -> (low, high) for integers, or ``bool``: the settings a card (or
#: ``train --set``) may give, wide enough for every shipped and thesis network, small enough that
#: no network outgrows a workstation's memory. MSD-net also needs ``width * depth <= 400`` channels.
CONFIG_LIMITS: dict[str, dict[str, tuple[int, int] | type]] = {
    "unet": dict(base_channels=(1, 32), depth=(1, 5)),
    "unetpp": dict(base_channels=(1, 32), depth=(1, 5)),
    "msdnet": dict(width=(1, 8), depth=(1, 200), kernel_size=(1, 7), max_dilation=(1, 32), checkpoint=bool),
}
#: Most MSD-net feature channels (``width * depth``).
MSD_MAX_CHANNELS = 400


def _shown(value: Any, limit: int = 60) -> str:
    """``repr(value)``, cut to ``limit`` characters (a message stays one short line)."""
    text = " ".join(repr(value).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _checked_names(where: str, names: list[Any], check: Any, what: str) -> None:
    for name in names:
        try:
            check(name, what)
        except ValueError as exc:
            raise NetworkError(f"{where}: {exc}") from None


def check_config(architecture: str, config: Any, where: str = "architecture settings") -> None:
    """Range-check architecture settings (:data:`CONFIG_LIMITS`) before any network is built.

    Raises
    ------
    NetworkError
        Naming ``where``, the setting, its range and the value given (one line).
    """
    limits = CONFIG_LIMITS.get(architecture, {})
    if not isinstance(config, dict):
        raise NetworkError(f"{where}: config must be an object of architecture settings, got {_shown(config)}")
    merged = {**ARCHITECTURES[architecture][2], **config} if architecture in ARCHITECTURES else dict(config)
    for key, value in config.items():
        limit = limits.get(key)
        if limit is None:
            continue
        if limit is bool:
            if not isinstance(value, bool):
                raise NetworkError(f"{where}: config {key} must be true or false, got {_shown(value)}")
            continue
        assert isinstance(limit, tuple)
        low, high = limit
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise NetworkError(f"{where}: config {key} must be an integer {low}-{high}, got {_shown(value)}")
    if architecture == "msdnet":
        if int(merged.get("kernel_size", 3)) % 2 != 1:
            raise NetworkError(f"{where}: config kernel_size must be odd, got {merged.get('kernel_size')!r}")
        channels = int(merged.get("width", 1)) * int(merged.get("depth", 1))
        if channels > MSD_MAX_CHANNELS:
            raise NetworkError(
                f"{where}: config width * depth must be at most {MSD_MAX_CHANNELS} feature channels, got {channels}"
            )


#: The ranges of a :class:`Domain`, ``[low, high]`` each, and their units.
DOMAIN_RANGES: dict[str, str] = {
    "energy": "keV",
    "sampling": "Å/px",
    "defocus_step": "Å",
    "first_defocus": "Å",
    "Cs": "Å",
    "C12": "Å",
    "C21": "Å",
    "focal_spread": "Å",
    "dose": "e/Å²",
    "support_layers": "graphene layers",
}

#: The defocus sign convention of the networks (and of every defocus in a card).
DEFOCUS_CONVENTION = "abTEM: defocus = -C10 in Å, positive = underfocus"


def _range(value: Any, key: str, where: str) -> tuple[float, float] | None:
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = [value, value]
    if (
        not isinstance(value, (list, tuple))
        or len(value) != 2
        or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    ):
        raise NetworkError(f"{where}: domain {key} must be a range [low, high] ({DOMAIN_RANGES[key]}), got {value!r}")
    low, high = float(value[0]), float(value[1])
    if not (math.isfinite(low) and math.isfinite(high)) or low > high:
        raise NetworkError(
            f"{where}: domain {key} must be a finite range with low <= high ({DOMAIN_RANGES[key]}), got {value!r}"
        )
    return low, high


@dataclass
class Domain:
    """The input a network was trained on: what its predictions can be trusted for.

    Each range is ``(low, high)``, inclusive; None where it is not known. Inputs outside a
    range get a warning (:func:`napari_hrtem.analysis.domain.domain_warnings`), not an error:
    the networks still run.

    Attributes
    ----------
    energy : (float, float) or None
        Beam energy, keV.
    sampling : (float, float) or None
        Pixel size of the training images, Å/px (inputs are resampled to the card's
        ``sampling``; a coarser pixel lacks detail the network saw).
    n_images : int or None
        Images per focal series.
    defocus_step : (float, float) or None
        Å, step between consecutive images, in :data:`DEFOCUS_CONVENTION` (abTEM: defocus =
        -C10, positive = underfocus); frames in order of increasing defocus.
    first_defocus : (float, float) or None
        Å, defocus of the first image (same convention).
    defocus_convention : str
        The sign convention of ``defocus_step`` and ``first_defocus``.
    Cs, C12, C21 : (float, float) or None
        Å: spherical aberration C30, two-fold astigmatism and axial coma (magnitudes; their
        azimuths uniform in 0-2π).
    focal_spread : (float, float) or None
        Å, the focal spread of the partial temporal coherence.
    dose : (float, float) or None
        e/Å².
    material : str or None
        The material, e.g. ``"MoS2"``.
    classes : list of str
        The classes the network labels (as the card's ``classes``).
    support : str
        ``"none"`` or the support's material (``"graphene"``).
    support_layers : (float, float) or None
        Number of support layers (0: bare), e.g. ``(0, 6)``.
    recipe : dict
        How the training data were made (simulator, parameter file, shapes, counts, ...).
    extra : dict
        Keys this class does not know, kept for the round trip.

    References
    ----------
    .. [1] J. B. Christensen, "Machine learning for interpreting HR-TEM images of
       two-dimensional materials", Bachelor project, DTU (2024), Table 1 and section 3.1.
    .. [2] J. Madsen, T. Susi, "The abTEM code: transmission electron microscopy from first
       principles", Open Research Europe 1, 24 (2021) (defocus sign convention).
    """

    energy: tuple[float, float] | None = None
    sampling: tuple[float, float] | None = None
    n_images: int | None = None
    defocus_step: tuple[float, float] | None = None
    first_defocus: tuple[float, float] | None = None
    defocus_convention: str = DEFOCUS_CONVENTION
    Cs: tuple[float, float] | None = None
    C12: tuple[float, float] | None = None
    C21: tuple[float, float] | None = None
    focal_spread: tuple[float, float] | None = None
    dose: tuple[float, float] | None = None
    material: str | None = None
    classes: list[str] = field(default_factory=list)
    support: str = "none"
    support_layers: tuple[float, float] | None = None
    recipe: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Any, where: str = "model card") -> Domain:
        """A checked domain from its JSON object (the card's ``domain``).

        Raises
        ------
        NetworkError
            Naming ``where`` and the problem: not an object, a range that is not ``[low,
            high]`` of finite numbers with low <= high, a beam energy, sampling or dose that is
            not > 0, ``n_images`` not a positive integer, negative support layers, classes not
            a list of names, or a recipe that is not an object.
        """
        if not isinstance(data, dict):
            raise NetworkError(f"{where}: domain must be an object, got {type(data).__name__}")
        ranges: dict[str, Any] = {key: _range(data.get(key), key, where) for key in DOMAIN_RANGES}
        for key in ("energy", "sampling", "dose"):
            got = ranges[key]
            if got is not None and got[0] <= 0:
                raise NetworkError(f"{where}: domain {key} must be > 0 ({DOMAIN_RANGES[key]}), got {data[key]!r}")
        layers = ranges["support_layers"]
        if layers is not None and layers[0] < 0:
            raise NetworkError(f"{where}: domain support_layers must be >= 0, got {data['support_layers']!r}")
        n = data.get("n_images")
        if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
            raise NetworkError(f"{where}: domain n_images must be a positive integer, got {n!r}")
        classes = data.get("classes", [])
        if not isinstance(classes, list) or not all(isinstance(c, str) and c.strip() for c in classes):
            raise NetworkError(f"{where}: domain classes must be a list of names, got {classes!r}")
        for key in ("material", "support", "defocus_convention"):
            if data.get(key) is not None and not isinstance(data[key], str):
                raise NetworkError(f"{where}: domain {key} must be a string, got {data[key]!r}")
        if not isinstance(data.get("recipe", {}), dict):
            raise NetworkError(f"{where}: domain recipe must be an object, got {type(data['recipe']).__name__}")
        known = {f.name for f in fields(cls)} - {"extra"}
        values: dict[str, Any] = {k: v for k, v in data.items() if k in known and k not in ranges}
        return cls(
            **values,
            **ranges,
            extra={k: v for k, v in data.items() if k not in known and k != "units"},
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON object (ranges as ``[low, high]``, unknown ones left out, with ``units``)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "extra" or value is None:
                continue
            out[f.name] = [value[0], value[1]] if f.name in DOMAIN_RANGES else copy.deepcopy(value)
        out["units"] = {key: unit for key, unit in DOMAIN_RANGES.items() if key in out}
        return {**out, **copy.deepcopy(self.extra)}

    @classmethod
    def from_parameter_ranges(
        cls,
        ranges: dict[str, Any],
        *,
        classes: list[str],
        sampling: tuple[float, float] | None = None,
        recipe: dict[str, Any] | None = None,
    ) -> Domain:
        """The domain of networks trained on focal series simulated from parameter ranges.

        Parameters
        ----------
        ranges : dict
            :func:`napari_hrtem.simulation.parameters.load_parameter_ranges` (thesis Table 1
            by default): its ``microscope`` (energy eV, defocus, defocus_step, Cs, C12, C21,
            focal_spread Å, log10_dose, sampling Å/px, n_images) and ``sample`` (formula,
            graphene_layers, bare_fraction) sections.
        classes : list of str
            The classes the networks label.
        sampling : (float, float), optional
            Å/px of the training images when not the ranges' ``sampling``.
        recipe : dict, optional
            How the data were made (recorded as the domain's ``recipe``).
        """

        def pair(value: Any) -> tuple[float, float]:
            if isinstance(value, (int, float)):
                return float(value), float(value)
            return float(value[0]), float(value[1])

        mic, sample = ranges["microscope"], ranges["sample"]
        low, high = pair(mic["energy"])
        log_dose = pair(mic["log10_dose"])
        layers = pair(sample["graphene_layers"])
        bare = float(sample.get("bare_fraction", 0.0))
        return cls(
            energy=(low / 1e3, high / 1e3),
            sampling=pair(mic["sampling"]) if sampling is None else (float(sampling[0]), float(sampling[1])),
            n_images=int(mic["n_images"]),
            defocus_step=pair(mic["defocus_step"]),
            first_defocus=pair(mic["defocus"]),
            Cs=pair(mic["Cs"]),
            C12=pair(mic["C12"]),
            C21=pair(mic["C21"]),
            focal_spread=pair(mic["focal_spread"]),
            dose=(round(10 ** log_dose[0], 1), round(10 ** log_dose[1], 1)),
            material=str(sample.get("formula", "MoS2")),
            classes=list(classes),
            support="graphene",
            support_layers=(0.0 if bare > 0 else layers[0], layers[1]),
            recipe=dict(recipe or {}),
        )


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
    domain : Domain or None
        The input the network was trained on (beam energy, sampling, defocus, aberrations,
        dose, material, support); None for a card that does not say.
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
    domain: Domain | None = None
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
            ``sha256`` not a 64-digit hex string, ``threshold`` not in (0, 1), or a ``domain``
            that does not pass :meth:`Domain.from_dict`.
        """
        check_card(data, where, require_sha256=require_sha256)
        known = {f.name for f in fields(cls)} - {"extra"}
        values = {k: v for k, v in data.items() if k in known}
        values["extra"] = {k: v for k, v in data.items() if k not in known}
        values["classes"] = list(values["classes"])
        values["config"] = dict(values.get("config") or {})
        values["training"] = dict(values.get("training") or {})
        if values.get("domain") is not None:
            values["domain"] = Domain.from_dict(values["domain"], where)
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of the card (``None`` entries of optional fields left out)."""
        out = asdict(self)
        extra = out.pop("extra")
        out["domain"] = None if self.domain is None else self.domain.to_dict()
        optional = ("name", "threshold", "parameters", "domain")
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
    if not isinstance(card["architecture"], str) or card["architecture"] not in ARCHITECTURES:
        raise NetworkError(f"{where}: unknown architecture {card['architecture']!r}; known: {', '.join(ARCHITECTURES)}")
    classes = card["classes"]
    if (
        not isinstance(classes, list)
        or not classes
        or not all(isinstance(c, str) and c.strip() for c in classes)
        or len(set(classes)) != len(classes)
    ):
        raise NetworkError(
            f'{where}: classes must be a list of distinct names (e.g. ["Mo", "S2", "S"]), got {_shown(classes)}'
        )
    if len(classes) > MAX_CLASSES:
        raise NetworkError(f"{where}: classes: at most {MAX_CLASSES} classes, got {len(classes)}")
    _checked_names(where, classes, check_class_name, "class name")
    if len({c.lower() for c in classes}) != len(classes):
        raise NetworkError(f"{where}: classes must differ in more than case, got {classes!r}")
    if (
        isinstance(card["n_images"], bool)
        or not isinstance(card["n_images"], int)
        or not 1 <= card["n_images"] <= MAX_N_IMAGES
    ):
        raise NetworkError(f"{where}: n_images must be an integer 1-{MAX_N_IMAGES}, got {_shown(card['n_images'])}")
    for key in ("sampling", "normalization_distance"):
        value = card[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            raise NetworkError(f"{where}: {key} must be a finite number > 0 (Å/px, Å), got {_shown(value)}")
        low, high, unit = CARD_RANGES[key]
        if not low <= value <= high:
            raise NetworkError(f"{where}: {key} must be {low:g}-{high:g} {unit}, got {value!r}")
    if not isinstance(card.get("config", {}), dict):
        raise NetworkError(f"{where}: config must be an object of architecture settings, got {card['config']!r}")
    unknown = sorted(set(card.get("config", {})) - set(ARCHITECTURES[card["architecture"]][2]))
    if unknown:
        raise NetworkError(
            f"{where}: unknown settings for {card['architecture']}: {unknown}; known: "
            f"{sorted(ARCHITECTURES[card['architecture']][2])}"
        )
    check_config(card["architecture"], card.get("config", {}), where)
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
    if card.get("name") is not None:
        _checked_names(where, [card["name"]], check_network_name, "name")
    if card.get("domain") is not None:
        Domain.from_dict(card["domain"], where)
