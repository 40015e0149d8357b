"""Several adapters of one backbone in one call: per sample (`model(**inputs, adapter_names=[...])`, peft's
convention) or every adapter on the whole batch (`model.fan_out(adapters=[...], **inputs)`).

The layers below the first interaction layer see no prompt, so every adapter computes the same states there: they
run once for the whole batch (up to the lowest first interaction layer among the adapters), and each adapter runs
only its interaction layers, the layers above and its head, on its own samples or on all of them. Nothing compares
inputs: a caller who asks several adapters about the same pairs says so by fanning out. Each output is what its
adapter gives alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import nn

from ..towers import TowerPair
from .engine import extract_states
from .head import HeadInputs
from .inputs import Batch, batch_size, check_inputs, fit_text
from .missing import COMPLETE, PRESENCE_INPUTS

BASE = "__base__"
"""peft's name for "no adapter" in mixed batches; MITP refuses it (see `check_names`)."""

if TYPE_CHECKING:  # the config is read, never imported: the method sits below peft's tuner
    from ..tuner.config import MITPConfig


def check_names(names: Sequence[str], batch: int, configs: dict[str, MITPConfig]) -> list[str]:
    """The adapters a mixed batch uses, in order of first use, or an error naming what does not fit."""
    names = list(names)
    if len(names) != batch:
        raise ValueError(f"adapter_names needs one name per sample: got {len(names)} names for {batch} samples.")
    if BASE in names:
        raise ValueError(
            f"adapter_names holds {BASE!r}: the bare backbone of an MITP model gives image-text similarities, not "
            "class logits, so it cannot share a batch with MITP adapters. Run it under "
            "`with model.disable_adapter():`."
        )
    unknown = sorted(set(names) - set(configs))
    if unknown:
        raise ValueError(f"adapter_names names unknown adapter(s) {unknown}; this model has {sorted(configs)}.")
    used = list(dict.fromkeys(names))
    spaces = {n: (configs[n].num_labels, configs[n].problem_type) for n in used}
    if len(set(spaces.values())) > 1:
        raise ValueError(
            f"A mixed batch gives one logits tensor, so its adapters need one label space; these differ: {spaces}. "
            "Batch the samples of each label space apart."
        )
    named = [n for n in used if configs[n].id2label is not None]
    other = next((n for n in named[1:] if configs[n].id2label != configs[named[0]].id2label), None)
    if other is not None:
        first, theirs = configs[named[0]].id2label, configs[other].id2label
        index = next(i for i in sorted(first) if first[i] != theirs[i])
        raise ValueError(
            f"A mixed batch gives one logits tensor, whose columns mean one set of classes, but the adapters "
            f"{named[0]!r} and {other!r} name them differently: class {index} is {first[index]!r} in one and "
            f"{theirs[index]!r} in the other. Batch the samples of each adapter apart (set_adapter(name)), or give "
            "the adapters the same id2label."
        )
    return used


def check_fan_out(names: Sequence[str], configs: dict[str, MITPConfig]) -> list[str]:
    """The adapters a fan-out runs, or an error naming what does not fit."""
    if isinstance(names, str) or not names:
        raise TypeError(
            f"adapters takes a list of adapter names (one output each), got {names!r}. For one adapter call the "
            "model itself (after set_adapter(name))."
        )
    names = list(names)
    repeated = sorted({n for n in names if names.count(n) > 1})
    unknown = sorted(set(names) - set(configs))
    if repeated or unknown or BASE in names:
        problem = f"repeats {repeated}" if repeated else f"names unknown adapter(s) {unknown or [BASE]}"
        raise ValueError(f"adapters {problem}; this model has {sorted(configs)}, each listed at most once.")
    return names


def shared_batch(towers: TowerPair, adapters: nn.ModuleDict, inputs: dict, used: Sequence[str]) -> Batch:
    """The batch of complete pairs for the adapters `used`, checked once, with both towers' states computed once at
    their lowest first interaction layers (the layers below see no prompt, so every adapter computes the same there)
    and the text fitted next to the most prompts."""
    masks = [name for name in PRESENCE_INPUTS if inputs.get(name) is not None]
    if masks:
        raise ValueError(
            f"Batches for several adapters take complete samples; this one has {masks}. Run the samples that lack a "
            "modality per adapter (set_adapter(name))."
        )
    check_inputs(inputs, towers.vision)
    inputs = fit_text(inputs, towers.text, max(adapters[n].prompt_length for n in used))
    taken_at = (min(adapters[n].text_layers[0] for n in used), min(adapters[n].vision_layers[0] for n in used))
    shared = {**inputs, **extract_states(towers, inputs, *taken_at)}
    shared.pop("pixel_values", None)
    return Batch(shared, batch_size(inputs), COMPLETE, taken_at)


def mixed_forward(
    towers: TowerPair, adapters: nn.ModuleDict, configs: dict[str, MITPConfig], inputs: dict, names: Sequence[str]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Logits, pooled image features and pooled text features of a batch in which sample i uses adapter names[i].
    The layers below the interaction layers run once for the whole batch, whatever it repeats."""
    used = check_names(names, batch_size(inputs), configs)
    batch = shared_batch(towers, adapters, inputs, used)
    outputs: list[torch.Tensor] = []
    device = batch.inputs["input_ids"].device
    for name in used:
        index = torch.tensor([i for i, n in enumerate(names) if n == name], device=device)
        logits, features = adapters[name](towers, batch.select(index))
        parts = (logits, features.image_features, features.text_features)
        if not outputs:
            outputs = [part.new_empty((batch.size, *part.shape[1:])) for part in parts]
        for whole, part in zip(outputs, parts, strict=True):
            whole[index] = part
    return tuple(outputs)


def fan_out(
    towers: TowerPair, adapters: nn.ModuleDict, configs: dict[str, MITPConfig], inputs: dict, names: Sequence[str]
) -> dict[str, tuple[torch.Tensor, HeadInputs]]:
    """Each named adapter's logits and head inputs for the whole batch: the layers below the interaction layers run
    once, each adapter its interaction layers, the layers above and its head."""
    used = check_fan_out(names, configs)
    batch = shared_batch(towers, adapters, inputs, used)
    return {name: adapters[name](towers, batch) for name in used}
