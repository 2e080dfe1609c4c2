"""Registry of architectures and of the available networks (weights + model cards).

A network is a weight file ``<name>.pt`` (a PyTorch ``state_dict``, loaded with
``weights_only=True``: loading never runs code) next to its model card ``<name>.json``, which
records the architecture and its configuration, the classes, what the network expects of its
input (focal series length, defocus step, sampling, normalization distance, support filter), the
training recipe and seed, the validation atomic F1 per class and the SHA-256 of the weights.
Shipped networks live in ``models/weights/``; networks a user trains go to the user folder
(:func:`user_networks_dir`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from napari_hrtem.io.limits import json_depth
from napari_hrtem.models.card import ARCHITECTURES, ModelCard, NetworkError, check_card  # noqa: F401  (re-exported)
from napari_hrtem.names import check_network_name, free_network_name, shipped_names

WEIGHTS_DIR = Path(__file__).parent / "weights"


def build_model(architecture: str, n_images: int = 3, n_classes: int = 4, **config: Any) -> Any:
    """Construct an untrained model of a registered architecture.

    Parameters
    ----------
    architecture : str
        A key of :data:`ARCHITECTURES`.
    n_images, n_classes : int
        Input channels (focal series length) and output channels (classes + background).
    **config
        Overrides of the architecture's default configuration.

    Raises
    ------
    NetworkError
        For an unknown architecture or configuration key.
    """
    import importlib

    if architecture not in ARCHITECTURES:
        raise NetworkError(f"unknown architecture {architecture!r}; known: {', '.join(ARCHITECTURES)}")
    module, cls, defaults = ARCHITECTURES[architecture]
    unknown = set(config) - set(defaults)
    if unknown:
        raise NetworkError(f"unknown settings for {architecture}: {sorted(unknown)}")
    model_cls = getattr(importlib.import_module(module), cls)
    return model_cls(n_images=n_images, n_classes=n_classes, **{**defaults, **config})


def parameter_count(model: Any) -> int:
    """Number of trainable parameters of a torch module."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def select_device(device: str | None = None) -> Any:
    """``torch.device``: the one asked for, else CUDA when available, else the CPU."""
    import torch

    if device:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


