"""What the two training examples share: their data and MITP arguments, data loading, and the adapter config."""

from dataclasses import dataclass, field
from typing import Optional

import datasets

from mitp_peft import MITPConfig
from mitp_peft.data import load_food101, load_hub, load_mmimdb, load_pairs, load_snli_ve


@dataclass
class DataArguments:
    dataset: str = field(
        metadata={"help": "food101, mmimdb, snli_ve, pairs (your own CSV / JSON-lines files) or hub (--dataset_name)"}
    )
    dataset_name: Optional[str] = field(default=None, metadata={"help": "hub: a dataset id for load_dataset."})
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
    columns = dict(image_column=args.image_column, text_column=args.text_column, label_column=args.label_column)
    if args.dataset == "food101":
        return load_food101(args.data_dir), "train", "test"
    if args.dataset == "mmimdb":
        return load_mmimdb(args.data_dir), "train", "dev"
    if args.dataset == "snli_ve":
        return load_snli_ve(args.data_dir, images=args.images_dir), "train", "dev"
    if args.dataset == "pairs":
        files = {"train": args.train_file, "validation": args.validation_file}
        return load_pairs(files, **columns), "train", "validation"
    if args.dataset == "hub":
        data = load_hub(args.dataset_name, **columns)
        evaluation = [split for split in ("validation", "dev", "test") if split in data]
        if "train" not in data or not evaluation:
            raise ValueError(
                f"{args.dataset_name} needs a train split and a validation, dev or test split: {list(data)}"
            )
        return data, "train", evaluation[0]
    raise ValueError(f"--dataset must be food101, mmimdb, snli_ve, pairs or hub, got {args.dataset!r}.")


def load_splits(args: DataArguments) -> tuple[datasets.Dataset, datasets.Dataset, list[str], bool]:
    """Training and evaluation splits (shortened as asked), the label names, and whether labels are multi-label."""
    data, train_split, eval_split = load_data(args)
    train, evaluation = data[train_split], data[eval_split]
    if args.max_train_samples is not None:
        train = train.select(range(min(args.max_train_samples, len(train))))
    if args.max_eval_samples is not None:
        evaluation = evaluation.select(range(min(args.max_eval_samples, len(evaluation))))
    multi_label = "labels" in train.features
    names = (train.features["labels"].feature if multi_label else train.features["label"]).names
    return train, evaluation, names, multi_label


def mitp_config(args: ModelArguments, names: list[str], multi_label: bool) -> MITPConfig:
    return MITPConfig(
        num_labels=len(names),
        problem_type="multi_label_classification" if multi_label else "single_label_classification",
        id2label=dict(enumerate(names)),
        prompt_length=args.prompt_length,
        num_interaction_layers=args.num_interaction_layers,
        translator_hidden_size=args.translator_hidden_size,
        temperature=args.temperature,
        hub_attention=args.hub_attention,
        memory_decay=args.memory_decay,
        head_uses_memory=args.head_uses_memory,
    )
