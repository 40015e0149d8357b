"""Sharing MITP adapters: load one (with the backbone it names) in one call, push one with its card."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Optional

from huggingface_hub import CommitInfo, CommitOperationAdd, HfApi
from huggingface_hub import constants as hub_constants
from peft import PeftConfig, PeftModel
from transformers import AutoModel

from .tuner.loading import check_adapter_folder
from .tuner.model import tuner_of


def describe_training(
    model: PeftModel,
    dataset: Optional[str] = None,
    metrics: Optional[dict[str, float]] = None,
    training: Optional[dict[str, Any]] = None,
    repo_id: Optional[str] = None,
) -> None:
    """Attach what the active adapter's card should say about its training; the next save writes it."""
    tuner = tuner_of(model)
    info = tuner.peft_config[tuner.active_adapter_name].card_info
    given = dict(dataset=dataset, metrics=metrics, training=training, repo_id=repo_id)
    info.update({key: value for key, value in given.items() if value is not None})


def from_pretrained(
    adapter: str,
    base_model_name_or_path: Optional[str] = None,
    is_trainable: bool = False,
    **base_model_kwargs: Any,
) -> PeftModel:
    """Load the backbone an adapter names, then the adapter onto it.

    `base_model_name_or_path` overrides the backbone recorded in the adapter config (e.g. a local copy of it).
    `base_model_kwargs` go to the backbone's `from_pretrained` (e.g. `dtype=torch.bfloat16`). A local adapter folder
    is checked first, so that a missing, truncated or garbled file is named instead of failing deep inside peft.
    """
    if Path(adapter).is_dir():
        check_adapter_folder(Path(adapter))
    try:
        config = PeftConfig.from_pretrained(adapter)
    except (OSError, ValueError) as error:
        if Path(adapter).exists():
            raise
        if hub_constants.HF_HUB_OFFLINE:
            raise OSError(
                f"{adapter!r} is not a local folder, and the hub is offline (HF_HUB_OFFLINE is set), so it was not "
                "looked up there. Give the folder of a saved adapter, or unset HF_HUB_OFFLINE to download it."
            ) from error
        raise OSError(
            f"{adapter!r} is not a local folder, and the hub could not give it ({error}). Check the repository id "
            "and your network (or pass a token for a private repository)."
        ) from error
    base = base_model_name_or_path or config.base_model_name_or_path
    if not base:
        raise ValueError(
            f"The adapter at {adapter!r} does not record its base model; pass base_model_name_or_path=..."
        )
    try:
        model = AutoModel.from_pretrained(base, **base_model_kwargs)
    except OSError as error:
        tried = "" if os.path.isdir(base) else f" There is no folder {os.path.abspath(base)}, and as a hub id it "
        tried += "could not be loaded." if tried else ""
        if base_model_name_or_path:
            raise OSError(
                f"Could not load the base model {base!r} given as base_model_name_or_path ({error}).{tried} Give the "
                "folder of a dual encoder saved with save_pretrained, or a hub id reachable from here."
            ) from error
        raise OSError(
            f"Could not load {base!r}, the base model of the adapter at {adapter!r}.{tried} Without hub access "
            "(HF_HUB_OFFLINE=1 or no network) it must be a local folder or already in the local cache: pass "
            "base_model_name_or_path='/path/to/the/base/model'."
        ) from error
    return PeftModel.from_pretrained(model, adapter, is_trainable=is_trainable)


def push_to_hub(
    model: PeftModel,
    repo_id: str,
    private: Optional[bool] = None,
    token: Optional[str] = None,
    commit_message: str = "Upload MITP adapter",
    revision: Optional[str] = None,
    create_pr: bool = False,
) -> CommitInfo:
    """Upload the adapter files and its MITP model card in one commit.

    Use this rather than `model.push_to_hub`: transformers' push replaces README.md with a generic card after saving.
    """
    api = HfApi()
    repo_id = api.create_repo(repo_id, private=private, token=token, exist_ok=True).repo_id
    describe_training(model, repo_id=repo_id)  # the card's usage snippet names the repo
    with tempfile.TemporaryDirectory() as folder:
        model.save_pretrained(folder)
        files = sorted(path for path in Path(folder).rglob("*") if path.is_file())
        operations = [
            CommitOperationAdd(path_in_repo=path.relative_to(folder).as_posix(), path_or_fileobj=path.read_bytes())
            for path in files
        ]
    return api.create_commit(
        repo_id,
        operations=operations,
        commit_message=commit_message,
        token=token,
        revision=revision,
        create_pr=create_pr,
    )
