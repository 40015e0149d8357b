"""ViT-like vision towers (`ViTModel`, `DeiTModel`) as `VisionTextDualEncoderModel` uses them."""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from .base import TowerState, VisionTower, require_pooler


class ViTVisionTower(VisionTower):
    """Layer norm on the last stream, then the model's pooler (dense + tanh on [CLS])."""

    def __init__(self, tower: nn.Module, path: str, projection: Optional[nn.Module] = None) -> None:
        super().__init__(tower, path, projection)
        require_pooler(tower, "images")

    @property
    def pooled_size(self) -> int:
        return self.model.pooler.dense.out_features

    def pool(self, state: TowerState, hidden: torch.Tensor) -> torch.Tensor:
        return self.model.pooler(self.model.layernorm(hidden))