#: Words of the errors that PyTorch (CUDA, the CPU allocator, oneDNN) raises when memory runs out.
OUT_OF_MEMORY_WORDS = (
    "out of memory",
    "can't allocate memory",
    "not enough memory",
    "bad_alloc",
    # oneDNN (CPU convolutions) when its workspace allocation fails:
    "could not execute a primitive",
    "could not create a primitive",
    # cuBLAS / cuDNN when their workspace cannot be allocated (CUBLAS_STATUS_ALLOC_FAILED, ...):
    "status_alloc_failed",
)


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether an exception means that memory ran out (so a smaller batch or tile may fit).

    True for :class:`MemoryError`, ``torch.OutOfMemoryError`` (CUDA) and a ``RuntimeError``
    whose message names an allocation failure (:data:`OUT_OF_MEMORY_WORDS`: the CPU allocator,
    oneDNN's workspace). Used by inference (tiles halved) and the trainer (largest batch that fits).
    """
    if isinstance(exc, MemoryError):
        return True
    import sys

    torch = sys.modules.get("torch")
    if torch is not None:
        oom = getattr(torch.cuda, "OutOfMemoryError", None) or getattr(torch, "OutOfMemoryError", None)
        if oom is not None and isinstance(exc, oom):
            return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and any(words in text for words in OUT_OF_MEMORY_WORDS)


def user_networks_dir() -> Path:
    """Folder of the user's own trained networks (platformdirs user data dir)."""
    from platformdirs import user_data_dir

    return Path(user_data_dir("napari-hrtem", appauthor=False)) / "networks"


def sha256(path: Path) -> str:
    """Hex SHA-256 of a file."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def check_weight_file(path: Path, expected: int) -> None:
    """Refuse a weight file larger than the model of its card needs, before ``torch.load`` reads it.

    ``expected`` is the bytes of the card's model's ``state_dict``; the file (and, for PyTorch's zip
    format, the members once uncompressed: a deflated member inflated a 2.7 MB file to 1.76 GB) may hold
    at most 1.5 times that plus 1 MiB of structure.

    Raises
    ------
    NetworkError
        Naming the file, its size and the size the card's model needs.
    """
    import zipfile

    from napari_hrtem.io.limits import human_bytes

    path = Path(path)
    limit = int(1.5 * expected) + 2**20
    size = path.stat().st_size
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as zf:
                size = max(size, sum(i.file_size for i in zf.infolist()))
        except (zipfile.BadZipFile, OSError, ValueError):
            pass  # torch.load names the problem
    if size > limit:
        raise NetworkError(
            f"{path.name}: holds {human_bytes(size)} (uncompressed), more than the {human_bytes(limit)} that the "
            f"model of its card can need ({human_bytes(expected)} of parameters): not these weights"
        )


@dataclass
class Network:
    """A network on disk: its name, model card and weight file.

    ``renamed_from`` is the card's own name when the network is listed under another one (a user
    card with a shipped network's name: :func:`scan_networks`), else None.
    """

    name: str
    card: ModelCard
    weights: Path
    renamed_from: str | None = None

    @property
    def origin(self) -> str:
        """``"shipped"`` (``models/weights``), ``"user"`` (:func:`user_networks_dir`) or ``"folder"``
        (another folder: ``extra_dirs``, a path)."""
        try:
            folder = self.weights.parent.resolve()
            if folder == WEIGHTS_DIR.resolve():
                return "shipped"
            if folder == user_networks_dir().resolve():
                return "user"
        except OSError:
            pass
        return "folder"

    def load(self, device=None):
        """The model in eval mode on ``device`` (default: CUDA when available, else CPU).

        Raises
        ------
        NetworkError
            If the weight file's SHA-256 differs from the card's (or the card has none) or the
            weights do not fit the card's architecture, input length and classes. The file is
            read with ``torch.load(weights_only=True)``: loading never runs code.
        """
        import torch

        if sha256(self.weights) != self.card.sha256:
            raise NetworkError(f"{self.weights.name}: SHA-256 of the weights does not match its model card")
        model = build_model(
            self.card.architecture,
            n_images=self.card.n_images,
            n_classes=len(self.card.classes) + 1,
            **self.card.config,
        )
        check_weight_file(self.weights, sum(t.nbytes for t in model.state_dict().values()))
        try:
            state = torch.load(self.weights, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise NetworkError(f"{self.weights.name}: could not be loaded as weights: {exc}") from exc
        try:
            model.load_state_dict(state)
        except Exception as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise NetworkError(
                f"{self.weights.name}: weights do not match the model card ({self.card.architecture} "
                f"{self.card.config}, {self.card.n_images} images, "
                f"{len(self.card.classes)} classes + background): {first}"
            ) from exc
        return model.to(select_device(device)).eval()


def read_network(card_path: Path) -> Network:
    """Read a model card (``<name>.json``) and locate its weights (``<name>.pt``).

    Raises
    ------
    NetworkError
        If the card is not valid JSON, fails :func:`check_card` (missing keys, bad values, no
        SHA-256 of the weights), or the weight file is missing.
    """
    card_path = Path(card_path)
    card = read_card_json(card_path)
    weights = card_path.with_suffix(".pt")
    card = _finished_card(card_path, weights, card)
    model_card = ModelCard.from_dict(card, card_path.name)
    if not weights.is_file():
        raise NetworkError(f"{card_path.name}: weight file {weights.name} not found")
    name = model_card.name or card_path.stem
    try:
        check_network_name(name, "network name (the card's name, else its file name)")
    except ValueError as exc:
        raise NetworkError(f"{card_path.name}: {exc}") from None
    return Network(name=name, card=model_card, weights=weights)


#: Largest model card file, bytes, and deepest JSON nesting a card may have (checked before parsing).
MAX_CARD_BYTES = 1_000_000
MAX_CARD_DEPTH = 32


def read_card_json(card_path: str | os.PathLike[str]) -> Any:
    """The decoded JSON of a model card file, its size (:data:`MAX_CARD_BYTES`) and nesting depth
    (:data:`MAX_CARD_DEPTH`) checked before it is parsed.

    Raises
    ------
    NetworkError
        Naming the file: unreadable, too large, too deeply nested, not UTF-8 or not JSON.
    """
    card_path = Path(card_path)
    try:
        size = card_path.stat().st_size
        if size > MAX_CARD_BYTES:
            raise NetworkError(
                f"{card_path.name}: not a model card: {size} bytes, more than the {MAX_CARD_BYTES} a card may have"
            )
        with open(card_path, "rb") as fh:
            data = fh.read(MAX_CARD_BYTES + 1)
        if len(data) > MAX_CARD_BYTES:
            raise NetworkError(f"{card_path.name}: not a model card: more than {MAX_CARD_BYTES} bytes")
        text = data.decode("utf-8")
        if json_depth(text) > MAX_CARD_DEPTH:
            raise NetworkError(f"{card_path.name}: not a model card: JSON nested deeper than {MAX_CARD_DEPTH} levels")
        return json.loads(text)
    except (OSError, ValueError, RecursionError) as exc:
        if isinstance(exc, NetworkError):
            raise
        first = " ".join(str(exc).split())[:200]
        raise NetworkError(f"{card_path.name}: not a readable model card: {first}") from exc


def _finished_card(card_path: Path, weights: Path, card: Any) -> Any:
    """The card to use: ``card``, or the complete new card that :func:`napari_hrtem.training.trainer.save_network`
    left as ``.<name>.json.tmp`` when it was killed between renaming the new weights and the new card
    (recognised by its SHA-256 matching the weights on disk); that card is then put in place."""
    pending = card_path.with_name(f".{card_path.name}.tmp")
    if not pending.is_file() or not weights.is_file() or not isinstance(card, dict):
        return card
    try:
        new = read_card_json(pending)
    except NetworkError:
        return card
    digest = sha256(weights)
    if isinstance(new, dict) and new.get("sha256") == digest and card.get("sha256") != digest:
        try:
            pending.replace(card_path)
        except OSError:
            pass
        return new
    return card


@dataclass
class NetworkScan:
    """What :func:`scan_networks` found: the usable networks and the cards it skipped.

    Attributes
    ----------
    networks : dict
        Name -> :class:`Network`.
    broken : list of (Path, str)
        Cards that cannot be used and why (one line each).
    ignored : list of (Path, str)
        Readable cards that are not used and why (none at present: a user card with a shipped
        network's name is listed under a distinct name, see ``renamed``).
    renamed : list of (Path, str, str)
        Cards listed under another name than their own: the card, the name it is listed under
        (in ``networks``) and why (a user card with a shipped network's name).
    """

    networks: dict[str, Network]
    broken: list[tuple[Path, str]]
    ignored: list[tuple[Path, str]]
    renamed: list[tuple[Path, str, str]] = field(default_factory=list)


_WARNED: set[tuple[str, int, int]] = set()


def scan_networks(extra_dirs: Sequence[str | os.PathLike[str]] = ()) -> NetworkScan:
    """Shipped networks, then the user's (:func:`user_networks_dir`), then ``extra_dirs``; never raises
    for a card.

    A card that cannot be read (bad JSON, too large or deep, failing :func:`check_card`, an unsafe
    or reserved name, a missing weight file, any other error) is listed in ``broken`` with why.

    Shipped names are kept: a card outside the shipped folder whose network name is a shipped
    network's (any case; saved by an older version, or copied there by hand) never replaces the
    shipped network and is not hidden either: it is listed under a distinct free name,
    ``<name>-user`` (``<name>-user-2``, ... when taken; :func:`napari_hrtem.names.free_network_name`),
    with ``renamed_from`` set, and in ``renamed`` with why. ``load_network("unet")`` stays the
    shipped U-Net; ``load_network("unet-user")`` is the user's. Otherwise a later name overrides an
    earlier one.
    """
    networks: dict[str, Network] = {}
    broken: list[tuple[Path, str]] = []
    ignored: list[tuple[Path, str]] = []
    clashing: list[tuple[Path, Network]] = []
    shipped = shipped_names()
    for folder in (WEIGHTS_DIR, user_networks_dir(), *map(Path, extra_dirs)):
        try:
            if not folder.is_dir():
                continue
            cards = sorted(p for p in folder.glob("*.json") if not p.name.startswith("."))
        except OSError as exc:
            broken.append((folder, f"{folder}: cannot be listed: {exc}"))
            continue
        for card_path in cards:
            try:
                net = read_network(card_path)
            except NetworkError as exc:
                broken.append((card_path, " ".join(str(exc).split())))
                continue
            except Exception as exc:  # one bad card never breaks the list
                why = " ".join(str(exc).split())[:200] or type(exc).__name__
                broken.append((card_path, f"{card_path.name}: not a usable model card: {why}"))
                continue
            if folder != WEIGHTS_DIR and net.name.lower() in shipped:
                clashing.append((card_path, net))  # named once every other name is known
                continue
            networks[net.name] = net
    renamed: list[tuple[Path, str, str]] = []
    for card_path, net in clashing:
        new_name = free_network_name(f"{net.name.lower()}-user", [*networks, *(n.lower() for n in networks)])
        why = (
            f"{card_path.name}: its network name {net.name!r} is a shipped network's; listed as {new_name!r} "
            "(the shipped network is kept)"
        )
        networks[new_name] = replace(net, name=new_name, renamed_from=net.name)
        renamed.append((card_path, new_name, why))
    for path, why, what in [(p, w, "skipped") for p, w in broken + ignored] + [
        (p, w, "renamed") for p, _, w in renamed
    ]:
        try:
            stat = path.stat()
            key = (str(path), stat.st_mtime_ns, stat.st_size)
        except OSError:
            key = (str(path), 0, 0)
        if key not in _WARNED:
            _WARNED.add(key)
            logging.getLogger(__name__).warning("%s network card %s: %s", what, path, why)
    return NetworkScan(networks, broken, ignored, renamed)


@dataclass(frozen=True)
class NetworkInfo:
    """What a network list shows of a network (:func:`network_info`): all from its model card.

    Attributes
    ----------
    name : str
        The name it is listed and loaded under.
    origin : str
        ``"shipped"``, ``"user"`` or ``"folder"`` (:attr:`Network.origin`).
    f1 : float or None
        Overall validation atomic F1 (None: the card records none).
    energy : float or None
        Beam energy of the training images, kV (the card's domain; None: it does not say). A
        range is given by its middle (``energy_range`` gives it whole).
    sampling : float
        Å/px of the training images.
    architecture : str
        ``"unet"``, ``"unetpp"`` or ``"msdnet"``.
    renamed_from : str or None
        The card's own name when listed under another (a user card with a shipped name).
    details : str
        Several lines of the card: architecture, parameters, classes, input, training, validation
        F1 per class, threshold, the weight file.
    """

    name: str
    origin: str
    f1: float | None
    energy: float | None
    sampling: float
    architecture: str
    renamed_from: str | None
    details: str
    energy_range: tuple[float, float] | None = None

    @property
    def label(self) -> str:
        """One line, e.g. ``"unet — shipped, F1 0.991, 50 kV, 0.225 Å/px"``."""
        parts = [self.origin + (f" (its card says {self.renamed_from!r})" if self.renamed_from else "")]
        parts.append("F1 n/a" if self.f1 is None else f"F1 {self.f1:.3f}")
        if self.energy_range is not None:
            parts.append(energy_range_label(self.energy_range))
        elif self.energy is not None:
            parts.append(f"{self.energy:g} kV")
        parts.append(f"{self.sampling:.3g} Å/px")
        return f"{self.name} — {', '.join(parts)}"


def energy_range_label(span: tuple[float, float]) -> str:
    """``"80 kV"`` or ``"50-80 kV"``."""
    return f"{span[0]:g} kV" if span[0] == span[1] else f"{span[0]:g}-{span[1]:g} kV"


def network_info(network: Network) -> NetworkInfo:
    """The facts of a network that a list of networks shows (:class:`NetworkInfo`), from its card.

    Reads nothing but the card already in ``network`` (no weights, no torch).
    """
    card = network.card
    scores = (card.validation or {}).get("scores") or {}
    overall = scores.get("overall") if isinstance(scores, dict) else None
    f1 = overall.get("f1") if isinstance(overall, dict) else None
    f1 = float(f1) if isinstance(f1, (int, float)) and not isinstance(f1, bool) else None
    energy, energy_range = None, None
    if card.domain is not None and card.domain.energy is not None:
        energy = round(float(sum(card.domain.energy)) / 2, 3)
        energy_range = (float(card.domain.energy[0]), float(card.domain.energy[1]))
    per_class = ", ".join(
        f"{k} {v['f1']:.3f}"
        for k, v in (scores.items() if isinstance(scores, dict) else [])
        if isinstance(v, dict) and isinstance(v.get("f1"), (int, float)) and k != "overall"
    )
    training = card.training or {}
    trained = ", ".join(
        f"{k} {training[k]}" for k in ("steps", "batch_size", "lr", "seed", "made_with") if k in training
    )
    lines = [
        f"{network.name} ({network.origin} network"
        + (f"; its card names it {network.renamed_from!r}, a shipped network's name" if network.renamed_from else "")
        + ")",
        f"architecture {card.architecture} {card.config or ''}".rstrip()
        + (f", {card.parameters} parameters" if card.parameters is not None else ""),
        f"classes {'/'.join(card.classes)}; input {card.n_images} images, defocus step {card.defocus_step:g} Å, "
        f"{card.sampling:g} Å/px"
        + (f", trained at {energy_range_label(energy_range)}" if energy_range is not None else "")
        + f", {card.material}",
        "validation atomic F1 "
        + (f"{f1:.3f}" + (f" ({per_class})" if per_class else "") if f1 is not None else "n/a")
        + f"; column probability threshold {card.column_threshold:g}",
    ]
    if trained:
        lines.append(f"training: {trained}")
    lines.append(f"weights: {network.weights}")
    return NetworkInfo(
        name=network.name,
        origin=network.origin,
        f1=f1,
        energy=energy,
        sampling=float(card.sampling),
        architecture=card.architecture,
        renamed_from=network.renamed_from,
        details="\n".join(lines),
        energy_range=energy_range,
    )


def available_networks(extra_dirs: Sequence[str | os.PathLike[str]] = ()) -> dict[str, Network]:
    """Shipped networks, then the user's (:func:`user_networks_dir`), then ``extra_dirs``.

    Cards that cannot be used are skipped with a warning (logged once per file), never an error;
    a user card with a shipped network's name is listed under a distinct name (``unet-user``; see
    :func:`scan_networks`, which also says why). A later name overrides an earlier one.
    """
    return scan_networks(extra_dirs).networks


#: Beam energy (kV) whose networks run when neither the file nor the user gives one: the shipped
#: networks for the 50-80 kV of TMD work on aberration-corrected instruments.
DEFAULT_ENERGY_KV = 50.0


def energy_distance(network: Network, energy_kv: float) -> float:
    """How far a beam energy lies from the energies a network was trained at, kV.

    0 inside the card's domain energy range, else the distance to its nearer end; ``inf`` when
    the card records no energy.
    """
    domain = network.card.domain
    if domain is None or domain.energy is None:
        return float("inf")
    return _range_distance(*domain.energy, energy_kv)


def _range_distance(low: float, high: float, value: float) -> float:
    """0 when ``low <= value <= high``, else the distance to the nearer end."""
    return float(max(low - value, value - high, 0.0))


@dataclass(frozen=True)
class NetworkSet:
    """A set of shipped networks that run together on series of a range of beam energies.

    Attributes
    ----------
    names : tuple of str
        The networks' names, sorted.
    energy : tuple of float
        ``(low, high)`` beam energy in kV where the set is chosen: the energies that all its networks
        were trained at (each card's ``domain.energy``; their union where they share none).
    combiner : str or None
        The file name of the shipped consensus combiner that defines the set (None: a set of networks
        whose energy ranges overlap).
    """

    names: tuple[str, ...]
    energy: tuple[float, float]
    combiner: str | None = None

    def distance(self, energy_kv: float) -> float:
        """How far ``energy_kv`` lies from :attr:`energy`, kV (0 inside)."""
        return _range_distance(*self.energy, energy_kv)

    @property
    def label(self) -> str:
        """One line, e.g. ``"80 kV: msdnet, unet-80kv, unetpp-80kv (learned consensus consensus-80kv.json)"``."""
        rule = f" (learned consensus {self.combiner})" if self.combiner else ""
        return f"{energy_range_label(self.energy)}: {', '.join(self.names)}{rule}"


def network_sets(available: dict[str, Network] | None = None) -> list[NetworkSet]:
    """The sets of shipped networks, by beam energy.

    A shipped consensus combiner (:func:`napari_hrtem.analysis.combiner.shipped_combiner`) was trained
    with exactly its networks, so its networks form a set, chosen at the energies all of them were
    trained at; a network may belong to several (the MSD-net of the 50-80 kV set also serves the 80 kV
    set). The shipped networks of no installed combiner form sets by energy: those whose ranges overlap
    form one, whose range is the union of theirs.

    Parameters
    ----------
    available : dict, optional
        The networks to choose from (:func:`available_networks`, already read; default: read now). Only
        the shipped ones count.

    Returns
    -------
    list of NetworkSet
        Sorted by energy range. Networks whose cards record no energy are in none.
    """
    from napari_hrtem.analysis.combiner import shipped_combiners

    found = {
        name: net
        for name, net in (available_networks() if available is None else available).items()
        if net.origin == "shipped" and net.card.domain is not None and net.card.domain.energy is not None
    }

    def span(net: Network) -> tuple[float, float]:
        energy = net.card.domain.energy if net.card.domain is not None else None
        assert energy is not None  # found holds only networks whose cards record an energy
        return float(energy[0]), float(energy[1])

    sets: list[NetworkSet] = []
    in_a_set: set[str] = set()
    for filename, combiner in shipped_combiners():
        nets = [found[name] for name in combiner.networks if name in found]
        if not combiner.matches(nets):
            continue  # a network of it is missing, or not the weights it was trained with
        spans = [span(net) for net in nets]
        low, high = max(s[0] for s in spans), min(s[1] for s in spans)
        if low > high:
            low, high = min(s[0] for s in spans), max(s[1] for s in spans)
        sets.append(NetworkSet(tuple(sorted(combiner.networks)), (low, high), filename))
        in_a_set.update(combiner.networks)
    merged: list[tuple[float, float, set[str]]] = []  # (low kV, high kV, names), ranges that overlap merged
    for (low, high), name in sorted((span(net), name) for name, net in found.items() if name not in in_a_set):
        if merged and low <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], high), merged[-1][2] | {name})
        else:
            merged.append((low, high, {name}))
    sets += [NetworkSet(tuple(sorted(names)), (low, high)) for low, high, names in merged]
    return sorted(sets, key=lambda s: (s.energy, s.names))


def shipped_networks(energy: float | None = None, available: dict[str, Network] | None = None) -> list[Network]:
    """The shipped networks for a beam energy: the set trained nearest to it.

    The shipped networks come in sets by beam energy (:func:`network_sets`: a shipped consensus
    combiner's networks, or networks whose energy ranges overlap). The set whose range holds the energy
    is chosen, the narrowest of several (the 80 kV set at 80 kV, not the 50-80 kV one), else the nearest
    one (the narrower, then the lower one of two equally near). A network of the set whose own range
    misses the energy still runs; the prediction's domain warnings say so.

    Parameters
    ----------
    energy : float, optional
        Beam energy in eV (the focal series' or the user's); None: :data:`DEFAULT_ENERGY_KV`.
    available : dict, optional
        The networks to choose from (:func:`available_networks`, already read; default: read now).

    Returns
    -------
    list of Network
        In the order of :func:`available_networks` (by name). All the shipped networks when no
        card records an energy.

    Raises
    ------
    NetworkError
        If no shipped network is installed.
    """
    available = available_networks() if available is None else available
    found = [net for net in available.values() if net.origin == "shipped"]
    if not found:
        raise NetworkError("no networks found (the shipped weights are missing from the installation)")
    kv = DEFAULT_ENERGY_KV if energy is None else float(energy) / 1e3
    sets = network_sets(available)
    if not sets:
        return found
    chosen = min(sets, key=lambda s: (s.distance(kv), s.energy[1] - s.energy[0], s.energy)).names
    return [net for net in found if net.name in chosen]


def load_network(
    name_or_path: Network | str | os.PathLike[str], *, extra_dirs: Sequence[str | os.PathLike[str]] = ()
) -> Network:
    """A shipped or user network, by name or by path.

    Parameters
    ----------
    name_or_path : str or path-like or Network
        A network name (see :func:`available_networks`: the shipped ``"unet"``, ``"unetpp"``,
        ``"msdnet"`` and the user's own), a model card ``<name>.json``, its weights
        ``<name>.pt``, or a folder holding exactly one model card. A :class:`Network` is
        returned as it is.
    extra_dirs : sequence of path-like
        More folders to search for a name.

    Returns
    -------
    Network
        The network's name, model card (:class:`ModelCard`) and weight file. The weights are
        read (``torch.load(weights_only=True)``, after their SHA-256 is checked against the
        card) by :meth:`Network.load`.

    Raises
    ------
    NetworkError
        If no network has that name (the message lists the available ones), or the card or
        weights are missing, unreadable or do not fit.
    """
    if isinstance(name_or_path, Network):
        return name_or_path
    text = os.fspath(name_or_path)
    path = Path(text)
    looks_like_path = path.suffix in (".json", ".pt") or os.sep in text or path.is_dir()
    if looks_like_path:
        if path.is_dir():
            cards = sorted(p for p in path.glob("*.json") if not p.name.startswith("."))
            if len(cards) != 1:
                raise NetworkError(
                    f"{path}: holds {len(cards)} model cards (*.json); give the card's path"
                    + (f", one of {', '.join(c.name for c in cards)}" if cards else "")
                )
            path = cards[0]
        if not path.with_suffix(".json").is_file():
            raise NetworkError(f"{path}: no model card {path.with_suffix('.json').name} found")
        return read_network(path.with_suffix(".json"))
    scan = scan_networks(extra_dirs)
    networks = scan.networks
    if text not in networks:
        for card_path, why in scan.broken + scan.ignored:
            if card_path.stem == text:
                raise NetworkError(f"network {text!r} cannot be used: {why}")
        raise NetworkError(
            f"unknown network {text!r}; available: {', '.join(networks) or 'none (the shipped weights are missing)'}"
        )
    return networks[text]
