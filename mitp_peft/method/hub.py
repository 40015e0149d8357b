"""The memory hub: consolidation and activation of MITP's prompts (METHOD.md steps 5-7).

Pure tensors in, tensors out. The only trainable parts are the two translators that carry prompts between the
towers' widths; the interaction itself is a parameter-free softmax over cosine similarities, as the paper states.
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import torch
import torch.nn.functional as F
from torch import nn

HUB_ATTENTIONS = ("gated", "cross")
HUB_READS = ("prompts", "tokens")
NORM_EPS = 1e-12
"""F.normalize's: the smallest norm a vector is divided by."""


class Memory(NamedTuple):
    """What the hub remembers of one interaction layer: consolidated prompts of each modality."""

    text: torch.Tensor
    """(batch, prompts, text width)"""
    vision: torch.Tensor
    """(batch, prompts, vision width)"""


class Tokens(NamedTuple):
    """Both towers' token streams after an interaction layer, for a hub that reads tokens."""

    text: torch.Tensor
    """(batch, text tokens, text width)"""
    text_mask: Optional[torch.Tensor]
    """(batch, text tokens) bool, False for padding; None when every token is real."""
    vision: torch.Tensor
    vision_mask: Optional[torch.Tensor]


def _with_tokens(
    prompts: torch.Tensor, tokens: Optional[torch.Tensor], token_mask: Optional[torch.Tensor]
) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """What the other side reads: the prompt outputs, then (when given) the token stream; a key mask where the
    tokens have padding."""
    if tokens is None:
        return prompts, None
    joint = torch.cat([prompts, tokens.to(prompts.dtype)], dim=1)
    if token_mask is None:
        return joint, None
    real = torch.ones(prompts.shape[:2], dtype=torch.bool, device=prompts.device)
    return joint, torch.cat([real, token_mask.to(device=prompts.device, dtype=torch.bool)], dim=1)


def translator(in_size: int, hidden_size: int, out_size: int, device: Optional[torch.device] = None) -> nn.Sequential:
    """Linear-GELU-Linear, small enough to keep the adapter near 2M parameters on CLIP ViT-L/14.

    Its biases start at zero: a random bias is the same offset for every sample, which a narrow translator's output
    carries as much as the translated prompt itself, so that at the start the hub would hear little of what differs
    between samples (METHOD.md, step 5)."""
    layers = nn.Sequential(
        nn.Linear(in_size, hidden_size, device=device), nn.GELU(), nn.Linear(hidden_size, out_size, device=device)
    )
    for layer in (layers[0], layers[2]):
        nn.init.zeros_(layer.bias)
    return layers


def _in_own_dtype(device: torch.device) -> torch.autocast:
    """The hub computes in its weights' dtype (float32 unless the adapter was cast), autocast or not: it
    standardizes what a prompt read, and a read whose spread is small next to its mean keeps, in half precision,
    rounding errors as large as that spread (under float16 autocast the translators' gradients were 5% off)."""
    return torch.autocast(device.type, enabled=False)


