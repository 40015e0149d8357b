"""`MITPAdapter`: everything one MITP adapter trains, in one module."""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

import torch
from torch import nn

from ..towers import TowerPair
from .engine import encode
from .head import HeadInputs, MITPHead, build_head
from .hub import MemoryHub
from .inputs import Batch, prepare
from .missing import Presence

if TYPE_CHECKING:  # the config is read, never imported: the method sits below peft's tuner
    from ..tuner.config import MITPConfig


class MITPAdapter(nn.Module):
    """One adapter's trainable state and its forward from a checked batch (`batch`) to logits.

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
        self.missing_modalities = config.missing_modalities
        if config.missing_modalities:
            # Zero at the start: a complete sample is computed exactly as without missing-awareness.
            self.missing_prompts = nn.Parameter(torch.zeros(2, *shape, device=device))
            self.image_placeholder = nn.Parameter(torch.zeros(vision.pooled_size, device=device))
            self.text_placeholder = nn.Parameter(torch.zeros(text.pooled_size, device=device))
        else:
            self.missing_prompts = self.image_placeholder = self.text_placeholder = None
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

    def first_prompts(self, batch: int, found: Presence) -> tuple[torch.Tensor, torch.Tensor]:
        """p_t(1) and p_v(1) = G_t->v(p_t(1)) for each sample: the learned prompt, plus (missing-aware) the learned
        prompt of what the sample lacks (`missing_prompts`: image missing, text missing), so that the prompts tell the
        towers what is absent."""
        if found.complete:
            return self.prompt.expand(batch, -1, -1), self.hub.initial_vision_prompt(self.prompt).expand(batch, -1, -1)
        device = self.prompt.device
        lacks = [(~found.has(m, batch, device)).to(self.prompt.dtype)[:, None, None] for m in ("image", "text")]
        prompt = self.prompt + lacks[0] * self.missing_prompts[0] + lacks[1] * self.missing_prompts[1]
        return prompt, self.hub.initial_vision_prompt(prompt)

    def fill_absent(self, modality: str, pooled: Optional[torch.Tensor], found: Presence, batch: int) -> torch.Tensor:
        """A tower's pooled features with the learned placeholder where a sample lacks the modality (all of them,
        `pooled` None, when the tower did not run)."""
        placeholder = self.image_placeholder if modality == "image" else self.text_placeholder
        if pooled is None:
            return placeholder.expand(batch, -1)
        mask = found.image if modality == "image" else found.text
        if mask is None:
            return pooled
        return torch.where(mask.to(pooled.device)[:, None], pooled, placeholder.to(pooled.dtype))

    def batch(self, towers: TowerPair, inputs: dict) -> Batch:
        """The model inputs checked for this adapter (see `mitp_peft.method.inputs.prepare`)."""
        first_layers = (self.text_layers[0], self.vision_layers[0])
        return prepare(inputs, towers, self.missing_modalities, self.prompt_length, first_layers)

    def forward(self, towers: TowerPair, batch: Batch) -> tuple[torch.Tensor, HeadInputs]:
        """Logits for a checked batch (`batch`), and what the head read.

        Where a sample lacks a modality, the head reads the placeholder in place of its pooled features, and no
        agreement in the shared space (its embeddings are zero there) and no memory of it."""
        found, size = batch.presence, batch.size
        layer_prompts = None
        if self.text_layer_prompts is not None:
            layer_prompts = (self.text_layer_prompts, self.vision_layer_prompts)
        encoded = encode(
            towers,
            batch,
            (self.text_layers, self.vision_layers),
            self.first_prompts(size, found),
            layer_prompts,
            self.hub,
            self.head_uses_memory,
        )
        image_features = self.fill_absent("image", encoded.image_features, found, size)
        text_features = self.fill_absent("text", encoded.text_features, found, size)
        device = image_features.device
        kept = {m: None if found.complete else found.has(m, size, device) for m in ("image", "text")}
        embeds = (None, None)
        if self.head.needs_embeddings:
            embeds = (
                _zero_absent(towers.vision.embed_pooled(image_features), kept["image"]),
                _zero_absent(towers.text.embed_pooled(text_features), kept["text"]),
            )
        memory = (None, None)
        if encoded.memory is not None:
            memory = tuple(
                _zero_absent(torch.zeros(size, width, device=device) if m is None else m.mean(1), kept[name])
                for m, width, name in (
                    (encoded.memory.vision, self.hub.translate_text_to_vision[-1].out_features, "image"),
                    (encoded.memory.text, self.hub.translate_vision_to_text[-1].out_features, "text"),
                )
            )
        features = HeadInputs(image_features, text_features, *embeds, *memory)
        return self.head(features), features


def _zero_absent(values: torch.Tensor, present: Optional[torch.Tensor]) -> torch.Tensor:
    """Rows of samples that lack the modality set to zero (None: every sample has it)."""
    return values if present is None else torch.where(present.to(values.device)[:, None], values, 0.0)
