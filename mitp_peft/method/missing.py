"""Samples with only an image or only a text: which modalities each sample has, checked once per call.

A batch says what is missing with per-sample masks (`image_present`, `text_present`: bool tensors of shape
(batch,)), or by leaving out one modality's inputs altogether (a text-only batch has no `pixel_values`): then that
tower does not run at all. Only an adapter created with `MITPConfig(missing_modalities=True)` takes missing samples:
its prompts know what is missing, its hub does not read an absent tower, and its head reads learned placeholders in
place of an absent tower's features (see `MITPAdapter`). Nothing is computed from the inputs of an absent modality:
a missing sample's placeholder image or text (whatever the batch holds there) never reaches its output.
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import torch

from .checks import require

IMAGE_PRESENT = "image_present"
TEXT_PRESENT = "text_present"
PRESENCE_INPUTS = (IMAGE_PRESENT, TEXT_PRESENT)


class Presence(NamedTuple):
    """Which samples of a batch have each modality."""

    image: Optional[torch.Tensor]
    """(batch,) bool, True where the sample has its image; None when every sample has it (or, with `run_image`
    False, none has)."""
    text: Optional[torch.Tensor]
    run_image: bool
    """Whether the vision tower runs: False when the batch holds no image input at all."""
    run_text: bool

    @property
    def complete(self) -> bool:
        """Every sample has both modalities: the adapter computes exactly what it computes without masks."""
        return self.image is None and self.text is None and self.run_image and self.run_text

    def has(self, modality: str, batch: int, device: torch.device) -> torch.Tensor:
        """(batch,) bool: which samples have `modality` ("image" or "text")."""
        mask, run = (self.image, self.run_image) if modality == "image" else (self.text, self.run_text)
        if mask is not None:
            return mask.to(device)
        return torch.full((batch,), run, dtype=torch.bool, device=device)


COMPLETE = Presence(None, None, True, True)


def presence(inputs: dict, aware: bool, batch: int, has_image: bool, has_text: bool) -> Presence:
    """The batch's presence, or an error that names the problem: masks of the wrong shape or type, a sample with
    neither modality, a text said present that is all padding, missing samples for an adapter that cannot take them.
    `has_image` / `has_text`: whether the batch holds that modality's inputs at all."""
    masks = {}
    for name, given in ((IMAGE_PRESENT, has_image), (TEXT_PRESENT, has_text)):
        mask = inputs.get(name)
        if mask is not None:
            if not torch.is_tensor(mask) or mask.dtype != torch.bool or tuple(mask.shape) != (batch,):
                shown = f"{mask.dtype} of shape {tuple(mask.shape)}" if torch.is_tensor(mask) else type(mask).__name__
                raise ValueError(
                    f"{name} must be a bool tensor of shape ({batch},), one flag per sample (True: present); got "
                    f"{shown}. Build it with torch.tensor([...], dtype=torch.bool)."
                )
            if not given:
                raise ValueError(
                    f"{name} is given but the batch holds no {name.split('_')[0]} inputs: leave the mask out for a "
                    "batch that lacks the modality altogether."
                )
        masks[name] = mask
    if masks[IMAGE_PRESENT] is None and masks[TEXT_PRESENT] is None and has_image and has_text:
        return COMPLETE
    if not has_image and not has_text:
        raise ValueError("The batch holds neither images nor texts: give pixel_values, input_ids, or both.")
    if not aware:
        unaware = (
            "but this MITP adapter was created without missing_modalities: it would compute them from placeholders "
            "it was never trained to ignore. Create the adapter with MITPConfig(missing_modalities=True), or give "
            "every sample both."
        )
        if not (has_image and has_text):
            raise ValueError(f"This batch has samples without an image or without a text, {unaware}")
        for name, mask in masks.items():
            if mask is not None:  # masks that say every sample is complete are true, and change nothing
                require(mask, f"{name} says a sample lacks its {name.split('_')[0]}, {unaware}")
        return COMPLETE
    found = Presence(masks[IMAGE_PRESENT], masks[TEXT_PRESENT], has_image, has_text)
    device = next(m.device for m in (*masks.values(), inputs.get("input_ids"), inputs.get("pixel_values"))
                  if torch.is_tensor(m))  # fmt: skip
    require(
        found.has("image", batch, device) | found.has("text", batch, device),
        "A sample has neither its image nor its text: drop it from the batch.",
    )
    attention = inputs.get("attention_mask")
    if masks[TEXT_PRESENT] is not None and attention is not None:
        require(
            ~masks[TEXT_PRESENT] | attention.bool().any(dim=-1),
            "text_present says a text is present whose attention_mask is all zeros (only padding): mark it missing "
            "(text_present False), or give its tokens.",
        )
    return found


def blank_absent(inputs: dict, found: Presence, columns: dict[str, tuple[str, ...]]) -> dict:
    """The inputs with zeros in the float inputs (`columns`: per modality, e.g. {"image": ("pixel_values",)}) of
    samples that lack that modality: whatever stands in their place, NaN or inf included, never enters a tower, so
    neither outputs nor gradients can carry it."""
    blanked = dict(inputs)
    for modality, mask in (("image", found.image), ("text", found.text)):
        for name in columns[modality]:
            value = inputs.get(name)
            if mask is not None and torch.is_tensor(value) and value.is_floating_point():
                keep = mask.to(value.device).reshape(-1, *[1] * (value.dim() - 1))
                blanked[name] = torch.where(keep, value, 0.0)
    return blanked
