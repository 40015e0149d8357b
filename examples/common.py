"""What the two training examples share: their own arguments and building the adapter from MITPConfig's."""

import dataclasses
import logging
from dataclasses import asdict, dataclass, field
from typing import Any, Optional

import datasets
from peft import PeftModel, get_peft_model
from torch.utils.data import DataLoader
from transformers import AutoModel, default_data_collator

from mitp_peft import MITPConfig, init_head_zero_shot, warm_start_head
from mitp_peft.arguments import DataArguments, MITPArguments, Splits
from mitp_peft.data import MITPCollator
from mitp_peft.extraction import cache_extraction
from mitp_peft.warm_start import WARM_START_EPOCHS

logger = logging.getLogger(__name__)


@dataclass
class ScriptArguments:
    base_model: str = field(metadata={"help": "A dual encoder: hub id or local folder (with its processor)."})
    threshold: float = field(default=0.5, metadata={"help": "Multi-label: probability threshold of the F1 metrics."})
    warm_start_epochs: int = field(
        default=WARM_START_EPOCHS,
        metadata={"help": "Fit the head alone for N epochs on the fresh adapter's features first (0: don't)."},
    )
    cache_extraction: bool = field(
        default=False,
        metadata={
            "help": "Run the frozen layers below the first interaction layer once per training sample "
            "(mitp_peft.extraction.cache_extraction) instead of every epoch: faster steps, texts padded to the room "
            "next to the prompts."
        },
    )


def build_adapter(script: ScriptArguments, settings: MITPArguments, splits: Splits, processor: Any) -> PeftModel:
    """The backbone with an MITP adapter of the given settings for the data's labels.

    With `--zero_shot_template`, the head starts as the backbone's zero-shot classifier over the label names.
    """
    options = asdict(settings)
    template = options.pop("zero_shot_template")
    config = MITPConfig(
        num_labels=len(splits.label_names),
        problem_type="multi_label_classification" if splits.multi_label else "single_label_classification",
        id2label=dict(enumerate(splits.label_names)),
        **options,
    )
    model = get_peft_model(AutoModel.from_pretrained(script.base_model), config)
    if template is not None:
        init_head_zero_shot(model, processor.tokenizer, template)
    return model


def make_collator(model: PeftModel, processor: Any, splits: Splits, data: DataArguments) -> MITPCollator:
    """The collator for the adapter: with missing modalities (simulated, or in the data), a missing-aware adapter
    gets presence masks, an unaware one a blank image or an empty text in their place (the unaware baseline)."""
    num_labels = len(splits.label_names) if splits.multi_label else None
    simulated = bool(data.missing_rate or data.eval_missing_rate)
    aware = model.active_peft_config.missing_modalities
    if simulated and not aware:
        logger.warning(
            "--missing_rate %s (--eval_missing_rate %s) without --missing_modalities: the adapter is not told which "
            "samples lack a modality, and trains and is evaluated on blank images and empty texts in their places "
            "(the unaware baseline). Add --missing_modalities for an adapter that knows what is missing.",
            data.missing_rate,
            data.eval_missing_rate if data.eval_missing_rate is not None else data.missing_rate,
        )
    missing = "mask" if aware else ("fill" if simulated else "error")
    return MITPCollator(processor, model.max_text_length, num_labels=num_labels, missing=missing)


def prepared(model: PeftModel, script: ScriptArguments, splits: Splits, collator: MITPCollator) -> tuple:
    """The training and evaluation rows and the collator for them: the raw rows and `collator`, or (with
    --cache_extraction) the rows as model inputs with the extraction cache, stacked by transformers' default
    collator. Every process of a multi-process run computes the same cache."""
    if not script.cache_extraction:
        return splits.train, splits.evaluation, collator
    fixed = dataclasses.replace(collator, padding="max_length")

    def cached(split: Optional[datasets.Dataset]) -> Optional[datasets.Dataset]:
        if split is None:
            return None
        inputs = split.map(
            lambda rows: fixed([dict(zip(rows, values, strict=True)) for values in zip(*rows.values(), strict=True)]),
            batched=True,
            batch_size=64,
            remove_columns=split.column_names,
            desc="model inputs",
        )
        return cache_extraction(model, inputs)

    return cached(splits.train), cached(splits.evaluation), default_data_collator


def warm_start(model: PeftModel, script: ScriptArguments, splits: Splits, collator: MITPCollator, seed: int) -> None:
    """`warm_start_head` on the whole training set. Every process of a multi-process run does the same (same data,
    same seed), so all start from the same head."""
    if script.warm_start_epochs:
        batches = DataLoader(splits.train, batch_size=64, collate_fn=collator)
        warm_start_head(model, batches, epochs=script.warm_start_epochs, seed=seed)
