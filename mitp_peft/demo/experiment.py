"""One training run on a demo task, for every method the benchmarks compare, with one loop and one budget.

A run is (backbone, task, method, options, learning rate, epochs, seed) -> validation and test metrics. Every method
trains with the same loop (AdamW, batch 32, linear warm-up over the first 10% of steps then linear decay, no weight
decay) on the same tensors, so rows differ only in what they train:

- `zero_shot`: nothing; the backbone's own prediction (see `zero_shot_predictions`).
- `head`: a head on frozen pooled features, computed once (`linear`, `mlp`, `agreement`; `zero_shot_init` starts a
  linear head plus class embeddings as the backbone's zero-shot classifier).
- `lora`: peft's LoRA (r=8) on the attention projections of both towers, plus a linear head on pooled features.
- `full_finetune`: every weight, plus a linear head on pooled features.
- `mitp`: an MITP adapter; `options` are MITPConfig fields, and `zero_shot_init` calls `init_head_zero_shot`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
import torch.nn.functional as F
from peft import LoraConfig, get_peft_model
from torch import nn
from transformers import AutoModel, AutoProcessor

from ..config import MITPConfig
from ..metrics import task_metrics
from ..towers import TowerPair, resolve_towers, similarity_scale
from ..warm_start import WARM_START_EPOCHS, WARM_START_LEARNING_RATE, warm_start_head
from ..zero_shot import DEFAULT_TEMPLATE, init_head_zero_shot
from .backbone import to_pixels
from .tasks import build_task, class_names, task_parts

BATCH_SIZE = 32
WARMUP_SHARE = 0.1
METHODS = ("zero_shot", "head", "lora", "full_finetune", "mitp")
HEADS = ("linear", "mlp", "agreement", "zero_shot_init")
MLP_HIDDEN = 512
LORA_TARGETS = r".*(query|key|value|q_proj|k_proj|v_proj|out_proj|attention\.output\.dense)$"


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

    def __len__(self) -> int:
        return len(self.labels)

    def batch(self, index: torch.Tensor) -> dict[str, torch.Tensor]:
        return {name: value[index] for name, value in self.inputs.items()}


@dataclass
class Data:
    task: str
    kind: str
    names: tuple[str, ...]
    splits: dict[str, Split]

    @property
    def multi_label(self) -> bool:
        return self.kind == "multi_label"

    def shortened(self, size: int) -> Data:
        """The same task with only the first `size` pairs of each split (for quick checks of the pipeline)."""
        splits = {}
        for name, part in self.splits.items():
            first = torch.arange(min(size, len(part)))
            splits[name] = Split(part.batch(first), part.labels[first], part.named[: len(first)])
        return Data(self.task, self.kind, self.names, splits)


def load_data(task: str, processor: Any, seed: int = 0) -> Data:
    """The task's splits as tensors: pixels (the demo processor's normalization), tokens, labels."""
    kind, _ = task_parts(task)
    names = class_names(task)
    splits = {}
    for split, rows in build_task(task, seed=seed).items():
        images = np.stack([np.asarray(image) for image in rows["image"]])
        tokens = processor.tokenizer(list(rows["text"]), padding=True, return_tensors="pt")
        if kind == "multi_label":
            labels = torch.zeros(len(rows), len(names))
            for i, positive in enumerate(rows["labels"]):
                labels[i, positive] = 1.0
        else:
            labels = torch.tensor(list(rows["label"]))
        splits[split] = Split({"pixel_values": to_pixels(images), **tokens}, labels, list(rows["named"]))
    label_names = names if kind != "matching" else ("contradiction", "entailment")
    return Data(task, kind, label_names, splits)


def metrics(logits: torch.Tensor, labels: torch.Tensor, multi_label: bool) -> dict[str, float]:
    problem_type = "multi_label_classification" if multi_label else "single_label_classification"
    return task_metrics(logits.numpy(), labels.numpy(), problem_type)


def score(result: dict[str, float]) -> float:
    """The one number a learning rate is chosen by: accuracy, or the mean of F1-macro and F1-micro."""
    return result["accuracy"] if "accuracy" in result else (result["f1_macro"] + result["f1_micro"]) / 2


# ---------------------------------------------------------------------------------------------------- zero-shot


@torch.no_grad()
def class_embeddings(towers: TowerPair, tokenizer: Any, names: tuple[str, ...]) -> torch.Tensor:
    """The class names' normalized text embeddings, as the backbone's zero-shot classifier uses them."""
    captions = [DEFAULT_TEMPLATE.format(name) for name in names]
    tokens = tokenizer(captions, padding=True, return_tensors="pt")
    return towers.text.embed_pooled(towers.text.features(dict(tokens)))


@torch.no_grad()
def zero_shot_predictions(backbone: nn.Module, tokenizer: Any, data: Data, split: str) -> torch.Tensor:
    """The backbone's own prediction, as scores in the task's label space.

    The image's cosine with each class caption ranks the classes; then, by kind: either-or takes the named candidate
    ranked higher; matching says "entailment" when the named class ranks first; multi-label takes the first-ranked
    class and the classes the text names.
    """
    towers = resolve_towers(backbone)
    classes = class_embeddings(towers, tokenizer, class_names(data.task))
    part = data.splits[split]
    images = torch.cat(
        [
            towers.vision.embed_pooled(towers.vision.features(part.batch(index)))
            for index in torch.arange(len(part)).split(256)
        ]
    )
    similarity = images @ classes.T
    scores = torch.full((len(part), len(data.names)), -1.0)
    for row, (named, ranking) in enumerate(zip(part.named, similarity, strict=True)):
        if data.kind == "either_or":
            best = max(named, key=lambda c: ranking[c].item())
            scores[row, best] = 1.0
        elif data.kind == "matching":
            scores[row, int(ranking.argmax() == named[0])] = 1.0
        else:
            scores[row, [int(ranking.argmax()), *named]] = 1.0
    return scores


# ---------------------------------------------------------------------------------------------------- the models


class PooledClassifier(nn.Module):
    """A linear head on both towers' pooled features (what MITP's linear head reads), through the backbone."""

    def __init__(self, backbone: nn.Module, towers: TowerPair, num_labels: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.towers = towers
        self.head = nn.Linear(towers.vision.pooled_size + towers.text.pooled_size, num_labels)

    def forward(self, **inputs: torch.Tensor) -> torch.Tensor:
        return self.head(torch.cat([self.towers.vision.features(inputs), self.towers.text.features(inputs)], -1))


class FeatureHead(nn.Module):
    """A head on precomputed features: pooled image and text features and their normalized embeddings."""

    def __init__(self, kind: str, sizes: dict[str, int], num_labels: int) -> None:
        super().__init__()
        self.kind = kind
        width = sizes["image"] + sizes["text"] + (sizes["embed"] if kind == "agreement" else 0)
        if kind == "mlp":
            self.layers = nn.Sequential(nn.Linear(width, MLP_HIDDEN), nn.GELU(), nn.Linear(MLP_HIDDEN, num_labels))
        else:
            self.layers = nn.Linear(width, num_labels)
        self.class_embeddings = nn.Linear(sizes["embed"], num_labels, bias=False) if kind == "zero_shot_init" else None

    def forward(self, image, text, image_embeds, text_embeds) -> torch.Tensor:
        parts = [image, text] + ([image_embeds * text_embeds] if self.kind == "agreement" else [])
        logits = self.layers(torch.cat(parts, dim=-1))
        if self.class_embeddings is not None:
            logits = logits + self.class_embeddings(image_embeds)
        return logits


@torch.no_grad()
def frozen_features(towers: TowerPair, part: Split) -> dict[str, torch.Tensor]:
    chunks = []
    for index in torch.arange(len(part)).split(256):
        batch = part.batch(index)
        image, text = towers.vision.features(batch), towers.text.features(batch)
        chunks.append((image, text, towers.vision.embed_pooled(image), towers.text.embed_pooled(text)))
    columns = (torch.cat(column) for column in zip(*chunks, strict=True))
    return dict(zip(("image", "text", "image_embeds", "text_embeds"), columns, strict=True))


# ------------------------------------------------------------------------------------------------------ training


def train(
    forward, parameters: list[nn.Parameter], inputs: dict, labels: torch.Tensor, run: Run, multi_label: bool
) -> float:
    """The shared loop; returns the training time in seconds."""
    generator = torch.Generator().manual_seed(run.seed)
    steps_per_epoch = -(-len(labels) // BATCH_SIZE)
    total = max(1, round(run.epochs * steps_per_epoch))
    warmup = max(1, round(WARMUP_SHARE * total))
    optimizer = torch.optim.AdamW(parameters, lr=run.learning_rate, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: (step + 1) / warmup if step < warmup else max(0.0, (total - step) / (total - warmup))
    )
    started = time.perf_counter()
    step = 0
    while step < total:
        for index in torch.randperm(len(labels), generator=generator).split(BATCH_SIZE):
            logits = forward({name: value[index] for name, value in inputs.items()})
            target = labels[index]
            if multi_label:
                loss = F.binary_cross_entropy_with_logits(logits, target)
            else:
                loss = F.cross_entropy(logits, target)
            loss.backward()
            optimizer.step()
            schedule.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            if step == total:
                break
    return time.perf_counter() - started


@torch.no_grad()
def predict(forward, inputs: dict, size: int) -> torch.Tensor:
    return torch.cat(
        [forward({name: value[index] for name, value in inputs.items()}) for index in torch.arange(size).split(256)]
    ).float()


def execute(
    run: Run, data: Optional[Data] = None, cache: Optional[dict] = None, keep_model: bool = False
) -> dict[str, Any]:
    """Train and evaluate one run; returns its metrics on validation and test, parameter count and time (and, with
    `keep_model`, the trained model of the methods that have one, under "model")."""
    torch.manual_seed(run.seed)
    processor = AutoProcessor.from_pretrained(run.backbone)
    backbone = AutoModel.from_pretrained(run.backbone).eval()
    data = data or load_data(run.task, processor)
    towers = resolve_towers(backbone)
    train_split = data.splits["train"]
    evaluation = {"validation": data.splits["validation"], "test": data.splits["test"]}
    seconds, trainable = 0.0, 0
    if run.method == "zero_shot":
        logits = {s: zero_shot_predictions(backbone, processor.tokenizer, data, s) for s in evaluation}
    elif run.method == "head":
        cache = cache if cache is not None else {}
        features = {}
        started = time.perf_counter()  # computing the features is part of the method's cost
        for split, part in data.splits.items():
            key = (run.backbone, run.task, split)
            if key not in cache:
                cache[key] = frozen_features(towers, part)
            features[split] = cache[key]
        backbone.requires_grad_(False)
        sizes = {
            "image": towers.vision.pooled_size,
            "text": towers.text.pooled_size,
            "embed": towers.vision.embed_size,
        }
        head = FeatureHead(run.options["head"], sizes, len(data.names))
        if run.options["head"] == "zero_shot_init":
            start_zero_shot(head, towers, processor.tokenizer, data, backbone)
        train(lambda batch: head(**batch), list(head.parameters()), features["train"], train_split.labels, run,
              data.multi_label)  # fmt: skip
        seconds = time.perf_counter() - started
        head.eval()
        logits = {s: predict(lambda batch: head(**batch), features[s], len(evaluation[s])) for s in evaluation}
        trainable = sum(p.numel() for p in head.parameters())
    else:
        model = build_model(run, backbone, towers, processor, data)
        if run.options.get("warm_start"):
            warm_start(model, run, train_split, data.multi_label)
        parameters = [p for p in model.parameters() if p.requires_grad]
        trainable = sum(p.numel() for p in parameters)
        model.train()
        if run.options.get("no_dropout"):
            for module in model.modules():
                if isinstance(module, nn.Dropout):
                    module.p = 0.0
        seconds = train(lambda batch: logits_of(model(**batch)), parameters, train_split.inputs, train_split.labels,
                        run, data.multi_label)  # fmt: skip
        model.eval()
        logits = {
            s: predict(lambda batch: logits_of(model(**batch)), part.inputs, len(part))
            for s, part in evaluation.items()
        }
    results = {split: metrics(logits[split], part.labels, data.multi_label) for split, part in evaluation.items()}
    outcome = {
        "validation": results["validation"],
        "test": results["test"],
        "trainable": trainable,
        "seconds": seconds,
    }
    if keep_model and run.method not in ("zero_shot", "head"):
        outcome["model"] = model
    return outcome


def warm_start(model: nn.Module, run: Run, part: Split, multi_label: bool) -> None:
    """The same linear probe before fine-tuning for every method that trains the backbone or prompts: MITP's
    `warm_start_head`, and its equal for the pooled-feature head of LoRA and full fine-tuning."""
    batches = [{**part.batch(index), "labels": part.labels[index]} for index in torch.arange(len(part)).split(256)]
    if run.method == "mitp":
        warm_start_head(model, batches, seed=run.seed)
        return
    model.eval()
    with torch.no_grad():
        features = torch.cat(
            [torch.cat([model.towers.vision.features(b), model.towers.text.features(b)], -1) for b in batches]
        )
    model.train()
    probe = Run(run.backbone, run.task, run.method, {}, WARM_START_LEARNING_RATE, WARM_START_EPOCHS, run.seed)
    train(lambda batch: model.head(batch["features"]), list(model.head.parameters()), {"features": features},
          part.labels, probe, multi_label)  # fmt: skip


def logits_of(out: Any) -> torch.Tensor:
    return out if torch.is_tensor(out) else out.logits


def start_zero_shot(head: FeatureHead, towers: TowerPair, tokenizer: Any, data: Data, backbone: nn.Module) -> None:
    if data.kind == "matching":
        raise ValueError("A zero-shot start needs class labels; matching's labels are entailment and contradiction.")
    scale, bias = similarity_scale(backbone)
    with torch.no_grad():
        head.layers.weight.zero_()
        head.layers.bias.fill_(bias)
        head.class_embeddings.weight.copy_(class_embeddings(towers, tokenizer, data.names) * scale)


def build_model(run: Run, backbone: nn.Module, towers: TowerPair, processor: Any, data: Data) -> nn.Module:
    num_labels = len(data.names)
    if run.method == "full_finetune":
        return PooledClassifier(backbone.requires_grad_(True), towers, num_labels)
    if run.method == "lora":
        lora = get_peft_model(backbone, LoraConfig(r=8, lora_alpha=16, target_modules=LORA_TARGETS))
        classifier = PooledClassifier(lora, resolve_towers(lora.get_base_model()), num_labels)
        return classifier
    if run.method == "mitp":
        options = dict(run.options)
        zero_shot = options.pop("zero_shot_init", False)
        options.pop("warm_start", None)
        options.pop("no_dropout", None)
        config = MITPConfig(
            num_labels=num_labels,
            id2label=dict(enumerate(data.names)),
            problem_type="multi_label_classification" if data.multi_label else "single_label_classification",
            **options,
        )
        model = get_peft_model(backbone, config)
        if zero_shot:
            init_head_zero_shot(model, processor.tokenizer)
        return model
    raise ValueError(f"method must be one of {METHODS}, got {run.method!r}")


def describe(run: Run) -> str:
    options = ", ".join(f"{k}={v}" for k, v in sorted(run.options.items()))
    return f"{Path(run.backbone).name} {run.task} {run.method}({options}) lr={run.learning_rate:g} seed={run.seed}"
