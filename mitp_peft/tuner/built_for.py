"""The record of the backbone an adapter was built for (`MITPConfig.built_for`) and its check against the backbone an
adapter is loaded onto."""

from __future__ import annotations

import warnings
from typing import Any, Optional

import torch
from torch import nn

from .config import MITPConfig

FINGERPRINT_TENSORS, FINGERPRINT_VALUES = 8, 4
"""How many weight tensors a fingerprint samples, and how many values of each."""


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


def _shape(value: Any) -> str:
    """A tower's recorded shape in words ("5 layers, width 32, ..."), or the recorded value itself."""
    if not isinstance(value, dict):
        return str(value)
    words = {"layers": "{} layers", "width": "width {}", "max_position_embeddings": "{} positions"}
    words.update(image_size="image size {}", patch_size="patch size {}")
    return ", ".join(words[key].format(value[key]) for key in words if key in value)
