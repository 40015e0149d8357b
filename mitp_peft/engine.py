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

from .checks import require
from .hub import Memory, Tokens, activate
from .missing import Presence, blank_absent, presence
from .towers import Tower, TowerPair, TowerState, VisionTower


class Encoded(NamedTuple):
    image_features: torch.Tensor
    text_features: torch.Tensor
    memory: Optional[Memory]
    """The hub memory after the last pair; computed only when the head uses it."""
    presence: Presence
    """Which samples had each modality."""


# Inputs that replace a tower's embedding and extraction layers: its states at the first interaction layer, as
# computed once by `mitp_peft.extraction`, and the layer pair they were taken at.
CACHED_TEXT_STATES = "mitp_text_states"
CACHED_VISION_STATES = "mitp_vision_states"
CACHED_LAYERS = "mitp_states_layers"
CACHE_INPUTS = (CACHED_TEXT_STATES, CACHED_VISION_STATES, CACHED_LAYERS)


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


def check_inputs(inputs: dict, vision: VisionTower, missing_modalities: bool = False) -> None:
    """Fail early, naming the problem, instead of with a shape error deep inside torch."""
    has_image, has_text = given(inputs)
    if not (has_image and has_text) and not missing_modalities:
        missing = [name for name, has in (("pixel_values", has_image), ("input_ids", has_text)) if not has]
        raise ValueError(
            f"MITP needs both an image and a text per sample; missing {missing}. Pass pixel_values (from the image "
            "processor) and input_ids (+ attention_mask) from the tokenizer; for samples that lack one, create the "
            "adapter with MITPConfig(missing_modalities=True)."
        )
    input_ids = inputs.get("input_ids")
    if input_ids is not None:
        if input_ids.dim() != 2:
            raise ValueError(f"input_ids must be (batch, tokens), got shape {tuple(input_ids.shape)}.")
        if input_ids.is_floating_point() or input_ids.dtype == torch.bool:
            raise ValueError(
                f"input_ids must be integer token ids, as the tokenizer gives them, got dtype {input_ids.dtype}. "
                "Pass the tokenizer's output as it is (or .long() it)."
            )
        for name in ("attention_mask", "token_type_ids", "position_ids"):
            value = inputs.get(name)
            if value is not None and tuple(value.shape) != tuple(input_ids.shape):
                raise ValueError(
                    f"{name} has shape {tuple(value.shape)} but input_ids {tuple(input_ids.shape)}; they must match."
                )
    pixel_values = inputs.get("pixel_values")
    if pixel_values is None:  # no images, or the vision tower starts from cached states (checked in _check_cache)
        return
    vision.check_pixels(pixel_values)
    if input_ids is not None and pixel_values.shape[0] != input_ids.shape[0]:
        raise ValueError(
            f"Image and text batch sizes differ: pixel_values has {pixel_values.shape[0]} samples, input_ids "
            f"{input_ids.shape[0]}. MITP classifies (image, text) pairs: give one text per image."
        )


def given(inputs: dict) -> tuple[bool, bool]:
    """Whether the batch holds image inputs (pixels or cached vision states) and text inputs at all."""
    has_image = inputs.get("pixel_values") is not None or inputs.get(CACHED_VISION_STATES) is not None
    return has_image, inputs.get("input_ids") is not None


def batch_size(inputs: dict) -> int:
    for name in ("input_ids", "pixel_values", CACHED_VISION_STATES):
        if inputs.get(name) is not None:
            return inputs[name].shape[0]
    raise ValueError("The batch holds neither images nor texts: give pixel_values, input_ids, or both.")


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


