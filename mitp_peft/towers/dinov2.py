"""DINOv2 (`Dinov2Model`, `Dinov2WithRegistersModel`) as the vision tower of `VisionTextDualEncoderModel`."""

from __future__ import annotations

import torch

from .base import TowerState, VisionTower


class Dinov2VisionTower(VisionTower):
    """Layer-scaled ViT whose embeddings always interpolate the position table to the image's size (any multiple of
    the patch size); pools the CLS token after the final layer norm. Register tokens, where the model has them, sit
    after CLS and are not pooled."""

    input_names = ("pixel_values",)

    def embed_tokens(self, inputs: dict) -> torch.Tensor:
        return self.model.embeddings(inputs["pixel_values"])

    def pool(self, state: TowerState, hidden: torch.Tensor) -> torch.Tensor:
        return self.model.layernorm(hidden)[:, 0]
