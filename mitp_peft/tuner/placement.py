"""Where an adapter sits on a backbone: its towers, its interaction layers, and the record of the backbone it was
built for, checked before anything is created."""

from __future__ import annotations

import warnings
from typing import Any, Optional

import torch
from torch import nn

from ..towers import DENSE_MASK_BACKENDS, TowerPair, resolve_towers
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


def check_built_for(config: MITPConfig, built_for: dict[str, Any], base_model_name_or_path: Optional[str]) -> None:
    """Refuse a saved adapter (its `built_for` filled) on a backbone that differs from the one it was built for.

    Shapes decide (class, tower depths and widths, image and patch size): an adapter on a backbone of equal widths but
    other depth or patching would load without a size error and predict nonsense. A backbone of the same shape under
    another name (a fine-tuned or re-hosted copy) is only warned about.
    """
    if config.built_for is None:
        return  # a new adapter: recorded once it is created
    shape = ("backbone", "text", "vision")
    saved = {key: config.built_for.get(key) for key in shape}
    here = {key: built_for.get(key) for key in shape}
    if saved != here:
        differ = [
            f"{key}: {_shape(saved[key])} (adapter) vs {_shape(here[key])} (this backbone)"
            for key in shape
            if saved[key] != here[key]
        ]
        raise ValueError(
            f"This MITP adapter was built for another backbone ({config.base_model_name_or_path or 'unnamed'}), "
            f"not this one ({base_model_name_or_path or 'unnamed'}): {'; '.join(differ)}. Load it onto the "
            "backbone it names (mitp_peft.from_pretrained does), or train an adapter for this one."
        )
    names = (config.base_model_name_or_path, base_model_name_or_path)
    if all(names) and names[0] != names[1]:
        warnings.warn(
            f"This MITP adapter was trained on {names[0]!r} and is loaded onto {names[1]!r}, a backbone of the same "
            "shape: its prompts and head only fit weights like the ones they were trained with.",
            stacklevel=4,
        )
    elif not same_weights(config.built_for.get("fingerprint"), built_for.get("fingerprint")):
        warnings.warn(
            f"This MITP adapter was trained on a backbone ({names[0] or 'unnamed'}) whose weights differ from this "
            f"one's ({names[1] or 'unnamed'}), though both have the same shape: its prompts and head only fit the "
            "weights they were trained with, so its outputs here mean little. Load it onto the backbone it was "
            "trained on (mitp_peft.from_pretrained loads the one it names).",
            stacklevel=4,
        )


FINGERPRINT_TENSORS, FINGERPRINT_VALUES = 8, 4


def fingerprint(model: nn.Module) -> Optional[list[float]]:
    """A cheap fingerprint of the backbone's weights: a few values at fixed places of a few weight matrices spread
    over the model (32 numbers, read once when an adapter is created; matrices, because freshly initialized biases and
    norms are alike in every model). None where the weights are not materialized (meta)."""
    parameters = [p for p in model.parameters() if p.dim() >= 2]
    if not parameters or any(p.is_meta for p in parameters):
        return None
    step = max(1, len(parameters) // FINGERPRINT_TENSORS)
    values = []
    for parameter in parameters[::step][:FINGERPRINT_TENSORS]:
        flat = parameter.detach().reshape(-1)
        # Integer arithmetic: float positions round past the last element of tensors over 2**24 values.
        places = torch.arange(FINGERPRINT_VALUES, device=flat.device) * (flat.numel() - 1) // (FINGERPRINT_VALUES - 1)
        values.append(flat[places].float())
    return [float(f"{value:.6g}") for value in torch.cat(values).tolist()]


def same_weights(recorded: Optional[list[float]], here: Optional[list[float]]) -> bool:
    """Whether two fingerprints come from the same weights, up to a cast to half precision (a backbone loaded in
    bfloat16 is the same backbone). Unknown on either side counts as the same."""
    if recorded is None or here is None:
        return True
    if len(recorded) != len(here):
        return False
    return torch.allclose(torch.tensor(here), torch.tensor(recorded), rtol=2e-2, atol=1e-6)


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


def _shape(value: Any) -> str:
    """A tower's recorded shape in words ("5 layers, width 32, ..."), or the recorded value itself."""
    if not isinstance(value, dict):
        return str(value)
    words = {"layers": "{} layers", "width": "width {}", "max_position_embeddings": "{} positions"}
    words.update(image_size="image size {}", patch_size="patch size {}")
    return ", ".join(words[key].format(value[key]) for key in words if key in value)
