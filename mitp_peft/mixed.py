"""Batches whose samples use different adapters of one backbone (`model(**inputs, adapter_names=[...])`).

The layers below the first interaction layer see no prompt, so every adapter computes the same states there: they
run once for the whole batch (up to the lowest first interaction layer among the batch's adapters), once per
distinct text and distinct image (a batch that asks several adapters about the same pairs computes their shared
part once), and each adapter runs only its interaction layers and the layers above, on its own samples. Each
sample's output is what it gets alone with its adapter.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .config import MITPConfig
from .engine import CACHED_TEXT_STATES, CACHED_VISION_STATES, check_inputs, fit_text, tower_states
from .missing import PRESENCE_INPUTS
from .towers import TowerPair

BASE = "__base__"
"""peft's name for "no adapter" in mixed batches; MITP refuses it (see `check_names`)."""


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


def distinct_states(towers: TowerPair, inputs: dict, taken_at: tuple[int, int]) -> dict[str, torch.Tensor]:
    """Both towers' states at `taken_at` for every sample, computed once per distinct text and per distinct image
    (rows compared bit for bit)."""
    batch = inputs["input_ids"].shape[0]
    states = {}
    for tower, first, name in zip(towers, taken_at, (CACHED_TEXT_STATES, CACHED_VISION_STATES), strict=True):
        keys = [key for key in tower.input_names if torch.is_tensor(inputs.get(key)) and len(inputs[key]) == batch]
        rows = torch.cat([as_integers(inputs[key].reshape(batch, -1)) for key in keys], dim=1)
        representative, inverse = distinct_rows(rows)
        distinct = {key: value[representative] if key in keys else value for key, value in inputs.items()}
        states[name] = tower_states(tower, distinct, first)[inverse]
    return states


def distinct_rows(rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The first row of each group of equal rows, and each row's group (`rows[representative][inverse] == rows`).
    Its own function so that benchmarks/serving.py can time it: on a GPU, `torch.unique(dim=0)` over an image's
    150,528 values per row is the suspected cost of mixed batches."""
    _, inverse = torch.unique(rows, dim=0, return_inverse=True)
    count = int(inverse.max()) + 1
    order = torch.arange(len(rows), device=rows.device)
    representative = torch.full((count,), len(rows), device=rows.device).scatter_reduce(0, inverse, order, "amin")
    return representative, inverse


def as_integers(values: torch.Tensor) -> torch.Tensor:
    """The values' bits as int64, so that equal rows compare equal exactly (floats included)."""
    if values.is_floating_point():
        values = values.view({2: torch.int16, 4: torch.int32, 8: torch.int64}[values.element_size()])
    return values.to(torch.int64)


def mixed_forward(
    towers: TowerPair, adapters: nn.ModuleDict, configs: dict[str, MITPConfig], inputs: dict, names: Sequence[str]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Logits, pooled image features and pooled text features of a batch in which sample i uses adapter names[i]."""
    masks = [name for name in PRESENCE_INPUTS if inputs.get(name) is not None]
    if masks:
        raise ValueError(
            f"Mixed-adapter batches take complete samples; this one has {masks}. Run the samples that lack a "
            "modality per adapter (set_adapter(name))."
        )
    check_inputs(inputs, towers.vision)
    batch = inputs["input_ids"].shape[0]
    used = check_names(names, batch, configs)
    inputs = fit_text(inputs, towers.text, max(adapters[n].prompt_length for n in used))
    taken_at = (min(adapters[n].text_layers[0] for n in used), min(adapters[n].vision_layers[0] for n in used))
    shared = {**inputs, **distinct_states(towers, inputs, taken_at)}
    shared.pop("pixel_values", None)
    per_sample = [key for key, value in shared.items() if torch.is_tensor(value) and value.shape[:1] == (batch,)]
    outputs: list[torch.Tensor] = []
    device = inputs["input_ids"].device
    for name in used:
        index = torch.tensor([i for i, n in enumerate(names) if n == name], device=device)
        group = {key: value[index] if key in per_sample else value for key, value in shared.items()}
        logits, features = adapters[name](towers, group, taken_at)
        parts = (logits, features.image_features, features.text_features)
        if not outputs:
            outputs = [part.new_empty((batch, *part.shape[1:])) for part in parts]
        for whole, part in zip(outputs, parts, strict=True):
            whole[index] = part
    return tuple(outputs)
