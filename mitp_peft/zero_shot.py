"""Start the head as the backbone's zero-shot classifier, so that fine-tuning begins from what the backbone knows."""

from __future__ import annotations

from typing import Any

import torch
from peft import PeftModel

from .adapter import MITPAdapter
from .model import MITPModel, tuner_of
from .towers import similarity_scale

DEFAULT_TEMPLATE = "a photo of a {}."


@torch.no_grad()
def init_head_zero_shot(model: PeftModel | MITPModel, tokenizer: Any, template: str = DEFAULT_TEMPLATE) -> None:
    """Make the active adapter's head the dual encoder's zero-shot classifier over its label names.

    Each class name goes into `template`, through the frozen text tower (without prompts) and the dual encoder's text
    projection; the head's class embeddings become those normalized embeddings times the backbone's logit scale (plus
    SigLIP's logit bias), and its other weights zero. Step 0 then predicts what the backbone predicts zero-shot from
    the image, and training improves on it. Call it right after `get_peft_model`, before creating the optimizer: it
    replaces the head's parameters. The template is recorded in the adapter config (`zero_shot_template`), so a saved
    adapter reloads with the same head.
    """
    tuner = tuner_of(model)
    name = tuner._active_adapter_name()
    config = tuner.peft_config[name]
    if config.id2label is None:
        raise ValueError(
            "init_head_zero_shot needs the label names: create the adapter with MITPConfig(id2label={0: 'name', ...}) "
            "(or label2id)."
        )
    if "{}" not in template:
        raise ValueError(f"template must contain '{{}}' where the class name goes, got {template!r}.")
    text = tuner._towers.text
    captions = [template.format(config.id2label[i]) for i in range(config.num_labels)]
    # Padded to the full length, as SigLIP's text tower was trained (it pools the last position).
    tokens = tokenizer(
        captions, padding="max_length", truncation=True, max_length=text.max_positions, return_tensors="pt"
    )
    device = text.model.device
    class_embeds = text.embed_pooled(text.features({k: v.to(device) for k, v in tokens.items()}))
    adapter: MITPAdapter = tuner.mitp_adapters[name]
    old = adapter.head
    config.zero_shot_template = template
    adapter.head = MITPAdapter.new_head(config, tuner._towers, device).to(old.dtype)
    adapter.head.start_from_zero_shot(class_embeds, *similarity_scale(tuner.model))
    adapter.head.requires_grad_(next(old.parameters()).requires_grad)
    config.built_for["adapter_parameters"] = adapter.num_parameters
