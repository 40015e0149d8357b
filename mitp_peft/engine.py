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

from .hub import Memory, MemoryHub, activate
from .layer import MITPLayer
from .towers import Tower, TowerPair, TowerState


class Encoded(NamedTuple):
    image_features: torch.Tensor
    text_features: torch.Tensor
    memory: Optional[Memory]
    """The hub memory after the last pair; computed only when the head uses it."""


class _Stream:
    """One tower's token stream during the joint forward, with the two masks it needs (built once per call)."""

    def __init__(self, tower: Tower, state: TowerState, layer_indices: Sequence[int], num_prompts: int) -> None:
        self.tower = tower
        self.state = tower.fit_prompts(state, num_prompts)
        self.hidden = self.state.hidden
        self.interaction = [tower.layers[i] for i in layer_indices]
        self.indices = list(layer_indices)
        self.next_layer = 0
        self.plain_mask = tower.attention_mask(self.state, 0)
        self.prompt_mask = tower.attention_mask(self.state, num_prompts)

    def run_until(self, stop: int) -> None:
        """Run the prompt-free layers from where the stream stands up to (not including) layer `stop`."""
        for layer in self.tower.layers[self.next_layer : stop]:
            self.hidden = self.tower.run_layer(layer, self.hidden, self.plain_mask)
        self.next_layer = max(self.next_layer, stop)

    def acquire(self, pair: int, prompts: torch.Tensor) -> torch.Tensor:
        layer: MITPLayer = self.interaction[pair]
        self.hidden, prompt_outputs = layer.acquire(self.hidden, prompts, self.prompt_mask, self.tower.run_layer)
        self.next_layer = self.indices[pair] + 1
        return prompt_outputs

    def activate(self, memory: torch.Tensor) -> torch.Tensor:
        return activate(memory, self.hidden, self.state.token_mask)

    def pool(self) -> torch.Tensor:
        self.run_until(self.tower.num_layers)
        return self.tower.pool(self.state, self.hidden)


@contextmanager
def _without_checkpointing(layers: Sequence[nn.Module]) -> Iterator[None]:
    """Layers run under no_grad keep no activations anyway; checkpointing them would only warn (reentrant)."""
    switched = [layer for layer in layers if getattr(layer, "gradient_checkpointing", False)]
    for layer in switched:
        layer.gradient_checkpointing = False
    try:
        yield
    finally:
        for layer in switched:
            layer.gradient_checkpointing = True


def check_inputs(inputs: dict, pixel_ndim: int) -> None:
    """Fail early, naming the problem, instead of with a shape error deep inside torch."""
    missing = [name for name in ("pixel_values", "input_ids") if inputs.get(name) is None]
    if missing:
        raise ValueError(
            f"MITP needs both an image and a text per sample; missing {missing}. Pass pixel_values (from the image "
            "processor) and input_ids (+ attention_mask) from the tokenizer."
        )
    pixel_values, input_ids = inputs["pixel_values"], inputs["input_ids"]
    if input_ids.dim() != 2:
        raise ValueError(f"input_ids must be (batch, tokens), got shape {tuple(input_ids.shape)}.")
    if pixel_values.dim() != pixel_ndim:
        raise ValueError(
            f"pixel_values must have {pixel_ndim} dimensions, batch first, as the image processor returns them; got "
            f"shape {tuple(pixel_values.shape)}."
        )
    if pixel_values.shape[0] != input_ids.shape[0]:
        raise ValueError(
            f"Image and text batch sizes differ: pixel_values has {pixel_values.shape[0]} samples, input_ids "
            f"{input_ids.shape[0]}. MITP classifies (image, text) pairs: give one text per image."
        )
    for name in ("attention_mask", "token_type_ids", "position_ids"):
        value = inputs.get(name)
        if value is not None and tuple(value.shape) != tuple(input_ids.shape):
            raise ValueError(
                f"{name} has shape {tuple(value.shape)} but input_ids {tuple(input_ids.shape)}; they must match."
            )


def encode(
    towers: TowerPair,
    text_layers: Sequence[int],
    vision_layers: Sequence[int],
    text_prompt: nn.Parameter,
    hub: MemoryHub,
    keep_memory: bool,
    inputs: dict,
) -> Encoded:
    """Run both towers with MITP's temporal prompts and return their pooled features."""
    check_inputs(inputs, towers.vision.pixel_ndim)
    num_prompts = text_prompt.shape[0]
    text = _Stream(towers.text, towers.text.embed(inputs), text_layers, num_prompts)
    vision = _Stream(towers.vision, towers.vision.embed(inputs), vision_layers, num_prompts)

    # Extraction layers below the first interaction layer are frozen and see no prompt: keep no activations.
    extraction = [*towers.text.layers[: text_layers[0]], *towers.vision.layers[: vision_layers[0]]]
    with torch.no_grad(), _without_checkpointing(extraction):
        text.run_until(text_layers[0])
        vision.run_until(vision_layers[0])

    batch = text.hidden.shape[0]
    prompt_t = text_prompt.expand(batch, -1, -1)
    prompt_v = hub.initial_vision_prompt(text_prompt).expand(batch, -1, -1)
    memory: Optional[Memory] = None
    last = len(text_layers) - 1
    for pair in range(len(text_layers)):
        text.run_until(text_layers[pair])
        vision.run_until(vision_layers[pair])
        if memory is not None:
            prompt_t, prompt_v = text.activate(memory.text), vision.activate(memory.vision)
        outputs_t = text.acquire(pair, prompt_t)
        outputs_v = vision.acquire(pair, prompt_v)
        # After the last pair the hub has no next layer to feed, unless the head reads its memory.
        if pair < last or keep_memory:
            memory = hub.consolidate(outputs_t, outputs_v, memory)

    return Encoded(vision.pool(), text.pool(), memory if keep_memory else None)
