"""The demo's downstream tasks, of the paper's three kinds, built reproducibly from two image sources.

Kinds:
- `either_or` (UPMC-Food101's kind: photo + recipe title): each modality carries part of the evidence. The text
  names two classes, one of them right ("It is either a cow or a horse."); the image decides. Text alone gives 50%,
  the image alone is a 10-way problem, and together they give a 2-way one.
- `matching` (SNLI-VE's kind, visual entailment): does "This is a zebra." fit this image? Half the statements do.
  It needs the two modalities compared, which no late-fusion linear head can do (its score is a sum of per-modality
  terms).
- `multi_label` (MM-IMDB's kind, several labels per pair, F1-macro and F1-micro): the image shows one animal and the
  text names the others that were also seen ("Also seen: a cow and a sheep."); the labels are all of them.
- `grid_matching` and `grid_locating`, where the text must tell the vision tower what to look at: the image is a 2x2
  grid of four items of different classes. Matching asks whether the named cell holds the named item ("top left: a
  sandal?"); half the statements hold, a quarter name an item absent from the grid (*presence*: a pooled image
  vector can tell) and a quarter an item in another cell (*binding*: what interaction is for); `negative` records
  which. Locating names an item of the grid and asks for its cell (4-way). One pooled vector of the grid must hold
  every item and its place, or the towers must talk.

- `easy_vqa`, public data (`mitp_bench.easy_vqa`): questions about one coloured shape per image, 13 answers.

Images:
- animal silhouettes (PyPI animal-mnist), which the demo backbones never saw: the plain task names
  (`either_or`, `matching`, `multi_label`);
- Fashion-MNIST's *test* images, of the kind the backbones were pre-trained on (their train split), where the
  backbone's own zero-shot prediction is informative: `either_or_fashion`, `matching_fashion`, and the grids, whose
  items are such images but whose whole the backbones never saw.

Images are deduplicated (animal-mnist holds 284 exact copies), then each class gives the same number of images to
each split, so the splits share no image and are balanced. Every row records the classes its text names (`named`),
for the zero-shot rows of the benchmarks.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Optional

import datasets
import numpy as np
from PIL import Image

from mitp_bench import easy_vqa
from mitp_bench.sources import ANIMAL_CLASSES, FASHION_CLASSES, load_animal_silhouettes, load_fashion_mnist

PER_CLASS = {"train": 500, "validation": 50, "test": 250}
GRIDS = {"train": 4000, "validation": 500, "test": 2000}
"""Grids per split, each of four images drawn from that split's images (so the splits still share no image)."""
GRID_CELLS = ("top left", "top right", "bottom left", "bottom right")
GRID_MATCHING_TEMPLATES = ("{cell}: {item}?", "Is there {item} in the {cell} cell?", "In the {cell}: {item}?")
GRID_LOCATING_TEMPLATES = ("Where is the {item}?", "Which cell holds the {item}?", "Find the {item}.")
EITHER_OR_TEMPLATES = ("It is either {} or {}.", "{} or {}?", "This could be {}, or {}.")
MATCHING_TEMPLATES = ("This is {}.", "A picture of {}.", "It shows {}.")
MULTI_LABEL_TEMPLATES = ("Also seen: {}.", "Together with {}.", "{} also appeared.")
NOTHING_ELSE = ("Nothing else was seen.", "It was alone.")
MATCHING_LABELS = ("contradiction", "entailment")
KINDS = ("either_or", "matching", "multi_label", "grid_matching", "grid_locating", "easy_vqa")
GRID_KINDS = ("grid_matching", "grid_locating")
SOURCES: dict[str, tuple[tuple[str, ...], Callable[[], tuple[np.ndarray, np.ndarray]]]] = {
    "animals": (ANIMAL_CLASSES, load_animal_silhouettes),
    "fashion": (FASHION_CLASSES, lambda: load_fashion_mnist("test")),
}
TASKS = (
    "either_or", "matching", "multi_label", "either_or_fashion", "matching_fashion", "grid_matching", "grid_locating",
    "easy_vqa",
)  # fmt: skip


