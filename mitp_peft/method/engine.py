"""The joint forward of both towers, interleaved layer by layer (METHOD.md steps 2-8).

The hub at pair k needs the prompt outputs of both towers at pair k, so the towers cannot run one after the other:
this module drives them layer by layer through their tower adapters and never names a backbone family.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import NamedTuple, Optional

import torch
from torch import nn

from ..towers import Tower, TowerPair, TowerState
from .hub import Memory, MemoryHub, Tokens, activate
from .inputs import CACHED_TEXT_STATES, CACHED_VISION_STATES, Batch


class Encoded(NamedTuple):
    image_features: Optional[torch.Tensor]
    """Pooled; None when the vision tower did not run (the batch holds no image)."""
    text_features: Optional[torch.Tensor]
    memory: Optional[Memory]
    """The hub memory after the last pair; kept only when asked for (the head reads it)."""


class _Stream:
    """One tower's token stream during the joint forward, with the two masks it needs (built once per call)."""

    def __init__(
        self, tower: Tower, state: TowerState, layer_indices: Sequence[int], num_prompts: int, start: int = 0
    ) -> None:
        self.tower = tower
        self.state = state
        self.hidden = self.state.hidden
        self.indices = list(layer_indices)
        self.next_layer = start
        self.plain_mask = tower.attention_mask(self.state, 0)
        self.prompt_mask = tower.attention_mask(self.state, num_prompts)

    def run_until(self, stop: int) -> None:
        """Run the prompt-free layers from where the stream stands up to (not including) layer `stop`."""
        self.hidden = self.tower.run(self.hidden, self.plain_mask, self.next_layer, stop)
        self.next_layer = max(self.next_layer, stop)

    def acquire(self, pair: int, prompts: torch.Tensor) -> torch.Tensor:
        """Run interaction layer `pair` on `[tokens ; prompts]`; keep the tokens, return the prompt outputs."""
        length = self.hidden.shape[1]
        joint = torch.cat([self.hidden, prompts.to(self.hidden.dtype)], dim=1)
        out = self.tower.run_layer(self.tower.layers[self.indices[pair]], joint, self.prompt_mask)
        self.hidden = out[:, :length]
        self.next_layer = self.indices[pair] + 1
        return out[:, length:]

    def activate(self, memory: torch.Tensor) -> torch.Tensor:
        return activate(memory, self.hidden, self.state.token_mask)

    def pool(self) -> torch.Tensor:
        self.run_until(self.tower.num_layers)
        return self.tower.pool(self.state, self.hidden)


@contextmanager
def without_checkpointing(layers: Sequence[nn.Module]) -> Iterator[None]:
    """Layers run under no_grad keep no activations anyway; checkpointing them would only warn (reentrant)."""
    switched = [layer for layer in layers if getattr(layer, "gradient_checkpointing", False)]
    for layer in switched:
        layer.gradient_checkpointing = False
    try:
        yield
    finally:
        for layer in switched:
            layer.gradient_checkpointing = True


def extraction_layers(towers: TowerPair, first_text: int, first_vision: int) -> list[nn.Module]:
    """The frozen, prompt-free layers below the first interaction layers of both towers."""
    return [*towers.text.layers[:first_text], *towers.vision.layers[:first_vision]]


@torch.no_grad()
def tower_states(tower: Tower, inputs: dict, first: int) -> torch.Tensor:
    """A tower's token stream at layer `first`, run prompt-free from the embeddings (no activations kept)."""
    with without_checkpointing(tower.layers[:first]):
        state = tower.embed(inputs)
        return tower.run(state.hidden, tower.attention_mask(state, 0), 0, first)


def extract_states(towers: TowerPair, inputs: dict, first_text: int, first_vision: int) -> dict[str, torch.Tensor]:
    """Both towers' token streams at the given layers (see `tower_states`)."""
    return {
        CACHED_TEXT_STATES: tower_states(towers.text, inputs, first_text),
        CACHED_VISION_STATES: tower_states(towers.vision, inputs, first_vision),
    }