def encode(towers: TowerPair, adapter: nn.Module, inputs: dict, taken_at: Optional[tuple[int, int]] = None) -> Encoded:
    """Run both towers with the temporal prompts of `adapter` (an `MITPAdapter`, which calls this) and return their
    pooled features.

    Cached states in `inputs` are taken at the adapter's first interaction layers (as `mitp_peft.extraction` writes
    them, checked), or at the layers `taken_at` (text, vision) names, at or below those, when the caller took them
    itself (a batch shared by several adapters, see `MITPModel`). A missing-aware adapter takes samples without an
    image or a text (see `mitp_peft.missing`): a tower whose inputs the batch lacks altogether does not run."""
    aware = adapter.missing_modalities
    check_inputs(inputs, towers.vision, aware)
    batch = batch_size(inputs)
    found = presence(inputs, aware, batch, *given(inputs))
    if not found.complete:
        inputs = blank_absent(inputs, found, {"image": ("pixel_values", CACHED_VISION_STATES),
                                              "text": (CACHED_TEXT_STATES,)})  # fmt: skip
    text_layers, vision_layers = adapter.text_layers, adapter.vision_layers
    num_prompts = adapter.prompt_length
    if found.run_text:
        inputs = fit_text(inputs, towers.text, num_prompts)
    starts = taken_at or (text_layers[0], vision_layers[0])
    text, vision = (
        _start(tower, layers, num_prompts, inputs, cached, start) if run else None
        for tower, layers, cached, start, run in (
            (towers.text, text_layers, CACHED_TEXT_STATES, starts[0], found.run_text),
            (towers.vision, vision_layers, CACHED_VISION_STATES, starts[1], found.run_image),
        )
    )
    if taken_at is None and any(inputs.get(name) is not None for name in (CACHED_TEXT_STATES, CACHED_VISION_STATES)):
        _check_cache(inputs, text_layers[0], vision_layers[0], batch)
    streams = [(stream, layers) for stream, layers in ((text, text_layers), (vision, vision_layers)) if stream]

    # Extraction layers below the first interaction layer are frozen and see no prompt: keep no activations.
    with torch.no_grad(), without_checkpointing(extraction_layers(towers, text_layers[0], vision_layers[0])):
        for stream, layers in streams:
            stream.run_until(layers[0])

    hub = adapter.hub
    prompt_t, prompt_v = adapter.first_prompts(batch, found)
    memory: Optional[Memory] = None
    last = len(text_layers) - 1
    for pair in range(len(text_layers)):
        for stream, layers in streams:
            stream.run_until(layers[pair])
        if memory is not None:
            prompt_t = text and text.activate(memory.text)
            prompt_v = vision and vision.activate(memory.vision)
        if adapter.text_layer_prompts is not None:
            prompt_t = None if text is None else prompt_t + adapter.text_layer_prompts[pair].to(prompt_t.dtype)
            prompt_v = None if vision is None else prompt_v + adapter.vision_layer_prompts[pair].to(prompt_v.dtype)
        outputs_t = text and text.acquire(pair, prompt_t)
        outputs_v = vision and vision.acquire(pair, prompt_v)
        # After the last pair the hub has no next layer to feed, unless the head reads its memory.
        if pair < last or adapter.head_uses_memory:
            tokens = None
            if hub.reads == "tokens":
                tokens = Tokens(text and text.hidden, text and text.state.token_mask, vision and vision.hidden,
                                vision and vision.state.token_mask)  # fmt: skip
            memory = hub.consolidate(outputs_t, outputs_v, memory, tokens, found.text, found.image)

    image = adapter.fill_absent("image", vision and vision.pool(), found, batch)
    text_features = adapter.fill_absent("text", text and text.pool(), found, batch)
    return Encoded(image, text_features, memory if adapter.head_uses_memory else None, found)


# Inputs with one column per text token, trimmed together when the text must make room for the prompts.
TEXT_COLUMNS = ("input_ids", "attention_mask", "token_type_ids", "position_ids", CACHED_TEXT_STATES)


def fit_text(inputs: dict, tower: Tower, num_prompts: int) -> dict:
    """The inputs with the text trimmed to what fits next to the prompts (see `Tower.fitted_length`), before the
    embeddings run: a text longer than the tower's positions would otherwise fail inside them, unexplained."""
    length = tower.fitted_length(inputs, num_prompts)
    if length is None:
        return inputs
    return {
        name: value[:, :length] if name in TEXT_COLUMNS and value is not None else value
        for name, value in inputs.items()
    }


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


def _check_cache(inputs: dict, first_text: int, first_vision: int, batch: int) -> None:
    """Cached states are only valid at the layers they were taken at: refuse a cache made for other layers."""
    for name in (CACHED_TEXT_STATES, CACHED_VISION_STATES):
        if inputs.get(name) is not None and inputs[name].shape[0] != batch:
            raise ValueError(f"{name} has {inputs[name].shape[0]} samples but input_ids {batch}.")
    taken_at = inputs.get(CACHED_LAYERS)
    if taken_at is None:
        raise ValueError(
            f"Cached states need {CACHED_LAYERS} (the layer pair they were taken at), as written by "
            "mitp_peft.extraction.cache_extraction."
        )
    expected = torch.tensor([first_text, first_vision], device=taken_at.device)
    require(
        taken_at == expected,
        f"The cached states were taken at other layers than this adapter's first interaction layers "
        f"[{first_text}, {first_vision}] (text, vision). Rebuild the cache with this adapter.",
        lambda: f" They were taken at {taken_at[0].tolist()}.",
    )