def task_parts(task: str) -> tuple[str, str]:
    """(kind, image source) of a task name."""
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    if task == "easy_vqa":
        return task, task
    if task.endswith("_fashion") or task in GRID_KINDS:
        return task.removesuffix("_fashion"), "fashion"
    return task, "animals"


def label_names(task: str) -> tuple[str, ...]:
    """The names of a task's labels."""
    kind, source = task_parts(task)
    if kind == "easy_vqa":
        return easy_vqa.ANSWERS
    if kind in ("matching", "grid_matching"):
        return MATCHING_LABELS
    return GRID_CELLS if kind == "grid_locating" else SOURCES[source][0]


def image_size(task: str, item_size: int) -> int:
    """The pixels an image of the task is shown at, for a backbone that shows an item at `item_size`: twice that
    for the 2x2 grids, easy-VQA's own size (see `mitp_bench.easy_vqa`)."""
    kind = task_parts(task)[0]
    if kind == "easy_vqa":
        return easy_vqa.IMAGE_SIZE
    return 2 * item_size if kind in GRID_KINDS else item_size


def class_names(task: str) -> tuple[str, ...]:
    """The names of the image classes a task draws from."""
    return SOURCES[task_parts(task)[1]][0]


def split_images(source: str = "animals", seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Unique images of a source, split per class into disjoint train / validation / test sets of fixed sizes."""
    names, load = SOURCES[source]
    images, labels = load()
    first = {}
    for index, image in enumerate(images):
        first.setdefault(image.tobytes(), index)
    unique = np.array(sorted(first.values()))
    rng = np.random.default_rng(seed)
    chosen = {split: [] for split in PER_CLASS}
    for label in range(len(names)):
        members = rng.permutation(unique[labels[unique] == label])
        start = 0
        for split, count in PER_CLASS.items():
            chosen[split].append(members[start : start + count])
            start += count
    return {split: _shuffled(images, labels, np.concatenate(parts), rng) for split, parts in chosen.items()}


def _shuffled(images: np.ndarray, labels: np.ndarray, indices: np.ndarray, rng) -> tuple[np.ndarray, np.ndarray]:
    indices = rng.permutation(indices)
    return images[indices], labels[indices]


def build_task(task: str, seed: int = 0, limit: Optional[dict[str, int]] = None) -> datasets.DatasetDict:
    """The task as a DatasetDict of `image` (PIL), `text`, `named` and `label` (or `labels` for multi-label), the
    layout of the package's data readers; `limit` keeps the first rows of each split it names."""
    kind, source = task_parts(task)
    if kind == "easy_vqa":
        return easy_vqa.build(seed, limit)
    built = _built_task(task, kind, source, seed)
    if not limit:
        return built
    return datasets.DatasetDict(
        {split: rows.select(range(min(len(rows), limit.get(split, len(rows))))) for split, rows in built.items()}
    )


def _built_task(task: str, kind: str, source: str, seed: int) -> datasets.DatasetDict:
    names = SOURCES[source][0]
    rng = np.random.default_rng(seed + 1)
    if kind in GRID_KINDS:
        return _grid_task(kind, names, split_images(source, seed), rng)
    make = {"either_or": _either_or, "matching": _matching, "multi_label": _multi_label}[kind]
    splits = {}
    for split, (images, labels) in split_images(source, seed).items():
        rows = [make(int(label), names, rng) for label in labels]
        if kind == "multi_label":
            label_feature = {"labels": datasets.Sequence(datasets.ClassLabel(names=list(names)))}
        else:
            label_feature = {"label": datasets.ClassLabel(names=list(label_names(task)))}
        columns = {
            "image": [Image.fromarray(image) for image in images],
            "text": [text for text, _, _ in rows],
            "named": [named for _, named, _ in rows],
            next(iter(label_feature)): [target for _, _, target in rows],
        }
        splits[split] = datasets.Dataset.from_dict(columns, features=_features(label_feature))
    return datasets.DatasetDict(splits)


def _features(label_feature: dict, **more: datasets.Value) -> datasets.Features:
    return datasets.Features(
        image=datasets.Image(),
        text=datasets.Value("string"),
        named=datasets.Sequence(datasets.Value("int64")),
        **label_feature,
        **more,
    )


def _grid_task(kind: str, names: tuple[str, ...], images: dict, rng) -> datasets.DatasetDict:
    """Grids of four items of different classes from each split's images; `named` is [named class, named cell] for
    matching and [named class] for locating, `cells` the four classes in reading order."""
    splits = {}
    for split, (pool, labels) in images.items():
        members = [np.flatnonzero(labels == c) for c in range(len(names))]
        columns = {"image": [], "text": [], "named": [], "cells": [], "negative": [], "label": []}
        for _ in range(GRIDS[split]):
            cells = [int(c) for c in rng.choice(len(names), size=4, replace=False)]
            items = [pool[rng.choice(members[c])] for c in cells]
            grid = np.block([[items[0], items[1]], [items[2], items[3]]])
            if kind == "grid_matching":
                text, named, negative, label = _grid_statement(cells, names, rng)
            else:
                cell = int(rng.integers(4))
                template = GRID_LOCATING_TEMPLATES[rng.integers(len(GRID_LOCATING_TEMPLATES))]
                text, named, negative, label = template.format(item=names[cells[cell]]), [cells[cell]], "", cell
            for column, value in zip(
                columns, (Image.fromarray(grid), text, named, cells, negative, label), strict=True
            ):
                columns[column].append(value)
        label_feature = {
            "label": datasets.ClassLabel(names=list(MATCHING_LABELS if kind == "grid_matching" else GRID_CELLS))
        }
        features = _features(
            label_feature, cells=datasets.Sequence(datasets.Value("int64")), negative=datasets.Value("string")
        )
        splits[split] = datasets.Dataset.from_dict(columns, features=features)
    return datasets.DatasetDict(splits)


def _grid_statement(cells: list[int], names: tuple[str, ...], rng) -> tuple[str, list[int], str, int]:
    """A statement about one cell: true half the time, else an absent item or one from another cell."""
    cell = int(rng.integers(4))
    draw = rng.random()
    if draw < 0.5:
        item, negative, label = cells[cell], "", 1
    elif draw < 0.75:
        item, negative, label = int(rng.choice([c for c in range(len(names)) if c not in cells])), "absent", 0
    else:
        item, negative, label = int(rng.choice([c for i, c in enumerate(cells) if i != cell])), "binding", 0
    template = GRID_MATCHING_TEMPLATES[rng.integers(len(GRID_MATCHING_TEMPLATES))]
    text = _sentence(template.format(cell=GRID_CELLS[cell], item=_named(item, names)))
    return text, [item, cell], negative, label


def _others(label: int, count: int, names: tuple[str, ...], rng) -> list[int]:
    return [int(c) for c in rng.choice([c for c in range(len(names)) if c != label], size=count, replace=False)]


def _either_or(label: int, names: tuple[str, ...], rng) -> tuple[str, list[int], int]:
    other = _others(label, 1, names, rng)[0]
    pair = [label, other] if rng.random() < 0.5 else [other, label]
    template = EITHER_OR_TEMPLATES[rng.integers(len(EITHER_OR_TEMPLATES))]
    return _sentence(template.format(*(_named(c, names) for c in pair))), pair, label


def _matching(label: int, names: tuple[str, ...], rng) -> tuple[str, list[int], int]:
    fits = rng.random() < 0.5
    named = label if fits else _others(label, 1, names, rng)[0]
    template = MATCHING_TEMPLATES[rng.integers(len(MATCHING_TEMPLATES))]
    return template.format(_named(named, names)), [named], int(fits)


def _multi_label(label: int, names: tuple[str, ...], rng) -> tuple[str, list[int], list[int]]:
    others = _others(label, int(rng.integers(3)), names, rng)
    if not others:
        return NOTHING_ELSE[rng.integers(len(NOTHING_ELSE))], [], [label]
    listed = " and ".join(_named(c, names) for c in others)
    template = MULTI_LABEL_TEMPLATES[rng.integers(len(MULTI_LABEL_TEMPLATES))]
    return _sentence(template.format(listed)), others, sorted([label, *others])


def _sentence(text: str) -> str:
    return text[0].upper() + text[1:]


def _named(label: int, names: tuple[str, ...]) -> str:
    name = names[label]
    return f"an {name}" if name[0] in "aeiou" else f"a {name}"
