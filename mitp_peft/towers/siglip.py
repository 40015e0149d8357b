"""SigLIP and SigLIP 2 (`SiglipModel`, `Siglip2Model`)."""

from __future__ import annotations

import torch

from .base import TextTower, TowerState, VisionTower


class SiglipTextTower(TextTower):
    """Bidirectional text transformer that pools the *last* position (padding included) through its head."""

    zero_shot_padding = "max_length"  # SigLIP's text tower was trained on texts padded to its full length

    @property
    def pooled_size(self) -> int:
        return self.model.head.out_features

    def pooled_position(self, input_ids: torch.Tensor) -> torch.Tensor:
        return torch.full((input_ids.shape[0],), input_ids.shape[1] - 1, dtype=torch.long, device=input_ids.device)

    def pool(self, state: TowerState, hidden: torch.Tensor) -> torch.Tensor:
        hidden = self.model.final_layer_norm(hidden)
        return self.model.head(hidden[torch.arange(hidden.shape[0], device=hidden.device), state.pool_index])


class SiglipVisionTower(VisionTower):
    """Pools with an attention-pooling head over all patch tokens; prompts are gone before it runs."""

    def pool(self, state: TowerState, hidden: torch.Tensor) -> torch.Tensor:
        return self.model.head(self.model.post_layernorm(hidden))


class Siglip2VisionTower(VisionTower):
    """SigLIP 2 (NaFlex): patchified pixels of variable count, with a mask for padding patches."""

    input_names = ("pixel_values", "pixel_attention_mask", "spatial_shapes")
    pixel_ndim = 3

    @property
    def needs_mask(self) -> bool:
        return True

    def embed_tokens(self, inputs: dict) -> torch.Tensor:
        return self.model.embeddings(inputs["pixel_values"], inputs["spatial_shapes"])

    def state(self, hidden: torch.Tensor, inputs: dict) -> TowerState:
        patch_mask = inputs.get("pixel_attention_mask")
        return TowerState(
            hidden, None if patch_mask is None else patch_mask.to(device=hidden.device, dtype=torch.bool)
        )

    def pool(self, state: TowerState, hidden: torch.Tensor) -> torch.Tensor:
        patch_mask = None if state.token_mask is None else state.token_mask.int()
        return self.model.head(self.model.post_layernorm(hidden), patch_mask)
