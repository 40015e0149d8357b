"""Where an adapter sits on a backbone: its towers, its interaction layers and widths, fixed against the backbone
(and checked against the one it was built for) before anything is created."""

from __future__ import annotations

from typing import Any

from torch import nn

from ..towers import DENSE_MASK_BACKENDS, TowerPair, resolve_towers
from .built_for import check_built_for, fingerprint
from .config import DEFAULT_NUM_INTERACTION_LAYERS, MITPConfig
from .forward import backbone_class


def place(model: nn.Module, config: MITPConfig) -> tuple[TowerPair, dict[str, Any]]:
    """The backbone's towers and what an adapter built for it records, with the config's layers fixed against it;
    or an error that names the mismatch."""
    towers = resolve_towers(model)
    built_for = {
        "backbone": backbone_class(model).__name__,
        "parameters": sum(p.numel() for p in model.parameters()),
        "text": towers.text.describe(),
        "vision": towers.vision.describe(),
        "fingerprint": fingerprint(model),
    }
    check_built_for(config, built_for, getattr(model, "name_or_path", None))
    for tower in towers:
        if tower.needs_mask and tower.attn_implementation not in DENSE_MASK_BACKENDS:
            raise ValueError(tower.unsupported_backend_message())
    resolve_layers(config, towers.text.num_layers, towers.vision.num_layers)
    resolve_widths(config, towers.text.hidden_size)
    towers.text.check_room(config.prompt_length)
    return towers, built_for


def default_widths(text_width: int) -> tuple[int, int]:
    """The default (translator, MLP head) hidden widths for a text tower of this width: a third of it, both.

    On CLIP ViT-L/14 (text width 768) that is 256, and the adapter, its head reading the hub memory, has the paper's
    budget of about 2.0M parameters (2,066,277 with 101 classes); on smaller backbones it shrinks with them, staying
    under 1% of them.
    """
    width = max(1, round(text_width / 3))
    return width, width


def resolve_widths(config: MITPConfig, text_width: int) -> None:
    """Fix the config's unset hidden widths for this backbone, so a saved adapter names them."""
    translator, head = default_widths(text_width)
    config.translator_hidden_size = config.translator_hidden_size or translator
    config.head_hidden_size = config.head_hidden_size or head


def resolve_layers(config: MITPConfig, num_text_layers: int, num_vision_layers: int) -> None:
    """Fix the config's interaction layers against tower depths, or explain why they don't fit."""
    if config.text_layers is None:
        k = config.num_interaction_layers or DEFAULT_NUM_INTERACTION_LAYERS
        most = min(num_text_layers, num_vision_layers)
        if k > most:
            raise ValueError(
                f"num_interaction_layers={k} exceeds the backbone: its text tower has {num_text_layers} layers and "
                f"its vision tower {num_vision_layers}; choose at most {most}."
            )
        config.text_layers = list(range(num_text_layers - k, num_text_layers))
        config.vision_layers = list(range(num_vision_layers - k, num_vision_layers))
    for name, layers, depth in (
        ("text_layers", config.text_layers, num_text_layers),
        ("vision_layers", config.vision_layers, num_vision_layers),
    ):
        outside = [i for i in layers if i >= depth]
        if outside:
            raise ValueError(
                f"{name} {layers} names layer(s) {outside} outside the backbone: its {name.split('_')[0]} tower has "
                f"{depth} layers, so indices must be in 0..{depth - 1}."
            )
    config.num_interaction_layers = len(config.text_layers)