def encode(
    towers: TowerPair,
    batch: Batch,
    layers: tuple[Sequence[int], Sequence[int]],
    prompts: tuple[torch.Tensor, torch.Tensor],
    layer_prompts: Optional[tuple[torch.Tensor, torch.Tensor]],
    hub: MemoryHub,
    keep_memory: bool,
) -> Encoded:
    """Run both towers with temporal prompts and return their pooled features.

    `layers`: the interaction layers (text, vision), paired; `prompts`: the first prompts p_t(1), p_v(1) for each
    sample; `layer_prompts`: the learned prompts added at each pair, (pairs, prompts, width) per tower, if any;
    `keep_memory`: whether the hub consolidates after the last pair too (the head reads that memory). A tower whose
    inputs the batch lacks altogether does not run (its features are None); cached states start a tower at the layer
    they were taken at (`batch.taken_at`)."""
    text_layers, vision_layers = layers
    found, num_prompts = batch.presence, prompts[0].shape[1]
    starts = batch.taken_at or (text_layers[0], vision_layers[0])
    text, vision = (
        _start(tower, tower_layers, num_prompts, batch.inputs, cached, start) if run else None
        for tower, tower_layers, cached, start, run in (
            (towers.text, text_layers, CACHED_TEXT_STATES, starts[0], found.run_text),
            (towers.vision, vision_layers, CACHED_VISION_STATES, starts[1], found.run_image),
        )
    )
    streams = [(stream, layers) for stream, layers in ((text, text_layers), (vision, vision_layers)) if stream]

    # Extraction layers below the first interaction layer are frozen and see no prompt: keep no activations.
    with torch.no_grad(), without_checkpointing(extraction_layers(towers, text_layers[0], vision_layers[0])):
        for stream, stream_layers in streams:
            stream.run_until(stream_layers[0])

    prompt_t, prompt_v = prompts
    memory: Optional[Memory] = None
    last = len(text_layers) - 1
    for pair in range(len(text_layers)):
        for stream, stream_layers in streams:
            stream.run_until(stream_layers[pair])
        if memory is not None:
            prompt_t = text and text.activate(memory.text)
            prompt_v = vision and vision.activate(memory.vision)
        if layer_prompts is not None:
            prompt_t = None if text is None else prompt_t + layer_prompts[0][pair].to(prompt_t.dtype)
            prompt_v = None if vision is None else prompt_v + layer_prompts[1][pair].to(prompt_v.dtype)
        outputs_t = text and text.acquire(pair, prompt_t)
        outputs_v = vision and vision.acquire(pair, prompt_v)
        # After the last pair the hub has no next layer to feed, unless the head reads its memory.
        if pair < last or keep_memory:
            tokens = None
            if hub.reads == "tokens":
                tokens = Tokens(text and text.hidden, text and text.state.token_mask, vision and vision.hidden,
                                vision and vision.state.token_mask)  # fmt: skip
            memory = hub.consolidate(outputs_t, outputs_v, memory, tokens, found.text, found.image)

    return Encoded(vision and vision.pool(), text and text.pool(), memory if keep_memory else None)


def _start(
    tower: Tower, layers: Sequence[int], num_prompts: int, inputs: dict, cached_name: str, start: int
) -> _Stream:
    """A stream at the embeddings, or at layer `start` when its states were cached there."""
    cached = inputs.get(cached_name)
    if cached is None:
        return _Stream(tower, tower.embed(inputs), layers, num_prompts)
    if cached.dim() != 3 or cached.shape[-1] != tower.hidden_size:
        raise ValueError(
            f"{cached_name} must be (batch, tokens, {tower.hidden_size}) for this backbone, got {tuple(cached.shape)}."
        )
    hidden = cached.to(device=tower.model.device, dtype=tower.model.dtype)
    return _Stream(tower, tower.state(hidden, inputs), layers, num_prompts, start=start)
