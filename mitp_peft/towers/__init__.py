"""Tower adapters, one small file per backbone family, and the registry that picks them.

Adding a family: write its `TextTower` / `VisionTower` subclasses in a new module (how it embeds, which position it
pools and how), then add its towers' `model_type`s to `TOWERS` and, for a new dual-encoder class, its `model_type` and
`DualEncoderLayout` to `DUAL_ENCODERS`. Encoder layers are found by structure; masks, prompts and the room check are
generic. Run the shared test battery (`tests/test_families.py`) with a tiny config of the new family added to
`FAMILIES` there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, Optional

from torch import nn

from .base import DENSE_MASK_BACKENDS, TextTower, Tower, TowerState, VisionTower
from .bert import AltCLIPTextTower, BertTextTower, ChineseCLIPTextTower, RobertaTextTower
from .clip import CLIPTextTower, CLIPVisionTower
from .dinov2 import Dinov2VisionTower
from .siglip import Siglip2VisionTower, SiglipTextTower, SiglipVisionTower
from .vit import ViTVisionTower


@dataclass(frozen=True)
class DualEncoderLayout:
    """Where a dual-encoder family keeps its towers, its projections into the shared space, and the parameters of
    its image-text logit (scale * cosine + bias, both stored as attributes of the model)."""

    text: str = "text_model"
    vision: str = "vision_model"
    text_projection: Optional[str] = "text_projection"
    vision_projection: Optional[str] = "visual_projection"
    logit_scale: str = "logit_scale"
    """Stored as its logarithm, as CLIP does."""
    logit_bias: Optional[str] = None


CLIP_LAYOUT = DualEncoderLayout()
# SigLIP compares the towers' own outputs (no projections) and adds a learned bias to the logit.
SIGLIP_LAYOUT = DualEncoderLayout(text_projection=None, vision_projection=None, logit_bias="logit_bias")

# Dual encoders by config.model_type.
DUAL_ENCODERS: dict[str, DualEncoderLayout] = {
    "clip": CLIP_LAYOUT,
    "siglip": SIGLIP_LAYOUT,
    "siglip2": SIGLIP_LAYOUT,
    "chinese_clip": CLIP_LAYOUT,
    "altclip": CLIP_LAYOUT,
    "vision-text-dual-encoder": CLIP_LAYOUT,
}

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
    "dinov2": Dinov2VisionTower,
    "dinov2_with_registers": Dinov2VisionTower,
}

HOW_TO_ADD = "the docstring of mitp_peft/towers/__init__.py and the README section 'Supported backbones'"


class TowerPair(NamedTuple):
    text: TextTower
    vision: VisionTower


def resolve_towers(model: nn.Module) -> TowerPair:
    """The tower adapters for a dual encoder, or an error naming what is supported."""
    layout = layout_of(model)
    towers = []
    projections = (("text", layout.text, layout.text_projection), ("vision", layout.vision, layout.vision_projection))
    for modality, path, projection in projections:
        tower = model.get_submodule(path)
        tower_type = tower.config.model_type
        adapter = TOWERS.get(tower_type)
        if adapter is None or adapter.modality != modality:
            supported = sorted(t for t, a in TOWERS.items() if a.modality == modality)
            raise ValueError(
                f"MITP does not support {type(tower).__name__} (model_type={tower_type!r}) as the {modality} tower "
                f"of {type(model).__name__}. Supported {modality} towers: {supported}; to add one see {HOW_TO_ADD}."
            )
        towers.append(adapter(tower, path, None if projection is None else getattr(model, projection)))
    return TowerPair(*towers)


def layout_of(model: nn.Module) -> DualEncoderLayout:
    """The layout of a supported dual encoder, or an error naming what is supported."""
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if model_type not in DUAL_ENCODERS:
        raise ValueError(
            f"MITP does not support {type(model).__name__} (model_type={model_type!r}). Supported dual encoders: "
            f"{list(DUAL_ENCODERS)}. Pass the whole dual encoder (e.g. CLIPModel), not one tower; to add a family "
            f"see {HOW_TO_ADD}."
        )
    return DUAL_ENCODERS[model_type]


def similarity_scale(model: nn.Module) -> tuple[float, float]:
    """The dual encoder's image-text logit = scale * cosine + bias, as its layout declares them."""
    layout = layout_of(model)
    scale = getattr(model, layout.logit_scale).exp().item()
    bias = 0.0 if layout.logit_bias is None else getattr(model, layout.logit_bias).item()
    return scale, bias


__all__ = [
    "DENSE_MASK_BACKENDS",
    "DUAL_ENCODERS",
    "DualEncoderLayout",
    "TOWERS",
    "Tower",
    "TowerPair",
    "TowerState",
    "VisionTower",
    "layout_of",
    "resolve_towers",
    "similarity_scale",
]
