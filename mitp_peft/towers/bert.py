"""BERT-like text towers: BERT and RoBERTa (inside `VisionTextDualEncoderModel`), Chinese-CLIP and AltCLIP text."""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from .base import FirstTokenTextTower, TowerState, require_pooler


class BertTextTower(FirstTokenTextTower):
    """`BertModel` as `VisionTextDualEncoderModel` uses it: its pooler (dense + tanh on [CLS])."""

    def __init__(self, tower: nn.Module, path: str, projection: Optional[nn.Module] = None) -> None:
        super().__init__(tower, path, projection)
        require_pooler(tower, "text")

    def pool(self, state: TowerState, hidden: torch.Tensor) -> torch.Tensor:
        return self.model.pooler(hidden)


class RobertaTextTower(BertTextTower):
    """RoBERTa numbers positions from padding_idx + 1, which leaves two positions fewer for tokens."""

    @property
    def max_positions(self) -> Optional[int]:
        return self.config.max_position_embeddings - self.config.pad_token_id - 1


class ChineseCLIPTextTower(FirstTokenTextTower):
    """Chinese-CLIP pools the [CLS] hidden state itself, without the BERT pooler."""

    def pool(self, state: TowerState, hidden: torch.Tensor) -> torch.Tensor:
        return hidden[:, 0]


class AltCLIPTextTower(FirstTokenTextTower):
    """AltCLIP's XLM-R text model: layer norm and a projection ("transformation") on <s>."""

    @property
    def embeddings(self) -> nn.Module:
        return self.model.roberta.embeddings

    @property
    def max_positions(self) -> Optional[int]:
        return self.config.max_position_embeddings - self.config.pad_token_id - 1

    @property
    def pooled_size(self) -> int:
        return self.model.transformation.out_features

    def pool(self, state: TowerState, hidden: torch.Tensor) -> torch.Tensor:
        return self.model.transformation(self.model.pre_LN(hidden[:, 0]))
