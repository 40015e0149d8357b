"""The inputs of MITP's forward, checked once into one `Batch`: which names it takes, their shapes and types, which
samples have each modality, the text fitted next to the prompts, and where cached states were taken."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional

import torch

from ..towers import Tower, TowerPair, VisionTower
from .checks import require
from .missing import PRESENCE_INPUTS, Presence, blank_absent, presence

# Inputs that replace a tower's embedding and extraction layers: its states at the first interaction layer, as
# computed once by `mitp_peft.extraction`, and the layer pair they were taken at.
CACHED_TEXT_STATES = "mitp_text_states"
CACHED_VISION_STATES = "mitp_vision_states"
CACHED_LAYERS = "mitp_states_layers"
CACHE_INPUTS = (CACHED_TEXT_STATES, CACHED_VISION_STATES, CACHED_LAYERS)


def check_inputs(inputs: dict, vision: VisionTower, missing_modalities: bool = False) -> tuple[bool, bool]:
    """Fail early, naming the problem, instead of with a shape error deep inside torch; whether the batch holds image
    and text inputs at all (`given`)."""
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
    if pixel_values is None:  # no images, or the vision tower starts from cached states (checked in check_cache)
        return has_image, has_text
    vision.check_pixels(pixel_values)
    if input_ids is not None and pixel_values.shape[0] != input_ids.shape[0]:
        raise ValueError(
            f"Image and text batch sizes differ: pixel_values has {pixel_values.shape[0]} samples, input_ids "
            f"{input_ids.shape[0]}. MITP classifies (image, text) pairs: give one text per image."
        )
    return has_image, has_text


def given(inputs: dict) -> tuple[bool, bool]:
    """Whether the batch holds image inputs (pixels or cached vision states) and text inputs at all."""
    has_image = inputs.get("pixel_values") is not None or inputs.get(CACHED_VISION_STATES) is not None
    return has_image, inputs.get("input_ids") is not None


def batch_size(inputs: dict) -> int:
    for name in ("input_ids", "pixel_values", CACHED_VISION_STATES):
        if inputs.get(name) is not None:
            return inputs[name].shape[0]
    raise ValueError("The batch holds neither images nor texts: give pixel_values, input_ids, or both.")


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


def check_cache(inputs: dict, first_text: int, first_vision: int, batch: int) -> None:
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


def input_names(towers: TowerPair) -> tuple[str, ...]:
    """Every input MITP's forward reads with this backbone: the towers' inputs, the presence masks of missing
    modalities, and the cached states of `mitp_peft.extraction`."""
    names = ["input_ids", "pixel_values", *towers.text.input_names, *towers.vision.input_names]
    return tuple(dict.fromkeys([*names, *PRESENCE_INPUTS, *CACHE_INPUTS]))


def check_input_names(given: dict, towers: TowerPair) -> None:
    """Refuse inputs MITP does not read with this backbone, naming those it does."""
    accepted = input_names(towers)
    unexpected = sorted(set(given) - set(accepted))
    if unexpected:
        raise TypeError(
            f"MITP's forward got unexpected argument(s) {unexpected}. With this backbone it takes "
            f"{sorted(accepted)} and labels; the backbone's own outputs are available under "
            "`with model.disable_adapter():`."
        )


@dataclass(frozen=True)
class Batch:
    """A batch as the joint forward reads it, checked once (`prepare`; for several adapters, `mixed.shared_batch`)."""

    inputs: dict
    """The towers' inputs: absent modalities blanked, the text fitted next to the prompts, maybe cached states."""
    size: int
    presence: Presence
    """Which samples have each modality."""
    taken_at: Optional[tuple[int, int]] = None
    """The (text, vision) layers cached states in `inputs` were taken at; None when the towers start from their
    embeddings."""

    def select(self, index: torch.Tensor) -> Batch:
        """The samples at `index` (a batch shared by several adapters, split per adapter)."""
        rows = {
            key: value[index] if torch.is_tensor(value) and value.shape[:1] == (self.size,) else value
            for key, value in self.inputs.items()
        }
        return replace(self, inputs=rows, size=len(index))


def prepare(inputs: dict, towers: TowerPair, aware: bool, num_prompts: int, first_layers: tuple[int, int]) -> Batch:
    """One adapter's batch: `aware` (missing_modalities) lets samples lack a modality; `num_prompts` makes room for
    the prompts; cached states must have been taken at `first_layers` (text, vision), as `mitp_peft.extraction`
    writes them."""
    has = check_inputs(inputs, towers.vision, aware)
    size = batch_size(inputs)
    found = presence(inputs, aware, size, *has)
    if not found.complete:
        inputs = blank_absent(inputs, found, {"image": ("pixel_values", CACHED_VISION_STATES),
                                              "text": (CACHED_TEXT_STATES,)})  # fmt: skip
    if found.run_text:
        inputs = fit_text(inputs, towers.text, num_prompts)
    taken_at = None
    if any(inputs.get(name) is not None for name in (CACHED_TEXT_STATES, CACHED_VISION_STATES)):
        check_cache(inputs, *first_layers, size)
        taken_at = first_layers
    return Batch(inputs, size, found, taken_at)