def cosine_attention(
    query: torch.Tensor, keys: torch.Tensor, temperature: float, key_mask: Optional[torch.Tensor] = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """softmax(cosine / temperature) over `keys` for each query: (weights, cosines), both (batch, queries, keys).
    Keys where `key_mask` (batch, keys) is False get no weight.

    The dot products are divided by the norms rather than taken between normalized vectors (F.normalize's epsilon
    kept): the same cosines, without a normalized copy of the keys kept for the backward. The keys, when they are a
    token stream, are the largest thing the hub keeps, and the read that follows keeps them anyway."""
    norms = _norm(query)[..., :, None] * _norm(keys)[..., None, :]
    cosines = (query @ keys.transpose(-1, -2)) / norms
    logits = cosines / temperature
    if key_mask is not None:
        logits = logits.masked_fill(~key_mask[:, None, :], torch.finfo(logits.dtype).min)
    return torch.softmax(logits, dim=-1), cosines


def _norm(x: torch.Tensor) -> torch.Tensor:
    return torch.linalg.vector_norm(x, dim=-1).clamp_min(NORM_EPS)


def standardize(x: torch.Tensor) -> torch.Tensor:
    """Zero mean, unit variance per vector, without parameters: puts the two modalities on one scale, whatever it
    is (layer norm's usual epsilon of 1e-5 would shrink vectors of a tower whose activations are 1e-3 small)."""
    return F.layer_norm(x, x.shape[-1:], eps=torch.finfo(x.dtype).tiny)


def activate(memory: torch.Tensor, tokens: torch.Tensor, token_mask: Optional[torch.Tensor]) -> torch.Tensor:
    """Turn hub memory into the next layer's prompts, at the scale of that layer's own tokens.

    A parameter-free layer norm (zero mean, unit variance per prompt) times the per-sample RMS of the layer's real
    tokens: memory is built from prompt outputs whose scale differs from layer to layer, and a prompt far off the
    token scale would dominate or vanish in attention.
    """
    normalized = standardize(memory.float())
    power = tokens.float().pow(2).mean(dim=-1)  # (batch, tokens)
    if token_mask is None:
        mean_power = power.mean(dim=1)
    else:
        mean_power = (power * token_mask).sum(dim=1) / token_mask.sum(dim=1).clamp(min=1)
    return (normalized * mean_power.sqrt()[:, None, None]).to(tokens.dtype)


class MemoryHub(nn.Module):
    """Lets the prompts of both towers interact by similarity and keeps the result as memory.

    Each prompt reads the other modality's prompt outputs, translated into its width, by a softmax over cosine
    similarities (no trainable weights in the interaction itself).

    - `attention="gated"` (default): each prompt keeps itself and adds what it read, both standardized, the read
      part weighted by a similarity gate g = (1 + expected cosine of what it read) / 2 in [0, 1]. The other
      modality is heard from the first step (g = 1/2 at chance similarity) on every backbone, whatever the scales of
      its two towers, and weighs more the more relevant it is, less the less: "each modality takes in what is
      relevant from the other while keeping its own context". A softmax over both modalities' prompts together
      would not do this: a prompt's cosine with itself is 1, so at a low temperature it would take nearly all the
      weight and hear almost nothing of the other modality (METHOD.md step 5 gives the measurements).
    - `attention="cross"`: each prompt adds what it read, unstandardized and ungated (always the same total amount
      from the other side, at whatever scale the translator gives; kept for ablations).

    What a prompt reads of the other modality (`reads`): `"prompts"`, the other tower's prompt outputs (M entries);
    `"tokens"`, those and the other tower's whole token stream at that layer (its padding masked out), so a text
    prompt can find the patches that resemble what the text names, and a vision prompt the words that describe what
    it sees, by the same parameter-free similarity.
    """

    def __init__(
        self,
        text_size: int,
        vision_size: int,
        hidden_size: int,
        temperature: float,
        attention: str,
        memory_decay: float,
        reads: str,
        device: Optional[torch.device] = None,
    ) -> None:
        super().__init__()
        self.translate_text_to_vision = translator(text_size, hidden_size, vision_size, device)
        self.translate_vision_to_text = translator(vision_size, hidden_size, text_size, device)
        self.temperature = temperature
        self.attention = attention
        self.memory_decay = memory_decay
        self.reads = reads

    @property
    def dtype(self) -> torch.dtype:
        return self.translate_text_to_vision[0].weight.dtype

    @property
    def device(self) -> torch.device:
        return self.translate_text_to_vision[0].weight.device

    def initial_vision_prompt(self, text_prompt: torch.Tensor) -> torch.Tensor:
        """p_v(1) = G_t->v(p_t(1)): the first vision prompt is generated from the first text prompt."""
        with _in_own_dtype(self.device):
            return self.translate_text_to_vision(text_prompt.to(self.dtype))

    def consolidate(
        self,
        text: Optional[torch.Tensor],
        vision: Optional[torch.Tensor],
        previous: Optional[Memory],
        tokens: Optional[Tokens] = None,
        text_present: Optional[torch.Tensor] = None,
        image_present: Optional[torch.Tensor] = None,
    ) -> Memory:
        """Consolidate the prompt outputs of one interaction layer into memory, m(k) = c(k) + decay * m(k-1).

        `tokens` (both towers' token streams after that layer) are read too when the hub reads tokens. A tower that
        did not run gives None (its memory is None, and the other modality reads nothing of it); `text_present` /
        `image_present` ((batch,) bool, None: all present) close the gate of what a sample reads of a modality it
        lacks, so that it keeps only its own context."""
        with _in_own_dtype(self.device):
            return self._consolidate(text, vision, previous, tokens, text_present, image_present)

    def _consolidate(
        self,
        text: Optional[torch.Tensor],
        vision: Optional[torch.Tensor],
        previous: Optional[Memory],
        tokens: Optional[Tokens],
        text_present: Optional[torch.Tensor],
        image_present: Optional[torch.Tensor],
    ) -> Memory:
        text = None if text is None else text.to(self.dtype)
        vision = None if vision is None else vision.to(self.dtype)
        read_by_text = read_by_vision = (None, None)
        if vision is not None:
            read_by_text = _with_tokens(vision, tokens and tokens.vision, tokens and tokens.vision_mask)
        if text is not None:
            read_by_vision = _with_tokens(text, tokens and tokens.text, tokens and tokens.text_mask)
        memory = Memory(
            None if text is None else self.recall(text, self.translate_vision_to_text, *read_by_text, image_present),
            None
            if vision is None
            else self.recall(vision, self.translate_text_to_vision, *read_by_vision, text_present),  # fmt: skip
        )
        if previous is not None and self.memory_decay:
            memory = Memory(
                *(
                    None if new is None else new + self.memory_decay * old
                    for new, old in zip(memory, previous, strict=True)
                )
            )
        return memory

    def recall(
        self,
        own: torch.Tensor,
        translate: nn.Module,
        other: Optional[torch.Tensor],
        other_mask: Optional[torch.Tensor] = None,
        other_present: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """One modality's consolidated prompts: its own prompt outputs and what they read of the other's, translated
        into its width (nothing, where the other modality is absent)."""
        if other is None:
            return own if self.attention == "cross" else standardize(own)
        other = translate(other)
        weights, cosines = cosine_attention(own, other, self.temperature, other_mask)
        read = weights @ other
        if self.attention == "gated":
            read = (1 + (weights * cosines).sum(dim=-1, keepdim=True)) / 2 * standardize(read)
        if other_present is not None:
            # Selected, not multiplied by zero: whatever stands for an absent modality (NaN included) is not heard.
            read = torch.where(other_present.to(read.device)[:, None, None], read, 0.0)
        return own + read if self.attention == "cross" else standardize(own) + read
