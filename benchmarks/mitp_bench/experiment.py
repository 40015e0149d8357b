"""One training run on a study task, for every method the benchmarks compare, with one loop and one budget.

A run is (backbone, task, method, options, learning rate, epochs, seed) -> validation and test metrics. Every method
trains with the same loop (`mitp_peft.training.fit`: AdamW, batch 32, linear warm-up over the first 10% of steps then
linear decay, no weight decay) on the same tensors, and every head is the package's own `MITPHead`, so rows differ
only in what they train:

- `zero_shot`: nothing; the backbone's own prediction (see `zero_shot_predictions`).
- `head`: late fusion, a head on frozen pooled features computed once (`linear`, `agreement`, `mlp`: the MLP on both
  pooled features and their agreement; `zero_shot_init`: a linear head plus class embeddings started as the
  backbone's zero-shot classifier).
- `lora`: peft's LoRA (r=8) on the attention projections of both towers, plus MITP's MLP head on pooled features.
- `full_finetune`: every weight, plus MITP's MLP head on pooled features.
- `mitp`: an MITP adapter; `options` are MITPConfig fields over the package's defaults, `zero_shot_init` calls
  `init_head_zero_shot`, and `prompt_lr_scale` multiplies the learning rate of everything but the head. MITP trains
  from the extraction cache (`mitp_peft.extraction`): the frozen layers below its first interaction layer run once per
  sample.

Methods that train the backbone or prompts take `warm_start`: their head is fitted alone on frozen features first
(LP-FT), all alike. Every head is as wide as the default adapter's (`default_widths`) unless `head_hidden_size`
names a width.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from peft import LoraConfig, get_peft_model
from torch import nn
from transformers import AutoModel, AutoProcessor

from mitp_bench.schedules import fit_adamw
from mitp_bench.sources import to_pixels
from mitp_bench.tasks import GRID_KINDS, build_task, class_names, image_size, label_names, task_parts
from mitp_peft import MITPConfig, MITPHead, init_head_zero_shot, warm_start_head
from mitp_peft.data import missing_pattern
from mitp_peft.extraction import extract_states
from mitp_peft.method.head import HeadInputs, build_head
from mitp_peft.method.loss import classification_loss
from mitp_peft.metrics import task_metrics
from mitp_peft.towers import TowerPair, resolve_towers, similarity_scale
from mitp_peft.tuner.model import tuner_of
from mitp_peft.tuner.placement import default_widths
from mitp_peft.warm_start import WARM_START_EPOCHS, WARM_START_LEARNING_RATE
from mitp_peft.zero_shot import class_embeddings

BATCH_SIZE = 32
WARMUP_SHARE = 0.1
METHODS = ("zero_shot", "head", "lora", "full_finetune", "mitp")
DEFAULT_HEAD = "mlp"
"""The head LoRA and full fine-tuning train on pooled features: MITP's MLP head, as wide as MITP's, so that rows
differ in what reaches the head, not in the head."""
LORA_TARGETS = r".*(query|key|value|q_proj|k_proj|v_proj|o_proj|out_proj|attention\.output\.dense)$"
BENCH_OPTIONS = ("warm_start", "zero_shot_init", "prompt_lr_scale", "missing")
"""Run options of the trained methods that are not MITPConfig fields."""


@dataclass
class Run:
    backbone: str
    """A folder holding a dual encoder and its processor."""
    task: str
    method: str
    options: dict = field(default_factory=dict)
    learning_rate: float = 1e-3
    epochs: float = 1.0
    seed: int = 0


@dataclass
class Split:
    """One split of a task as model inputs."""

    inputs: dict[str, torch.Tensor]
    labels: torch.Tensor
    named: list[list[int]]
    negative: Optional[list[str]] = None
    """grid_matching: for each statement that does not hold, whether it names an item `absent` from the grid or one
    in another cell (`binding`); '' for statements that hold."""

    def __len__(self) -> int:
        return len(self.labels)

    def batch(self, index: torch.Tensor) -> dict[str, torch.Tensor]:
        return {name: value[index] for name, value in self.inputs.items()}

    def first(self, size: int) -> Split:
        index = torch.arange(min(size, len(self)))
        negative = None if self.negative is None else self.negative[: len(index)]
        return Split(self.batch(index), self.labels[index], self.named[: len(index)], negative)


@dataclass
class Data:
    task: str
    kind: str
    names: tuple[str, ...]
    splits: dict[str, Split]

    @property
    def multi_label(self) -> bool:
        return self.kind == "multi_label"

    @property
    def problem_type(self) -> str:
        return "multi_label_classification" if self.multi_label else "single_label_classification"

    def shortened(self, size: int) -> Data:
        """The same task with only the first `size` pairs of each split (for quick checks of the pipeline)."""
        return Data(self.task, self.kind, self.names, {name: part.first(size) for name, part in self.splits.items()})


def load_data(task: str, processor: Any, seed: int = 0, limit: Optional[dict[str, int]] = None) -> Data:
    """The task's splits as tensors: pixels as the backbone's processor gives them (a grid at twice the item size),
    tokens, labels; `limit`: the first rows of each split it names (see `build_task`)."""
    kind, _ = task_parts(task)
    images = processor.image_processor
    size = image_size(task, images.size["height"])
    splits = {}
    for split, rows in build_task(task, seed=seed, limit=limit).items():
        pixels = to_pixels(np.stack([np.asarray(image) for image in rows["image"]]), size, images.image_mean,
                           images.image_std)  # fmt: skip
        tokens = processor.tokenizer(list(rows["text"]), padding=True, return_tensors="pt")
        if kind == "multi_label":
            labels = torch.zeros(len(rows), len(class_names(task)))
            for i, positive in enumerate(rows["labels"]):
                labels[i, positive] = 1.0
        else:
            labels = torch.tensor(list(rows["label"]))
        negative = list(rows["negative"]) if "negative" in rows.column_names else None
        splits[split] = Split({"pixel_values": pixels, **tokens}, labels, list(rows["named"]), negative)
    return Data(task, kind, label_names(task), splits)


def with_missing(data: Data, processor: Any, setting: dict) -> Data:
    """The task with pairs lacking a modality (`setting`: `{"train": rate, "test": rate, "kind": kind}`; validation
    takes the test rate), chosen per split as `mitp_peft.data.missing_pattern` chooses them (seeds 0, 1, 2 for
    train, validation, test): a blank image's pixels or the empty text's tokens in their place, and the masks
    `image_present` / `text_present`, which only a missing-aware model reads."""
    images = processor.image_processor
    size = image_size(data.task, images.size["height"])
    blank = to_pixels(np.zeros((1, size, size), dtype=np.uint8), size, images.image_mean, images.image_std)
    splits = {}
    for seed, (name, part) in enumerate(data.splits.items()):
        rate = setting["train"] if name == "train" else setting["test"]
        lacks = np.array(missing_pattern(len(part), rate, setting["kind"], seed))
        image_missing, text_missing = torch.from_numpy(lacks == "image"), torch.from_numpy(lacks == "text")
        inputs = dict(part.inputs, pixel_values=torch.where(image_missing[:, None, None, None], blank,
                                                           part.inputs["pixel_values"]))  # fmt: skip
        width = part.inputs["input_ids"].shape[1]
        empty = processor.tokenizer([""], padding="max_length", max_length=width, return_tensors="pt")
        for key, value in empty.items():
            if key in inputs:
                inputs[key] = torch.where(text_missing[:, None], value, inputs[key])
        inputs.update(image_present=~image_missing, text_present=~text_missing)
        splits[name] = Split(inputs, part.labels, part.named, part.negative)
    return Data(data.task, data.kind, data.names, splits)


PRESENCE = ("image_present", "text_present")


def metrics(logits: torch.Tensor, labels: torch.Tensor, multi_label: bool) -> dict[str, float]:
    problem_type = "multi_label_classification" if multi_label else "single_label_classification"
    return task_metrics(logits.numpy(), labels.numpy(), problem_type)


def by_negative(logits: torch.Tensor, part: Split) -> dict[str, float]:
    """grid_matching: accuracy on the statements that hold, on absent items and on items of another cell, and the
    balanced accuracies of presence (holds vs absent) and binding (holds vs another cell)."""
    right = (logits.argmax(-1) == part.labels).numpy()
    kinds = np.array(part.negative)
    accuracy = {name or "holds": float(right[kinds == name].mean()) for name in ("", "absent", "binding")}
    accuracy["presence"] = (accuracy["holds"] + accuracy["absent"]) / 2
    accuracy["binding_balanced"] = (accuracy["holds"] + accuracy["binding"]) / 2
    return accuracy


SUBSETS = ("complete", "text_missing", "image_missing")


def by_missing(logits: torch.Tensor, part: Split, multi_label: bool) -> dict[str, dict[str, float]]:
    """A split with missing modalities: the score and share of its complete pairs, of those lacking the text and of
    those lacking the image (subsets it does not have left out). Where the remaining modality says nothing of the
    label (an either-or pair without its image), no method can pass chance there: the breakdown shows it."""
    image, text = part.inputs["image_present"], part.inputs["text_present"]
    subsets = dict(zip(SUBSETS, (image & text, image & ~text, ~image & text), strict=True))
    return {
        name: {
            "score": score(metrics(logits[rows], part.labels[rows], multi_label)),
            "share": int(rows.sum()) / len(rows),
        }
        for name, rows in subsets.items()
        if rows.any()
    }


def score(result: dict[str, float]) -> float:
    """The one number a learning rate is chosen by: accuracy, or the mean of F1-macro and F1-micro."""
    return result["accuracy"] if "accuracy" in result else (result["f1_macro"] + result["f1_micro"]) / 2


# ---------------------------------------------------------------------------------------------------- zero-shot


@torch.no_grad()
def zero_shot_predictions(backbone: nn.Module, tokenizer: Any, data: Data, split: str) -> torch.Tensor:
    """The backbone's own prediction, as scores in the task's label space.

    The image's cosine with each class caption ranks the classes; then, by kind: either-or takes the named candidate
    ranked higher; matching says "entailment" when the named class ranks first; multi-label takes the first-ranked
    class and the classes the text names. On the grids the backbone is told the layout: each cell's crop is ranked
    on its own; grid matching says "entailment" when the named class ranks first in the named cell, grid locating
    picks the cell where the named class ranks highest.
    """
    towers = resolve_towers(backbone)
    classes = class_embeddings(towers, tokenizer, class_names(data.task))
    part = data.splits[split]
    pixels = part.inputs["pixel_values"]
    crops = _cells(pixels) if data.kind in GRID_KINDS else [pixels]
    similarity = torch.stack(
        [
            torch.cat(
                [
                    towers.vision.embed_pooled(towers.vision.features({"pixel_values": crop[index]})) @ classes.T
                    for index in torch.arange(len(part)).split(256)
                ]
            )
            for crop in crops
        ],
        dim=1,
    )  # (samples, cells, classes)
    scores = torch.full((len(part), len(data.names)), -1.0)
    for row, (named, ranking) in enumerate(zip(part.named, similarity, strict=True)):
        if data.kind == "either_or":
            best = max(named, key=lambda c: ranking[0, c].item())
            scores[row, best] = 1.0
        elif data.kind == "matching":
            scores[row, int(ranking[0].argmax() == named[0])] = 1.0
        elif data.kind == "grid_matching":
            item, cell = named
            scores[row, int(ranking[cell].argmax() == item)] = 1.0
        elif data.kind == "grid_locating":
            scores[row, int(ranking[:, named[0]].argmax())] = 1.0
        else:
            scores[row, [int(ranking[0].argmax()), *named]] = 1.0
    return scores


def _cells(pixels: torch.Tensor) -> list[torch.Tensor]:
    """The four cells of 2x2 grids, in reading order."""
    half = pixels.shape[-1] // 2
    return [pixels[..., r * half : (r + 1) * half, c * half : (c + 1) * half] for r in (0, 1) for c in (0, 1)]


# ---------------------------------------------------------------------------------------------------- the models


def new_head(run: Run, towers: TowerPair, num_labels: int, indicators: bool = False) -> MITPHead:
    """MITP's head of the run's kind (`head`, default MLP), reading pooled features as the towers give them, as wide as
    the default adapter's unless `head_hidden_size` says; `zero_shot_init` is a linear head with class embeddings;
    `indicators`: it also reads one missing-modality flag per tower (see `zero_filled`)."""
    kind = run.options.get("head", DEFAULT_HEAD)
    hidden_size = run.options.get("head_hidden_size")
    linear = kind == "zero_shot_init"
    return build_head(
        "linear" if linear else kind,
        text_size=towers.text.pooled_size,
        vision_size=towers.vision.pooled_size,
        embed_size=towers.vision.embed_size,
        num_labels=num_labels,
        memory_sizes=(1, 1) if indicators else None,
        zero_shot=linear,
        hidden_size=hidden_size or default_widths(towers.text.hidden_size)[1],
    )


def zero_filled(features: HeadInputs, part: Split) -> HeadInputs:
    """Late fusion's answer to missing modalities: a missing tower's features (and the agreement) zero, and a flag
    per tower saying it is missing (read where the head reads hub memory)."""
    image, text = (part.inputs[name].to(features.image_features.dtype)[:, None] for name in PRESENCE)
    return HeadInputs(features.image_features * image, features.text_features * text, features.image_embeds * image,
                      features.text_embeds * text, 1 - image, 1 - text)  # fmt: skip


def pooled_inputs(towers: TowerPair, inputs: dict) -> HeadInputs:
    """What a head reads of a batch: both towers' pooled features and their embeddings in the shared space."""
    image, text = towers.vision.features(inputs), towers.text.features(inputs)
    return HeadInputs(image, text, towers.vision.embed_pooled(image), towers.text.embed_pooled(text))


