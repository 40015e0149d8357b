"""Loading an MITP adapter from a folder or hub repo in one call."""

from __future__ import annotations

from typing import Any, Optional

from peft import PeftConfig, PeftModel
from transformers import AutoModel


def from_pretrained(
    adapter: str,
    base_model_name_or_path: Optional[str] = None,
    is_trainable: bool = False,
    **base_model_kwargs: Any,
) -> PeftModel:
    """Load the backbone an adapter names, then the adapter onto it.

    `base_model_name_or_path` overrides the backbone recorded in the adapter config (e.g. a local copy of it).
    `base_model_kwargs` go to the backbone's `from_pretrained` (e.g. `dtype=torch.bfloat16`).
    """
    config = PeftConfig.from_pretrained(adapter)
    base = base_model_name_or_path or config.base_model_name_or_path
    if not base:
        raise ValueError(
            f"The adapter at {adapter!r} does not record its base model; pass base_model_name_or_path=... ."
        )
    try:
        model = AutoModel.from_pretrained(base, **base_model_kwargs)
    except OSError as error:
        raise OSError(
            f"Could not load {base!r}, the base model of the adapter at {adapter!r}. Without hub access "
            "(HF_HUB_OFFLINE=1 or no network) it must be a local folder or already in the local cache: pass "
            "base_model_name_or_path='/path/to/the/base/model'."
        ) from error
    return PeftModel.from_pretrained(model, adapter, is_trainable=is_trainable)
