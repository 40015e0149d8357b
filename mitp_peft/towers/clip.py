"""CLIP (`CLIPModel`, checkpoints of its architecture: OpenAI, LAION, MetaCLIP, ...) and CLIP-style vision towers
(Chinese-CLIP, AltCLIP, a CLIP vision model inside `VisionTextDualEncoderModel`)."""

from __future__ import annotations

import torch

from .base import TextTower, TowerState, VisionTower


class CLIPTextTower(TextTower):
    """CLIP's causal text transformer: pools the EOS token after the final layer norm."""

    causal = True

    def pooled_position(self, input_ids: torch.Tensor) -> torch.Tensor:
        # The rule of CLIPTextModel.forward: legacy configs (eos_token_id == 2) take the highest id (EOT),
        # others the first position holding eos_token_id.
        ids = input_ids.to(dtype=torch.int)
        if self.config.eos_token_id == 2:
            return ids.argmax(dim=-1)
        return (ids == self.config.eos_token_id).int().argmax(dim=-1)

    def implied_token_mask(self, input_ids: torch.Tensor, pooled: torch.Tensor) -> torch.Tensor:
        # What follows the end token is padding: the tower's own causal attention never lets the end token see it.
        return torch.arange(input_ids.shape[1], device=input_ids.device) <= pooled[:, None]

    def pool(self, state: TowerState, hidden: torch.Tensor) -> torch.Tensor:
        hidden = self.model.final_layer_norm(hidden)
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), state.pool_index]


class CLIPVisionTower(VisionTower):
    """CLIP-style vision transformer: a layer norm before the encoder; pools CLS after the post layer norm."""

    def embed_tokens(self, inputs: dict) -> torch.Tensor:
        return self.model.pre_layrnorm(super().embed_tokens(inputs))

    def pool(self, state: TowerState, hidden: torch.Tensor) -> torch.Tensor:
        return self.model.post_layernorm(hidden[:, 0])