class PooledClassifier(nn.Module):
    """A head on both towers' pooled features, through the (LoRA-adapted or fully trained) backbone."""

    def __init__(self, backbone: nn.Module, towers: TowerPair, head: MITPHead) -> None:
        super().__init__()
        self.backbone = backbone
        self.towers = towers
        self.head = head

    def forward(self, **inputs: torch.Tensor) -> torch.Tensor:
        return self.head(pooled_inputs(self.towers, inputs))


@torch.no_grad()
def frozen_features(towers: TowerPair, part: Split) -> HeadInputs:
    return _concat([pooled_inputs(towers, part.batch(index)) for index in torch.arange(len(part)).split(256)])


def _concat(chunks: list[HeadInputs]) -> HeadInputs:
    return HeadInputs(*(None if column[0] is None else torch.cat(column) for column in zip(*chunks, strict=True)))


def _rows(columns: HeadInputs, index: torch.Tensor) -> HeadInputs:
    return HeadInputs(*(None if column is None else column[index] for column in columns))


def _start_zero_shot(head: MITPHead, towers: TowerPair, tokenizer: Any, data: Data, backbone: nn.Module) -> None:
    if data.kind not in ("either_or", "multi_label"):
        raise ValueError(f"A zero-shot start needs class labels; {data.kind}'s labels are not image classes.")
    head.start_from_zero_shot(class_embeddings(towers, tokenizer, data.names), *similarity_scale(backbone))


