"""The model card of an MITP adapter, rendered with `huggingface_hub.ModelCard` from `model_cards/mitp_adapter.md`.

Saving an adapter (`save_pretrained`, Trainer checkpoints) writes it as the adapter's README.md. What only training
knows, the dataset, the metrics and the training settings, is attached with `mitp_peft.describe_training` beforehand.
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path
from typing import Any, Optional

from huggingface_hub import EvalResult, ModelCard, ModelCardData
from peft import PeftConfig

TEMPLATE = "mitp_adapter.md"
# Installed, the template ships inside the package; in a plain checkout it is the repository's model_cards/ folder.
CHECKOUT_TEMPLATE = Path(__file__).resolve().parents[2] / "model_cards" / TEMPLATE
MAX_LISTED_LABELS = 40
# The hub has no task for classifying image-text pairs; image classification is the nearest one it indexes.
PIPELINE_TAG = "image-classification"


def render_card(config: PeftConfig, settings: dict[str, Any]) -> ModelCard:
    """The card of a created MITP adapter (from its `MITPConfig`): metadata the hub indexes, usage that works as
    written, every MITP setting, results, citation.

    `settings` are the MITPConfig fields the card lists (its method settings and what came from the data), with
    their values. The rest comes from the config alone: `built_for`
    (the backbone and the adapter's size) and `card_info`, which `mitp_peft.describe_training` fills with `dataset`
    (a hub id or name), `metrics` ({name: value}), `training` ({setting: value}) and `repo_id` (where the adapter is
    shared; the usage snippet names it).
    """
    info = config.card_info
    built_for = config.built_for
    backbone_class, backbone_params = built_for["backbone"], built_for["parameters"]
    trainable_params = built_for["adapter_parameters"]
    base = config.base_model_name_or_path or "unknown base model"
    repo_id = info.get("repo_id") or "path/to/this/adapter"
    dataset = info.get("dataset")
    metrics = info.get("metrics") or {}
    model_name = repo_id.split("/")[-1]
    eval_results = [
        EvalResult(
            task_type=PIPELINE_TAG,
            task_name="Image-text classification",
            dataset_type=dataset or "custom",
            dataset_name=dataset or "custom",
            metric_type=name,
            metric_value=value,
        )
        for name, value in metrics.items()
    ]
    card_data = ModelCardData(
        library_name="peft",
        base_model=config.base_model_name_or_path,
        pipeline_tag=PIPELINE_TAG,
        tags=sorted(
            {"mitp", "peft", "transformers", "image-text-classification"}
            | ({f"base_model:adapter:{config.base_model_name_or_path}"} if config.base_model_name_or_path else set())
        ),
        datasets=[dataset] if dataset else None,
        model_name=model_name,
        eval_results=eval_results or None,
    )
    labels = sorted((config.id2label or {i: str(i) for i in range(config.num_labels)}).items())
    multi = config.problem_type == "multi_label_classification"
    template = _template()
    return ModelCard.from_template(
        card_data,
        template_str=template,
        model_name=model_name,
        version=built_for.get("mitp_peft_version", "(version not recorded)"),
        repo_id=repo_id,
        base_model=base,
        base_model_link=_hub_link(base),
        problem_description="multi-label classification" if multi else "single-label classification",
        num_labels=config.num_labels,
        dataset=dataset,
        trainable_params=f"{trainable_params:,}",
        backbone_params=f"{backbone_params / 1e6:.1f}M",
        share=f"{100 * trainable_params / backbone_params:.2f}%",
        backbone_class=backbone_class,
        adapter_size=f"{4 * trainable_params / 1e6:.1f} MB (float32)",
        results=[(name, _format(value)) for name, value in metrics.items()],
        labels=labels[:MAX_LISTED_LABELS],
        more_labels=max(0, len(labels) - MAX_LISTED_LABELS),
        settings=list(settings.items()),
        training=sorted((info.get("training") or {}).items()),
    )


def _template() -> str:
    try:
        return importlib.resources.files("mitp_peft.model_cards").joinpath(TEMPLATE).read_text(encoding="utf-8")
    except ModuleNotFoundError:  # a plain checkout, not installed
        return CHECKOUT_TEMPLATE.read_text(encoding="utf-8")


def _hub_link(name: str) -> Optional[str]:
    """A link for hub ids ("org/name"); local folders get none."""
    is_hub_id = name.count("/") == 1 and not name.startswith((".", "/", "~")) and not Path(name).exists()
    return f"https://huggingface.co/{name}" if is_hub_id else None


def _format(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)
