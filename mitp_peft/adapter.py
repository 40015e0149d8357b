"""`MITPAdapter`: everything one MITP adapter trains, in one module."""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from .config import MITPConfig
from .engine import encode
from .head import HeadInputs, MITPHead, build_head
from .hub import MemoryHub
from .towers import TowerPair


class MITPAdapter(nn.Module):
    """One adapter's trainable state and its forward from model inputs to logits.

    - `prompt`: the first text prompt p_t(1), (prompt_length, text width), Gaussian as the paper states;
    - `text_layer_prompts` / `vision_layer_prompts` (with `layer_prompts=True`): one trainable prompt per interaction
      layer and tower, (K, prompt_length, width), zero at the start, added to the prompts the hub generates;
    - `hub`: the memory hub with its two translators;
    - `head`: the classification head.

    The backbone is not part of it: the tower adapters are passed in at each call, so the module holds exactly what
    is saved.
    """

    def __init__(self, config: MITPConfig, towers: TowerPair, device: Optional[torch.device] = None) -> None:
        super().__init__()
        text, vision = towers
        self.text_layers = list(config.text_layers)
        self.vision_layers = list(config.vision_layers)
        self.head_uses_memory = config.head_uses_memory
        self.prompt_length = config.prompt_length
        shape = (config.prompt_length, text.hidden_size)
        self.prompt = nn.Parameter(torch.randn(shape, device=device) * config.prompt_init_std)
        if config.layer_prompts:
            pairs = len(self.text_layers)
            self.text_layer_prompts = nn.Parameter(torch.zeros(pairs, *shape, device=device))
            self.vision_layer_prompts = nn.Parameter(
                torch.zeros(pairs, config.prompt_length, vision.hidden_size, device=device)
            )
        else:
            self.text_layer_prompts = self.vision_layer_prompts = None
        self.hub = MemoryHub(
            text.hidden_size,
            vision.hidden_size,
            config.translator_hidden_size,
            config.temperature,
            config.hub_attention,
            config.memory_decay,
            config.hub_reads,
            device,
        )
        self.head = self.new_head(config, towers, device)
        self.head_fitted = False
        """Whether `warm_start_head` has fitted this head (then `init_head_zero_shot` would throw the fit away)."""

    @property
    def num_parameters(self) -> int:
        """Everything the adapter trains and saves (recorded in the config's `built_for` for the card)."""
        return sum(p.numel() for p in self.parameters())

    @staticmethod
    def new_head(config: MITPConfig, towers: TowerPair, device: Optional[torch.device] = None) -> MITPHead:
        text, vision = towers
        return build_head(
            config.head,
            text_size=text.pooled_size,
            vision_size=vision.pooled_size,
            embed_size=vision.embed_size,
            num_labels=config.num_labels,
            memory_sizes=(text.hidden_size, vision.hidden_size) if config.head_uses_memory else None,
            zero_shot=config.zero_shot_template is not None,
            hidden_size=config.head_hidden_size,
            device=device,
        )

    def forward(
        self, towers: TowerPair, inputs: dict, taken_at: Optional[tuple[int, int]] = None
    ) -> tuple[torch.Tensor, HeadInputs]:
        """Logits for a batch of model inputs, and what the head read (`taken_at`: see `engine.encode`)."""
        encoded = encode(towers, self, inputs, taken_at)
        embeds = (None, None)
        if self.head.needs_embeddings:
            embeds = (
                towers.vision.embed_pooled(encoded.image_features),
                towers.text.embed_pooled(encoded.text_features),
            )
        memory = (
            (None, None) if encoded.memory is None else (encoded.memory.vision.mean(1), encoded.memory.text.mean(1))
        )
        features = HeadInputs(encoded.image_features, encoded.text_features, *embeds, *memory)
        return self.head(features), features
