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
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from napari_hrtem.models.card import ARCHITECTURES, ModelCard, NetworkError, check_card  # noqa: F401  (re-exported)

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


@dataclass
class Network:
    """A network on disk: its name, model card and weight file."""

    name: str
    card: ModelCard
    weights: Path

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
        try:
            state = torch.load(self.weights, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise NetworkError(f"{self.weights.name}: could not be loaded as weights: {exc}") from exc
        model = build_model(
            self.card.architecture,
            n_images=self.card.n_images,
            n_classes=len(self.card.classes) + 1,
            **self.card.config,
        )
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
    try:
        card = json.loads(card_path.read_text())
    except (OSError, ValueError) as exc:
        raise NetworkError(f"{card_path.name}: not a readable model card: {exc}") from exc
    weights = card_path.with_suffix(".pt")
    card = _finished_card(card_path, weights, card)
    model_card = ModelCard.from_dict(card, card_path.name)
    if not weights.is_file():
        raise NetworkError(f"{card_path.name}: weight file {weights.name} not found")
    return Network(name=model_card.name or card_path.stem, card=model_card, weights=weights)


def _finished_card(card_path: Path, weights: Path, card: Any) -> Any:
    """The card to use: ``card``, or the complete new card that :func:`napari_hrtem.training.trainer.save_network`
    left as ``.<name>.json.tmp`` when it was killed between renaming the new weights and the new card
    (recognised by its SHA-256 matching the weights on disk); that card is then put in place."""
    pending = card_path.with_name(f".{card_path.name}.tmp")
    if not pending.is_file() or not weights.is_file() or not isinstance(card, dict):
        return card
    try:
        new = json.loads(pending.read_text())
    except (OSError, ValueError):
        return card
    digest = sha256(weights)
    if isinstance(new, dict) and new.get("sha256") == digest and card.get("sha256") != digest:
        try:
            pending.replace(card_path)
        except OSError:
            pass
        return new
    return card


def available_networks(extra_dirs: Sequence[str | os.PathLike[str]] = ()) -> dict[str, Network]:
    """Shipped networks, then the user's (:func:`user_networks_dir`), then ``extra_dirs``.

    Cards that cannot be read are skipped (a later name overrides an earlier one).
    """
    networks: dict[str, Network] = {}
    for folder in (WEIGHTS_DIR, user_networks_dir(), *map(Path, extra_dirs)):
        if not folder.is_dir():
            continue
        for card_path in sorted(folder.glob("*.json")):
            try:
                net = read_network(card_path)
            except NetworkError:
                continue
            networks[net.name] = net
    return networks


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
    networks = available_networks(extra_dirs)
    if text not in networks:
        raise NetworkError(
            f"unknown network {text!r}; available: {', '.join(networks) or 'none (the shipped weights are missing)'}"
        )
    return networks[text]
