"""Tower adapters, one small file per backbone family, and the registry that picks them.

Adding a family: write its `TextTower` / `VisionTower` subclasses in a new module (how it embeds, which position it
pools and how), then add its towers' `model_type`s to `TOWERS` and, for a new dual-encoder class, its `model_type` to
`DUAL_ENCODERS`. Encoder layers are found by structure; masks, prompts and the room check are generic. Run the
shared test battery (`tests/test_families.py`) with a tiny config of the new family added to `FAMILIES` there.
"""

from __future__ import annotations

from typing import NamedTuple

from torch import nn

from .base import DENSE_MASK_BACKENDS, TextTower, Tower, TowerState, VisionTower
from .bert import AltCLIPTextTower, BertTextTower, ChineseCLIPTextTower, RobertaTextTower
from .clip import CLIPTextTower, CLIPVisionTower
from .siglip import Siglip2VisionTower, SiglipTextTower, SiglipVisionTower
from .vit import ViTVisionTower

# Dual encoders (by config.model_type) whose towers sit at `text_model` and `vision_model`.
DUAL_ENCODERS = ("clip", "siglip", "siglip2", "chinese_clip", "altclip", "vision-text-dual-encoder")

# A tower's config.model_type -> its adapter.
TOWERS: dict[str, type[Tower]] = {
    "clip_text_model": CLIPTextTower,
    "clip_vision_model": CLIPVisionTower,
    "siglip_text_model": SiglipTextTower,
    "siglip_vision_model": SiglipVisionTower,
    "siglip2_text_model": SiglipTextTower,
    "siglip2_vision_model": Siglip2VisionTower,
    "chinese_clip_text_model": ChineseCLIPTextTower,
    "chinese_clip_vision_model": CLIPVisionTower,
    "altclip_text_model": AltCLIPTextTower,
    "altclip_vision_model": CLIPVisionTower,
    "bert": BertTextTower,
    "roberta": RobertaTextTower,
    "xlm-roberta": RobertaTextTower,
    "vit": ViTVisionTower,
    "deit": ViTVisionTower,
}

HOW_TO_ADD = "the docstring of mitp_peft/towers/__init__.py and the README section 'Supported backbones'"


class TowerPair(NamedTuple):
    text: TextTower
    vision: VisionTower


def resolve_towers(model: nn.Module) -> TowerPair:
    """The tower adapters for a dual encoder, or an error naming what is supported."""
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if model_type not in DUAL_ENCODERS:
        raise ValueError(
            f"MITP does not support {type(model).__name__} (model_type={model_type!r}). Supported dual encoders: "
            f"{list(DUAL_ENCODERS)}. Pass the whole dual encoder (e.g. CLIPModel), not one tower; to add a family "
            f"see {HOW_TO_ADD}."
        )
    towers = []
    projections = (("text_model", "text", "text_projection"), ("vision_model", "vision", "visual_projection"))
    for path, modality, projection in projections:
        tower = model.get_submodule(path)
        tower_type = tower.config.model_type
        adapter = TOWERS.get(tower_type)
        if adapter is None or adapter.modality != modality:
            supported = sorted(t for t, a in TOWERS.items() if a.modality == modality)
            raise ValueError(
                f"MITP does not support {type(tower).__name__} (model_type={tower_type!r}) as the {modality} tower "
                f"of {type(model).__name__}. Supported {modality} towers: {supported}; to add one see {HOW_TO_ADD}."
            )
        towers.append(adapter(tower, path, getattr(model, projection, None)))
    return TowerPair(*towers)


def similarity_scale(model: nn.Module) -> tuple[float, float]:
    """The dual encoder's image-text logit = scale * cosine + bias (bias: SigLIP's; 0 for CLIP-style models)."""
    scale = model.logit_scale.exp().item()
    bias = model.logit_bias.item() if getattr(model, "logit_bias", None) is not None else 0.0
    return scale, bias


__all__ = [
    "DENSE_MASK_BACKENDS",
    "DUAL_ENCODERS",
    "TOWERS",
    "Tower",
    "TowerPair",
    "TowerState",
    "resolve_towers",
    "similarity_scale",
]