# ------------------------------------------------------------------------------------------------------ training


def train(
    loss_of: Callable[[torch.Tensor], torch.Tensor], parameters: list, size: int, run: Run, epochs: float = None
) -> float:
    """The shared loop over shuffled batches of `size` samples; returns the training time in seconds."""
    epochs = run.epochs if epochs is None else epochs
    generator = torch.Generator().manual_seed(run.seed)
    total = max(1, round(epochs * -(-size // BATCH_SIZE)))

    def batches():
        while True:
            yield from torch.randperm(size, generator=generator).split(BATCH_SIZE)

    started = time.perf_counter()
    fit_adamw(parameters, batches(), loss_of, run.learning_rate, total, max(1, round(WARMUP_SHARE * total)),
        description=f"{run.method}: {epochs:g} epoch(s)")  # fmt: skip
    return time.perf_counter() - started


@torch.no_grad()
def predict(forward: Callable[[dict], torch.Tensor], inputs: dict, size: int) -> torch.Tensor:
    return torch.cat([forward({k: v[index] for k, v in inputs.items()}) for index in torch.arange(size).split(256)])


def logits_of(out: Any) -> torch.Tensor:
    return (out if torch.is_tensor(out) else out.logits).float()


def execute(
    run: Run, data: Optional[Data] = None, cache: Optional[dict] = None, keep_model: bool = False
) -> dict[str, Any]:
    """Train and evaluate one run; returns its metrics on validation and test, parameter count and time (and, with
    `keep_model`, the trained model of the methods that have one, under "model"). `cache` keeps frozen features and
    extraction states between runs of one process."""
    torch.manual_seed(run.seed)
    cache = cache if cache is not None else {}
    processor = AutoProcessor.from_pretrained(run.backbone)
    backbone = AutoModel.from_pretrained(run.backbone).eval()
    data = data or load_data(run.task, processor)
    if run.options.get("missing"):
        setting = run.options["missing"]
        key = (run.backbone, data.task, len(data.splits["train"]), json.dumps(setting, sort_keys=True))
        data = _cached(cache, key, lambda: with_missing(data, processor, setting))
    towers = resolve_towers(backbone)
    train_split = data.splits["train"]
    evaluation = {"validation": data.splits["validation"], "test": data.splits["test"]}
    loss = lambda logits, labels: classification_loss(logits, labels, data.problem_type)  # noqa: E731
    model, seconds, trainable = None, 0.0, 0
    if run.method == "zero_shot":
        logits = {s: zero_shot_predictions(backbone, processor.tokenizer, data, s) for s in evaluation}
    elif run.method == "head":
        started = time.perf_counter()  # computing the features is part of the method's cost
        missing = json.dumps(run.options.get("missing"), sort_keys=True)
        features = {s: _cached(cache, (run.backbone, data.task, s, len(p), missing),
                               lambda p=p: frozen_features(towers, p)) for s, p in data.splits.items()}  # fmt: skip
        indicators = run.options.get("missing") is not None
        if indicators:
            features = {s: zero_filled(f, data.splits[s]) for s, f in features.items()}
        backbone.requires_grad_(False)
        head = new_head(run, towers, len(data.names), indicators)
        if run.options["head"] == "zero_shot_init":
            _start_zero_shot(head, towers, processor.tokenizer, data, backbone)
        train(lambda i: loss(head(_rows(features["train"], i)), train_split.labels[i]), list(head.parameters()),
              len(train_split), run)  # fmt: skip
        seconds = time.perf_counter() - started
        head.eval()
        with torch.no_grad():
            logits = {s: head(features[s]).float() for s in evaluation}
        trainable = sum(p.numel() for p in head.parameters())
    else:
        model, parts, seconds = build_model(run, backbone, towers, processor, data, cache)
        if run.options.get("warm_start"):
            warm_start(model, run, parts["train"], train_split.labels, data.problem_type)
        groups = parameter_groups(model, run)
        trainable = sum(p.numel() for group in groups for p in group["params"])
        model.train()
        inputs = parts["train"]

        def loss_of(index: torch.Tensor) -> torch.Tensor:
            return loss(logits_of(model(**{k: v[index] for k, v in inputs.items()})), train_split.labels[index])

        seconds += train(loss_of, groups, len(train_split), run)
        model.eval()
        logits = {s: predict(lambda b: logits_of(model(**b)), parts[s], len(evaluation[s])) for s in evaluation}
    results = {split: metrics(logits[split], part.labels, data.multi_label) for split, part in evaluation.items()}
    outcome = {
        "validation": results["validation"],
        "test": results["test"],
        "trainable": trainable,
        "seconds": seconds,
    }
    if data.kind == "grid_matching":
        outcome["by_negative"] = {split: by_negative(logits[split], part) for split, part in evaluation.items()}
    if run.options.get("missing"):
        outcome["by_missing"] = {s: by_missing(logits[s], part, data.multi_label) for s, part in evaluation.items()}
    if keep_model and model is not None:
        outcome["model"] = model
    return outcome


def _cached(cache: dict, key: tuple, compute: Callable[[], Any]) -> Any:
    if key not in cache:
        cache[key] = compute()
    return cache[key]


def parameter_groups(model: nn.Module, run: Run) -> list[dict]:
    """The trainable parameters: the head at the run's rate, the rest (prompts, hub, LoRA, backbone) at
    `prompt_lr_scale` times it."""
    if isinstance(model, PooledClassifier):
        head = model.head
    else:
        tuner = tuner_of(model)
        head = tuner.mitp_adapters[tuner.active_adapter_name].head
    in_head = {id(p) for p in head.parameters()}
    trainable = [p for p in model.parameters() if p.requires_grad]
    scale = run.options.get("prompt_lr_scale", 1.0)
    return [
        {"params": [p for p in trainable if id(p) in in_head], "lr": run.learning_rate},
        {"params": [p for p in trainable if id(p) not in in_head], "lr": run.learning_rate * scale},
    ]


def warm_start(model: nn.Module, run: Run, inputs: dict, labels: torch.Tensor, problem_type: str) -> None:
    """The same linear probe before fine-tuning for every method that trains the backbone or prompts: MITP's
    `warm_start_head`, and its equal for the pooled-feature head of LoRA and full fine-tuning."""
    batches = [
        {**{k: v[i] for k, v in inputs.items()}, "labels": labels[i]} for i in torch.arange(len(labels)).split(256)
    ]
    if run.method == "mitp":
        warm_start_head(model, batches, seed=run.seed)
        return
    model.eval()
    with torch.no_grad():
        chunks = [pooled_inputs(model.towers, {k: v for k, v in b.items() if k != "labels"}) for b in batches]
    features = _concat(chunks)
    model.train()
    probe = Run(run.backbone, run.task, run.method, {}, WARM_START_LEARNING_RATE, WARM_START_EPOCHS, run.seed)
    head = model.head
    train(lambda i: classification_loss(head(_rows(features, i)), labels[i], problem_type), list(head.parameters()),
          len(labels), probe)  # fmt: skip


def build_model(
    run: Run, backbone: nn.Module, towers: TowerPair, processor: Any, data: Data, cache: dict
) -> tuple[nn.Module, dict[str, dict], float]:
    """The model a run trains, each split's inputs for it, and the seconds spent preparing those (MITP's extraction
    cache)."""
    num_labels = len(data.names)
    inputs = {split: part.inputs for split, part in data.splits.items()}
    if run.method == "full_finetune":
        head = new_head(run, towers, num_labels)
        return PooledClassifier(backbone.requires_grad_(True), towers, head), inputs, 0.0
    if run.method == "lora":
        lora = get_peft_model(backbone, LoraConfig(r=8, lora_alpha=16, target_modules=LORA_TARGETS))
        lora_towers = resolve_towers(lora.get_base_model())
        head = new_head(run, lora_towers, num_labels)
        return PooledClassifier(lora, lora_towers, head), inputs, 0.0
    if run.method == "mitp":
        options = {k: v for k, v in run.options.items() if k not in BENCH_OPTIONS}
        config = MITPConfig(
            num_labels=num_labels, id2label=dict(enumerate(data.names)), problem_type=data.problem_type, **options
        )
        model = get_peft_model(backbone, config)
        if run.options.get("zero_shot_init"):
            init_head_zero_shot(model, processor.tokenizer)
        started = time.perf_counter()
        first = (config.text_layers[0], config.vision_layers[0])
        missing = json.dumps(run.options.get("missing"), sort_keys=True)
        states = {
            split: _cached(
                cache,
                (run.backbone, data.task, split, len(part), first, missing),
                lambda part=part: extraction_inputs(model, part),
            )  # fmt: skip
            for split, part in data.splits.items()
        }
        if not config.missing_modalities:  # unaware: the blank images and empty texts are all it gets
            states = {split: {k: v for k, v in part.items() if k not in PRESENCE} for split, part in states.items()}
        return model, states, time.perf_counter() - started
    raise ValueError(f"method must be one of {METHODS}, got {run.method!r}")


@torch.no_grad()
def extraction_inputs(model: nn.Module, part: Split) -> dict[str, torch.Tensor]:
    """A split's inputs with the frozen layers below the adapter's first interaction layer already run (float32:
    the same numbers as running them each step)."""
    chunks = [extract_states(model, part.batch(index)) for index in torch.arange(len(part)).split(256)]
    states = {name: torch.cat([chunk[name] for chunk in chunks]) for name in chunks[0]}
    text = {name: value for name, value in part.inputs.items() if name != "pixel_values"}
    return {**text, **states}


def describe(run: Run) -> str:
    options = ", ".join(f"{k}={v}" for k, v in sorted(run.options.items()))
    return f"{Path(run.backbone).name} {run.task} {run.method}({options}) lr={run.learning_rate:g} seed={run.seed}"
