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

Images:
- animal silhouettes (PyPI animal-mnist), which the demo backbones never saw: the plain task names
  (`either_or`, `matching`, `multi_label`);
- Fashion-MNIST's *test* images, of the kind the backbones were pre-trained on (their train split), where the
  backbone's own zero-shot prediction is informative: `either_or_fashion`, `matching_fashion`.

Images are deduplicated (animal-mnist holds 284 exact copies), then each class gives the same number of images to
each split, so the splits share no image and are balanced. Every row records the classes its text names (`named`),
for the zero-shot rows of the benchmarks.
"""

from __future__ import annotations

from collections.abc import Callable

import datasets
import numpy as np
from PIL import Image

from .sources import ANIMAL_CLASSES, FASHION_CLASSES, load_animal_silhouettes, load_fashion_mnist

PER_CLASS = {"train": 500, "validation": 50, "test": 250}
EITHER_OR_TEMPLATES = ("It is either {} or {}.", "{} or {}?", "This could be {}, or {}.")
MATCHING_TEMPLATES = ("This is {}.", "A picture of {}.", "It shows {}.")
MULTI_LABEL_TEMPLATES = ("Also seen: {}.", "Together with {}.", "{} also appeared.")
NOTHING_ELSE = ("Nothing else was seen.", "It was alone.")
MATCHING_LABELS = ("contradiction", "entailment")
KINDS = ("either_or", "matching", "multi_label")
SOURCES: dict[str, tuple[tuple[str, ...], Callable[[], tuple[np.ndarray, np.ndarray]]]] = {
    "animals": (ANIMAL_CLASSES, load_animal_silhouettes),
    "fashion": (FASHION_CLASSES, lambda: load_fashion_mnist("test")),
}
TASKS = ("either_or", "matching", "multi_label", "either_or_fashion", "matching_fashion")


def task_parts(task: str) -> tuple[str, str]:
    """(kind, image source) of a task name."""
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    if task.endswith("_fashion"):
        return task.removesuffix("_fashion"), "fashion"
    return task, "animals"


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


def build_task(task: str, seed: int = 0) -> datasets.DatasetDict:
    """The task as a DatasetDict of `image` (PIL), `text`, `named` and `label` (or `labels` for multi-label), the
    layout of the package's data readers."""
    kind, source = task_parts(task)
    names = SOURCES[source][0]
    rng = np.random.default_rng(seed + 1)
    make = {"either_or": _either_or, "matching": _matching, "multi_label": _multi_label}[kind]
    splits = {}
    for split, (images, labels) in split_images(source, seed).items():
        rows = [make(int(label), names, rng) for label in labels]
        if kind == "multi_label":
            label_feature = {"labels": datasets.Sequence(datasets.ClassLabel(names=list(names)))}
        else:
            label_names = names if kind == "either_or" else MATCHING_LABELS
            label_feature = {"label": datasets.ClassLabel(names=list(label_names))}
        features = datasets.Features(
            image=datasets.Image(),
            text=datasets.Value("string"),
            named=datasets.Sequence(datasets.Value("int64")),
            **label_feature,
        )
        columns = {
            "image": [Image.fromarray(image) for image in images],
            "text": [text for text, _, _ in rows],
            "named": [named for _, named, _ in rows],
            next(iter(label_feature)): [target for _, _, target in rows],
        }
        splits[split] = datasets.Dataset.from_dict(columns, features=features)
    return datasets.DatasetDict(splits)


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
