"""What an adapter loads, checked: its files (a missing, truncated or pickled file is named before peft reads it) and
its weights (an adapter loads completely or not at all)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open

CONFIG_FILE = "adapter_config.json"
WEIGHTS_FILE = "adapter_model.safetensors"
PICKLED_WEIGHTS_FILE = "adapter_model.bin"


def check_adapter_folder(folder: Path) -> None:
    """Refuse, naming the file and the fix, an adapter folder that peft would fail on with an unrelated error."""
    config = folder / CONFIG_FILE
    if not config.is_file():
        raise FileNotFoundError(
            f"{folder} has no {CONFIG_FILE}: it is not a saved adapter (save_pretrained writes one)."
        )
    try:
        json.loads(config.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{config} is not valid JSON ({error}); save the adapter again.") from error
    check_weights(folder)
    if not (folder / WEIGHTS_FILE).is_file():
        raise FileNotFoundError(f"{folder} has no {WEIGHTS_FILE} (the adapter's weights).")


def check_weights(folder: Path) -> None:
    """Refuse the adapter's weights where they are pickled or their safetensors file is truncated or garbled; a
    folder without weights passes (peft names that itself)."""
    weights = folder / WEIGHTS_FILE
    if not weights.is_file():
        if (folder / PICKLED_WEIGHTS_FILE).is_file():
            raise ValueError(
                f"{folder} holds its weights as {PICKLED_WEIGHTS_FILE}, a pickle: mitp-peft loads weights only from "
                f"safetensors, never from pickled files. Save the adapter again with save_pretrained, which writes "
                f"{WEIGHTS_FILE}."
            )
        return
    try:
        with safe_open(weights, "pt") as opened:
            opened.keys()
    except SafetensorError as error:
        raise ValueError(
            f"{weights} is truncated or not a safetensors file ({error}); copy or save the adapter again."
        ) from error


def check_fills_adapter(
    weights: dict[str, torch.Tensor], own: dict[str, torch.Tensor], inside: str, plain: Callable[[str], str]
) -> None:
    """Refuse `weights` (model keys) unless they fill exactly the tensors of `own` whose keys hold `inside` (one
    adapter's), with their shapes; `plain` names a key as the checkpoint does.

    peft would only warn about missing keys and run with a random head (an adapter_config.json edited to another
    head, a file with a tensor deleted), and torch would fail with a bare size mismatch on weights saved with other
    settings (a checkpoint resumed with another prompt_length, say).
    """
    expected = {key for key in own if inside in key}
    missing, unexpected = sorted(expected - set(weights)), sorted(set(weights) - expected)
    if missing or unexpected:
        raise ValueError(
            f"These weights do not fill this MITP adapter exactly: missing {[plain(k) for k in missing]}, unexpected "
            f"{[plain(k) for k in unexpected]}. An adapter loads completely or not at all: load it with the "
            "adapter_config.json it was saved with (an edited head or other settings give other tensors), or save it "
            "again if its file lost tensors."
        )
    mismatched = [k for k, v in weights.items() if k in own and tuple(own[k].shape) != tuple(v.shape)]
    if mismatched:
        key = mismatched[0]
        raise ValueError(
            f"These weights do not fit this MITP adapter: their {plain(key)} has shape {tuple(weights[key].shape)}, "
            f"this adapter's is {tuple(own[key].shape)} ({len(mismatched)} tensor(s) differ). Weights load only "
            "into an adapter with the settings they were saved with (prompt_length, head, head_hidden_size, "
            "layer_prompts, translator_hidden_size, num_labels, ...): load them with their own "
            "adapter_config.json (PeftModel.from_pretrained on their folder)."
        )
