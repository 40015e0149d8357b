"""Checks of a saved adapter's files, so that a missing, truncated or pickled file is named before peft reads it."""

from __future__ import annotations

import json
from pathlib import Path

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
