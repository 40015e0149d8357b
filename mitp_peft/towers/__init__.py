"""Tower adapters, one small file per backbone family, and the registry that picks them.

To add a family: write its `Tower` subclasses in a new module and add one line to `FAMILIES`.
"""

from __future__ import annotations

from typing import NamedTuple

from torch import nn

from .base import DENSE_MASK_BACKENDS, Tower, TowerState
from .clip import CLIPTextTower, CLIPVisionTower

ADDING_A_FAMILY = "mitp_peft/towers/__init__.py (docstring) and the README section 'Supported backbones'"


class Family(NamedTuple):
    text: type[Tower]
    vision: type[Tower]
    text_path: str
    vision_path: str
    layers_path: str


# model_type -> how to drive its towers.
FAMILIES: dict[str, Family] = {
    "clip": Family(CLIPTextTower, CLIPVisionTower, "text_model", "vision_model", "encoder.layers"),
}


class TowerPair(NamedTuple):
    text: Tower
    vision: Tower


def resolve_towers(model: nn.Module) -> TowerPair:
    """The tower adapters for a dual encoder, or an error naming what is supported."""
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    family = FAMILIES.get(model_type)
    if family is None:
        raise ValueError(
            f"MITP does not support {type(model).__name__} (model_type={model_type!r}). Supported dual encoders: "
            f"{sorted(FAMILIES)}. Pass the whole dual encoder (e.g. CLIPModel), not one tower; to add a family see "
            f"{ADDING_A_FAMILY}."
        )
    text = model.get_submodule(family.text_path)
    vision = model.get_submodule(family.vision_path)
    return TowerPair(
        family.text(text, family.text_path, family.layers_path),
        family.vision(vision, family.vision_path, family.layers_path),
    )


__all__ = ["DENSE_MASK_BACKENDS", "FAMILIES", "Tower", "TowerPair", "TowerState", "resolve_towers"]
