"""The extraction cache: compute the frozen, prompt-free layers below the first interaction layer once per sample.

Everything below an adapter's first interaction layers is frozen and sees no prompt, so its output per sample never
changes during training. `cache_extraction` stores it in a `datasets.Dataset` (fp16 by default); the MITP forward
then takes `mitp_text_states` / `mitp_vision_states` instead of running the embeddings and those layers every epoch.
"""

from __future__ import annotations

import datasets
import torch
from peft import PeftModel

from .fsdp import refuse_sharded
from .method.engine import extract_states as engine_states
from .method.inputs import CACHED_LAYERS
from .tuner.model import MITPModel, tuner_of


def extract_states(model: PeftModel | MITPModel, inputs: dict) -> dict[str, torch.Tensor]:
    """The states of both towers at the active adapter's first interaction layers, for a batch of model inputs."""
    refuse_sharded(model, "extract_states")
    tuner = tuner_of(model)
    config = tuner.peft_config[tuner.active_adapter_name]
    firsts = (config.text_layers[0], config.vision_layers[0])
    states = engine_states(tuner.towers, inputs, *firsts)
    states[CACHED_LAYERS] = torch.tensor([firsts] * inputs["input_ids"].shape[0])
    return states


def cache_extraction(
    model: PeftModel | MITPModel,
    dataset: datasets.Dataset,
    batch_size: int = 32,
    dtype: torch.dtype = torch.float16,
    keep_pixel_values: bool = False,
) -> datasets.Dataset:
    """Add the cached states to a dataset of model inputs (`pixel_values`, `input_ids`, `attention_mask`, ...).

    Texts must all have the same length (tokenize with `padding="max_length"`), so that states stack. `pixel_values`
    are dropped unless `keep_pixel_values`: the cached vision states replace them. The cache is tied to the adapter's
    first interaction layers (recorded in `mitp_states_layers`) and to the backbone's weights.
    """
    device = next(model.parameters()).device

    def add_states(batch: dict) -> dict:
        if isinstance(batch["input_ids"], list):
            raise ValueError(
                "cache_extraction needs texts of one length: tokenize with padding='max_length' (and truncation)."
            )
        inputs = {name: value.to(device) for name, value in batch.items() if torch.is_tensor(value)}
        states = extract_states(model, inputs)
        return {name: value.to(dtype).cpu() if value.is_floating_point() else value for name, value in states.items()}

    remove = [] if keep_pixel_values else [c for c in ("pixel_values",) if c in dataset.column_names]
    return dataset.with_format("torch").map(
        add_states, batched=True, batch_size=batch_size, remove_columns=remove, desc="MITP extraction cache"
    )
