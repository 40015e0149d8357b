"""Start the head as the backbone's zero-shot classifier, so that fine-tuning begins from what the backbone knows."""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from typing import Any

import torch
from peft import PeftModel
from torch.optim.optimizer import register_optimizer_step_pre_hook

from .fsdp import refuse_sharded
from .method.adapter import MITPAdapter
from .towers import TowerPair, similarity_scale
from .tuner.model import MITPModel, tuner_of

DEFAULT_TEMPLATE = "a photo of a {}."


@torch.no_grad()
def init_head_zero_shot(model: PeftModel | MITPModel, tokenizer: Any, template: str = DEFAULT_TEMPLATE) -> None:
    """Make the active adapter's head the dual encoder's zero-shot classifier over its label names.

    Each class name goes into `template`, through the frozen text tower (without prompts) and the dual encoder's text
    projection; the head's class embeddings become those normalized embeddings times the backbone's logit scale (plus
    SigLIP's logit bias), and its other weights zero. Step 0 then predicts what the backbone predicts zero-shot from
    the image, and training improves on it. It replaces the head's parameters, so call it right after
    `get_peft_model`: before `warm_start_head` (whose fit it would throw away: refused) and before creating the
    optimizer (one created earlier holds the old head: its first step is refused). The template is recorded in the
    adapter config (`zero_shot_template`), so a saved adapter reloads with the same head.
    """
    refuse_sharded(model, "init_head_zero_shot")
    tuner = tuner_of(model)
    name = tuner.active_adapter_name
    config = tuner.peft_config[name]
    if config.id2label is None:
        raise ValueError(
            "init_head_zero_shot needs the label names: create the adapter with MITPConfig(id2label={0: 'name', ...}) "
            "(or label2id)."
        )
    if "{}" not in template:
        raise ValueError(f"template must contain '{{}}' where the class name goes, got {template!r}.")
    adapter: MITPAdapter = tuner.mitp_adapters[name]
    if adapter.head_fitted:
        raise ValueError(
            "init_head_zero_shot would replace the head that warm_start_head has fitted, throwing the fit away. "
            "Call init_head_zero_shot first, then warm_start_head."
        )
    names = [config.id2label[i] for i in range(config.num_labels)]
    class_embeds = class_embeddings(tuner.towers, tokenizer, names, template)
    old = adapter.head
    config.zero_shot_template = template
    adapter.head = MITPAdapter.new_head(config, tuner.towers, class_embeds.device).to(old.dtype)
    adapter.head.start_from_zero_shot(class_embeds, *similarity_scale(tuner.model))
    adapter.head.requires_grad_(next(old.parameters()).requires_grad)
    config.built_for["adapter_parameters"] = adapter.num_parameters
    refuse_optimizers_holding(list(old.parameters()))


@torch.no_grad()
def class_embeddings(towers: TowerPair, tokenizer: Any, names: Sequence[str], template: str = DEFAULT_TEMPLATE):
    """The class names' captions through the frozen text tower (no prompts) and its projection, normalized: the
    rows of the dual encoder's zero-shot classifier, (classes, shared width)."""
    text = towers.text
    captions = [template.format(name) for name in names]
    tokens = tokenizer(
        captions, padding=text.zero_shot_padding, truncation=True, max_length=text.max_positions, return_tensors="pt"
    )
    device = text.model.device
    return text.embed_pooled(text.features({k: v.to(device) for k, v in tokens.items()}))


_REPLACED: weakref.WeakSet = weakref.WeakSet()
"""Parameters of heads that init_head_zero_shot replaced, while something still holds them."""
_HOOK: list = []
"""The handle of the optimizer step hook that checks for them, while there are any."""


def refuse_optimizers_holding(replaced: list[torch.nn.Parameter]) -> None:
    """Refuse the next step of any optimizer that still holds the `replaced` parameters: a head replaced after the
    optimizer was created would otherwise train nothing, silently. torch offers only a process-wide step hook for
    this (the optimizers are the user's), so it lives only while such parameters do: the first step after the last
    of them is gone removes it."""
    _REPLACED.update(replaced)
    if not _HOOK:
        _HOOK.append(register_optimizer_step_pre_hook(_check_optimizer))


def _check_optimizer(optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
    if not _REPLACED:
        _HOOK.pop().remove()
        return
    held = {id(p) for group in optimizer.param_groups for p in group["params"]}
    if any(id(p) in held for p in _REPLACED):
        raise RuntimeError(
            "This optimizer was created before init_head_zero_shot replaced the MITP head: it holds the old head's "
            "parameters, so the new head would never train. Create the optimizer after init_head_zero_shot."
        )
