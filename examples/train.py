"""Train an MITP adapter with `transformers.Trainer` on UPMC-Food101, MM-IMDB, SNLI-VE or your own pairs.

    python examples/train.py --dataset food101 --data_dir /data/upmc_food101 \\
        --base_model openai/clip-vit-large-patch14 --output_dir out/food101 \\
        --num_train_epochs 3 --per_device_train_batch_size 32 --learning_rate 1e-3

    python examples/train.py --dataset pairs --train_file train.csv --validation_file val.csv ...

Multi-GPU: `accelerate launch examples/train.py ...` (or `torchrun --nproc_per_node N examples/train.py ...`).
Evaluates at the end, saves the adapter (with its model card) and the processor to --output_dir, and writes the
metrics to metrics.json there.
"""

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

from peft import get_peft_model
from transformers import AutoModel, AutoProcessor, HfArgumentParser, Trainer, TrainingArguments

import mitp_peft
from mitp_peft import MITPConfig
from mitp_peft.data import MITPCollator, load_food101, load_mmimdb, load_pairs, load_snli_ve
from mitp_peft.metrics import compute_metrics

logger = logging.getLogger(__name__)


@dataclass
class DataArguments:
    dataset: str = field(metadata={"help": "food101, mmimdb, snli_ve or pairs (your own CSV / JSON-lines files)"})
    data_dir: Optional[str] = field(default=None, metadata={"help": "The dataset's folder in its published layout."})
    images_dir: Optional[str] = field(default=None, metadata={"help": "SNLI-VE: the Flickr30k images folder."})
    train_file: Optional[str] = field(default=None, metadata={"help": "pairs: training CSV / JSON-lines file."})
    validation_file: Optional[str] = field(default=None, metadata={"help": "pairs: evaluation file."})
    image_column: str = field(default="image", metadata={"help": "pairs: column of image paths."})
    text_column: str = field(default="text", metadata={"help": "pairs: column of texts."})
    label_column: str = field(default="label", metadata={"help": "pairs: column of label names."})
    max_train_samples: Optional[int] = field(default=None, metadata={"help": "Train on the first N samples only."})
    max_eval_samples: Optional[int] = field(default=None, metadata={"help": "Evaluate on the first N samples only."})


@dataclass
class ModelArguments:
    base_model: str = field(metadata={"help": "A dual encoder: hub id or local folder (with its processor)."})
    prompt_length: int = 8
    num_interaction_layers: int = 4
    translator_hidden_size: int = 512
    temperature: float = 0.1
    hub_attention: str = "joint"
    memory_decay: float = 0.0
    head_uses_memory: bool = False
    threshold: float = field(default=0.5, metadata={"help": "Multi-label: probability threshold of the F1 metrics."})


def load_data(args: DataArguments):
    """The DatasetDict, and the names of its train and evaluation splits."""
    if args.dataset == "food101":
        return load_food101(args.data_dir), "train", "test"
    if args.dataset == "mmimdb":
        return load_mmimdb(args.data_dir), "train", "dev"
    if args.dataset == "snli_ve":
        return load_snli_ve(args.data_dir, images=args.images_dir), "train", "dev"
    if args.dataset == "pairs":
        files = {"train": args.train_file, "validation": args.validation_file}
        columns = dict(image_column=args.image_column, text_column=args.text_column, label_column=args.label_column)
        return load_pairs(files, **columns), "train", "validation"
    raise ValueError(f"--dataset must be food101, mmimdb, snli_ve or pairs, got {args.dataset!r}.")


def main() -> None:
    parser = HfArgumentParser((DataArguments, ModelArguments, TrainingArguments))
    data_args, model_args, training_args = parser.parse_args_into_dataclasses()
    # Image columns must reach the collator, and CLIPModel declares no labels of its own.
    training_args.remove_unused_columns = False
    training_args.label_names = ["labels"]
    logging.basicConfig(level=logging.INFO if training_args.should_log else logging.WARNING)

    data, train_split, eval_split = load_data(data_args)
    train, evaluation = data[train_split], data[eval_split]
    if data_args.max_train_samples is not None:
        train = train.select(range(min(data_args.max_train_samples, len(train))))
    if data_args.max_eval_samples is not None:
        evaluation = evaluation.select(range(min(data_args.max_eval_samples, len(evaluation))))
    multi_label = "labels" in train.features
    names = (train.features["labels"].feature if multi_label else train.features["label"]).names

    config = MITPConfig(
        num_labels=len(names),
        problem_type="multi_label_classification" if multi_label else "single_label_classification",
        id2label=dict(enumerate(names)),
        prompt_length=model_args.prompt_length,
        num_interaction_layers=model_args.num_interaction_layers,
        translator_hidden_size=model_args.translator_hidden_size,
        temperature=model_args.temperature,
        hub_attention=model_args.hub_attention,
        memory_decay=model_args.memory_decay,
        head_uses_memory=model_args.head_uses_memory,
    )
    model = get_peft_model(AutoModel.from_pretrained(model_args.base_model), config)
    model.print_trainable_parameters()
    processor = AutoProcessor.from_pretrained(model_args.base_model)
    collator = MITPCollator(processor, model.max_text_length, num_labels=len(names) if multi_label else None)

    trainer = Trainer(
        model=model,
        args=training_args,
        train_dataset=train,
        eval_dataset=evaluation,
        data_collator=collator,
        compute_metrics=compute_metrics(config.problem_type, model_args.threshold),
    )
    trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    metrics = trainer.evaluate()
    trainer.log_metrics("eval", metrics)

    if trainer.is_world_process_zero():
        output = Path(training_args.output_dir)
        reported = {
            k.removeprefix("eval_"): v
            for k, v in metrics.items()
            if k.removeprefix("eval_") in ("accuracy", "f1_macro", "f1_micro")
        }
        settings = {
            k: getattr(training_args, k)
            for k in (
                "learning_rate",
                "num_train_epochs",
                "max_steps",
                "per_device_train_batch_size",
                "gradient_accumulation_steps",
                "seed",
            )
        }
        mitp_peft.describe_training(model, dataset=data_args.dataset, metrics=reported, training=settings)
        model.save_pretrained(output)
        processor.save_pretrained(output)
        (output / "metrics.json").write_text(json.dumps({"eval": metrics, "model": asdict(model_args)}, indent=2))
        logger.info("Saved the adapter, its card and the processor to %s", output)


if __name__ == "__main__":
    main()
