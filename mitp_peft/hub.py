"""The memory hub: consolidation and activation of MITP's prompts (METHOD.md steps 5-7).

Pure tensors in, tensors out. The only trainable parts are the two translators that carry prompts between the
towers' widths; the interaction itself is a parameter-free softmax over cosine similarities, as the paper states.
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import torch
import torch.nn.functional as F
from torch import nn


class Memory(NamedTuple):
    """What the hub remembers of one interaction layer: consolidated prompts of each modality."""

    text: torch.Tensor
    """(batch, prompts, text width)"""
    vision: torch.Tensor
    """(batch, prompts, vision width)"""


def translator(in_size: int, hidden_size: int, out_size: int, device: Optional[torch.device] = None) -> nn.Sequential:
    """Linear-GELU-Linear: small enough to keep the adapter near 2M parameters on CLIP ViT-L/14."""
    return nn.Sequential(
        nn.Linear(in_size, hidden_size, device=device), nn.GELU(), nn.Linear(hidden_size, out_size, device=device)
    )


def similarity_attention(query: torch.Tensor, keys: torch.Tensor, temperature: float) -> torch.Tensor:
    """Each query takes a softmax(cosine / temperature)-weighted mix of `keys`, which also serve as values."""
    scores = F.normalize(query, dim=-1) @ F.normalize(keys, dim=-1).transpose(-1, -2)
    return torch.softmax(scores / temperature, dim=-1) @ keys


def activate(memory: torch.Tensor, tokens: torch.Tensor, token_mask: Optional[torch.Tensor]) -> torch.Tensor:
    """Turn hub memory into the next layer's prompts, at the scale of that layer's own tokens.

    A parameter-free layer norm (zero mean, unit variance per prompt) times the per-sample RMS of the layer's real
    tokens: memory is built from prompt outputs whose scale differs from layer to layer, and a prompt far off the
    token scale would dominate or vanish in attention.
    """
    normalized = F.layer_norm(memory.float(), memory.shape[-1:])
    power = tokens.float().pow(2).mean(dim=-1)  # (batch, tokens)
    if token_mask is None:
        mean_power = power.mean(dim=1)
    else:
        mean_power = (power * token_mask).sum(dim=1) / token_mask.sum(dim=1).clamp(min=1)
    return (normalized * mean_power.sqrt()[:, None, None]).to(tokens.dtype)


class MemoryHub(nn.Module):
    """Lets the prompts of both towers interact by similarity and keeps the result as memory.

    `attention="joint"`: each prompt attends over its own modality's prompt outputs and the other modality's,
    translated; the share it takes from the other grows with how similar (relevant) the other is, and otherwise it
    keeps its own context. `attention="cross"`: it attends over the other modality only and adds the result to itself
    (always the same total amount from the other side; kept for ablations).
    """

    def __init__(
        self,
        text_size: int,
        vision_size: int,
        hidden_size: int,
        temperature: float,
        attention: str,
        memory_decay: float,
        device: Optional[torch.device] = None,
    ) -> None:
        super().__init__()
        self.translate_text_to_vision = translator(text_size, hidden_size, vision_size, device)
        self.translate_vision_to_text = translator(vision_size, hidden_size, text_size, device)
        self.temperature = temperature
        self.attention = attention
        self.memory_decay = memory_decay

    @property
    def dtype(self) -> torch.dtype:
        return self.translate_text_to_vision[0].weight.dtype

    def initial_vision_prompt(self, text_prompt: torch.Tensor) -> torch.Tensor:
        """p_v(1) = G_t->v(p_t(1)): the first vision prompt is generated from the first text prompt."""
        return self.translate_text_to_vision(text_prompt.to(self.dtype))

    def consolidate(self, text: torch.Tensor, vision: torch.Tensor, previous: Optional[Memory]) -> Memory:
        """Consolidate the prompt outputs of one interaction layer into memory, m(k) = c(k) + decay * m(k-1)."""
        text, vision = text.to(self.dtype), vision.to(self.dtype)
        memory = Memory(
            self._recall(text, self.translate_vision_to_text(vision)),
            self._recall(vision, self.translate_text_to_vision(text)),
        )
        if previous is not None and self.memory_decay:
            memory = Memory(*(new + self.memory_decay * old for new, old in zip(memory, previous, strict=False)))
        return memory

    def _recall(self, own: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
        if self.attention == "joint":
            return similarity_attention(own, torch.cat([own, other], dim=1), self.temperature)
        return own + similarity_attention(own, other, self.temperature)
