"""CLIP (`CLIPModel` and checkpoints of its architecture: OpenAI, LAION, MetaCLIP, ...)."""

from __future__ import annotations

from typing import Optional

import torch

from .base import Tower, TowerState


class CLIPTextTower(Tower):
    """CLIP's causal text transformer: pools the EOS token after the final layer norm."""

    modality = "text"
    causal = True

    @property
    def max_positions(self) -> Optional[int]:
        return self.config.max_position_embeddings

    def embed(self, inputs: dict) -> TowerState:
        input_ids = inputs["input_ids"]
        attention_mask = inputs.get("attention_mask")
        hidden = self.model.embeddings(input_ids=input_ids, position_ids=inputs.get("position_ids"))
        token_mask = None if attention_mask is None else attention_mask.to(device=hidden.device, dtype=torch.bool)
        return TowerState(hidden, token_mask, self._eos_index(input_ids.to(hidden.device)))

    def _eos_index(self, input_ids: torch.Tensor) -> torch.Tensor:
        # The same rule as CLIPTextModel.forward: legacy configs (eos_token_id == 2) take the highest id (EOT),
        # others the first position holding eos_token_id.
        ids = input_ids.to(dtype=torch.int)
        if self.config.eos_token_id == 2:
            return ids.argmax(dim=-1)
        return (ids == self.config.eos_token_id).int().argmax(dim=-1)

    def pool(self, state: TowerState, hidden: torch.Tensor) -> torch.Tensor:
        hidden = self.model.final_layer_norm(hidden)
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), state.pool_index]


class CLIPVisionTower(Tower):
    """CLIP's vision transformer: pools the CLS token after the post layer norm."""

    modality = "vision"

    def embed(self, inputs: dict) -> TowerState:
        hidden = self.model.embeddings(
            inputs["pixel_values"], interpolate_pos_encoding=inputs.get("interpolate_pos_encoding", False)
        )
        return TowerState(self.model.pre_layrnorm(hidden))

    def pool(self, state: TowerState, hidden: torch.Tensor) -> torch.Tensor:
        return self.model.post_layernorm(hidden[:, 0])
