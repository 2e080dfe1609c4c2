"""Install networks trained by ``recipes/issue17/train.sh`` as shipped networks (issue 17).

Copies ``DATA/nets/<trained>.pt`` and its model card into ``src/napari_hrtem/models/weights/<name>``,
with the card's name set to ``<name>`` and its domain computed from the parameter ranges that the
card's exit-wave stores recorded (:func:`napari_hrtem.training.jobs.training_domain`; cards written
before that function existed said Table 1). The weights are not changed (their SHA-256 stays).

Usage::

    python recipes/issue17/install.py DATA_DIR TRAINED=NAME [TRAINED=NAME ...]
    python recipes/issue17/install.py /work/data/issue17b unet-300kv=unet-300kv unet-lv=unet
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from napari_hrtem.models.card import ModelCard
from napari_hrtem.models.registry import WEIGHTS_DIR, sha256
from napari_hrtem.training.jobs import training_domain


def install(data: Path, trained: str, name: str) -> Path:
    card = json.loads((data / "nets" / f"{trained}.json").read_text(encoding="utf-8"))
    weights = data / "nets" / f"{trained}.pt"
    if sha256(weights) != card["sha256"]:
        raise SystemExit(f"{weights}: SHA-256 does not match its card")
    stores = [data / s["store"] for s in card["training"].get("exit_wave_banks", [])]
    if stores and all(store.exists() for store in stores):
        import zarr

        ranges = [dict(zarr.open_group(str(store), mode="r").attrs["recipe"]).get("config") for store in stores]
        card["domain"] = training_domain(ranges, card["sampling"], [s.name for s in stores]).to_dict()
    else:  # stores made elsewhere (recipes/gpu), or none (an interpolation): the card's own domain
        why = "its stores are not here" if stores else "its card names no exit-wave stores (an interpolation)"
        print(f"{trained}: {why}; the card's domain stays")
    card["name"] = name
    domain = ModelCard.from_dict(card).domain  # the card checked before anything is written
    shutil.copyfile(weights, WEIGHTS_DIR / f"{name}.pt")
    out = WEIGHTS_DIR / f"{name}.json"
    out.write_text(json.dumps(card, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"{trained} -> {out.name}: {domain.energy[0]:g}-{domain.energy[1]:g} kV, stores {[s.name for s in stores]}")
    return out


if __name__ == "__main__":
    folder = Path(sys.argv[1])
    for pair in sys.argv[2:]:
        source, _, target = pair.partition("=")
        install(folder, source, target or source)
