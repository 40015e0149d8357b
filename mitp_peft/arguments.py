"""What the training scripts take, as dataclasses for `transformers.HfArgumentParser`: MITPConfig's method settings
(scripts never repeat a default) and which data to read, with the splits it gives."""

from __future__ import annotations

from dataclasses import MISSING, dataclass, field, make_dataclass
from pathlib import Path
from typing import Optional, get_type_hints

import datasets

from .data import MISSING_TYPES, load_food101, load_hub, load_mmimdb, load_pairs, load_snli_ve, simulate_missing
from .tuner.config import SETTING, MITPConfig, mitp_fields


def _arguments() -> type:
    hints = get_type_hints(MITPConfig)
    arguments = make_dataclass(
        "MITPArguments",
        [
            (
                f.name,
                hints[f.name],
                field(default=f.default if f.default is not MISSING else None, metadata=f.metadata),
            )
            for f in mitp_fields(SETTING)
        ],
    )
    arguments.__module__ = __name__
    return arguments


MITPArguments = _arguments()
"""MITPConfig's method settings (the fields of role `setting`: everything but what comes from the data or is
recorded by the adapter) as a dataclass for `transformers.HfArgumentParser`, with MITPConfig's defaults and help
texts."""


@dataclass
class DataArguments:
    """Which data a training script reads: one of the paper's datasets, your own pairs, or a hub dataset."""

    dataset: str = field(
        metadata={"help": "food101, mmimdb, snli_ve, pairs (your own CSV / JSON-lines files) or hub (--dataset_name)"}
    )
    dataset_name: Optional[str] = field(default=None, metadata={"help": "hub: a dataset id for load_dataset."})
    data_dir: Optional[str] = field(default=None, metadata={"help": "The dataset's folder in its published layout."})
    images_dir: Optional[str] = field(default=None, metadata={"help": "SNLI-VE: the Flickr30k images folder."})
    train_file: Optional[str] = field(default=None, metadata={"help": "pairs: training CSV / JSON-lines file."})
    validation_file: Optional[str] = field(
        default=None, metadata={"help": "pairs: evaluation file (optional: without it, no evaluation)."}
    )
    image_column: str = field(default="image", metadata={"help": "pairs, hub: column of images (paths for pairs)."})
    text_column: str = field(default="text", metadata={"help": "pairs, hub: column of texts."})
    label_column: str = field(default="label", metadata={"help": "pairs, hub: column of labels."})
    max_train_samples: Optional[int] = field(default=None, metadata={"help": "Train on the first N samples only."})
    max_eval_samples: Optional[int] = field(default=None, metadata={"help": "Evaluate on the first N samples only."})
    missing_rate: float = field(
        default=0.0, metadata={"help": "Simulate missing modalities: the share of training rows that lack one."}
    )
    eval_missing_rate: Optional[float] = field(
        default=None, metadata={"help": "The same for the evaluation rows (default: --missing_rate)."}
    )
    missing_type: str = field(default="both", metadata={"help": f"What the rows lack: one of {MISSING_TYPES}."})
    missing_seed: int = field(default=0, metadata={"help": "Which rows lack a modality (recorded per row)."})
    allow_missing: bool = field(
        default=False,
        metadata={"help": "Keep rows whose image or text is absent (for --missing_modalities); else they are errors."},
    )

    @property
    def name(self) -> str:
        """What a model card calls the data: the dataset, the hub id, or the training file of your own pairs."""
        if self.dataset == "hub":
            return self.dataset_name
        if self.dataset == "pairs":
            return Path(self.train_file).name
        return {"food101": "UPMC-Food101", "mmimdb": "MM-IMDB", "snli_ve": "SNLI-VE"}.get(self.dataset, self.dataset)


DATASETS = ("food101", "mmimdb", "snli_ve", "pairs", "hub")
# The folder argument each dataset needs, and the flag that gives it.
REQUIRED = {
    "food101": "data_dir",
    "mmimdb": "data_dir",
    "snli_ve": "data_dir",
    "pairs": "train_file",
    "hub": "dataset_name",
}


@dataclass
class Splits:
    train: datasets.Dataset
    evaluation: Optional[datasets.Dataset]
    """None when the data has no evaluation split (pairs without a validation file)."""
    label_names: list[str]
    multi_label: bool


def load_splits(args: DataArguments) -> Splits:
    """The training and evaluation splits a script asked for (shortened as asked), with their label names."""
    if args.dataset not in DATASETS:
        raise ValueError(f"--dataset must be one of {DATASETS}, got {args.dataset!r}.")
    needed = REQUIRED[args.dataset]
    if getattr(args, needed) is None:
        raise ValueError(f"--dataset {args.dataset} needs --{needed}.")
    columns = dict(image_column=args.image_column, text_column=args.text_column, label_column=args.label_column)
    absent = dict(allow_missing=args.allow_missing)
    if args.dataset == "food101":
        data, evaluation = load_food101(args.data_dir, **absent), "test"
    elif args.dataset == "mmimdb":
        data, evaluation = load_mmimdb(args.data_dir, **absent), "dev"
    elif args.dataset == "snli_ve":
        data, evaluation = load_snli_ve(args.data_dir, images=args.images_dir, **absent), "dev"
    elif args.dataset == "pairs":
        files = {"train": args.train_file}
        if args.validation_file is not None:
            files["validation"] = args.validation_file
        data, evaluation = load_pairs(files, **columns, **absent), "validation" if args.validation_file else None
    else:
        data = load_hub(args.dataset_name, **columns, **absent)
        found = [split for split in ("validation", "dev", "test") if split in data]
        if "train" not in data or not found:
            raise ValueError(
                f"{args.dataset_name} needs a train split and a validation, dev or test split: {list(data)}"
            )
        evaluation = found[0]
    train = _first(data["train"], args.max_train_samples)
    evaluated = None if evaluation is None else _first(data[evaluation], args.max_eval_samples)
    eval_rate = args.missing_rate if args.eval_missing_rate is None else args.eval_missing_rate
    if args.missing_rate:
        train = simulate_missing(train, args.missing_rate, args.missing_type, args.missing_seed)
    if evaluated is not None and eval_rate:
        evaluated = simulate_missing(evaluated, eval_rate, args.missing_type, args.missing_seed + 1)
    multi_label = "labels" in train.features
    names = (train.features["labels"].feature if multi_label else train.features["label"]).names
    return Splits(train, evaluated, list(names), multi_label)


def _first(dataset: datasets.Dataset, count: Optional[int]) -> datasets.Dataset:
    return dataset if count is None else dataset.select(range(min(count, len(dataset))))
