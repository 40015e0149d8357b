"""The demo's downstream tasks, built reproducibly from animal silhouettes the backbone never saw.

- `either_or` is of the paper's kind (UPMC-Food101: photo + recipe title): each modality carries part of the
  evidence. The text names two species, one of them right ("It is either a cow or a horse."); the image decides.
  Text alone gives 50%, the image alone is a 10-way problem, and together they give a 2-way one.
- `matching` is visual entailment: does "This is a zebra." fit this image? Half the statements do. It needs the
  two modalities compared, which no late-fusion linear head can do (its score is a sum of per-modality terms).

Images are deduplicated (the package holds 284 exact copies), then each class gives the same number of images to
each split, so the splits share no image and are balanced.
"""

import datasets
import numpy as np
from PIL import Image
from sources import ANIMAL_CLASSES, load_animal_silhouettes

PER_CLASS = {"train": 500, "validation": 50, "test": 250}
EITHER_OR_TEMPLATES = ("It is either {} or {}.", "{} or {}?", "This could be {}, or {}.")
MATCHING_TEMPLATES = ("This is {}.", "A picture of {}.", "The animal is {}.")
MATCHING_LABELS = ("contradiction", "entailment")
TASKS = ("either_or", "matching")


def split_images(seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Unique silhouettes, split per class into disjoint train / validation / test sets of fixed sizes."""
    images, labels = load_animal_silhouettes()
    first = {}
    for index, image in enumerate(images):
        first.setdefault(image.tobytes(), index)
    unique = np.array(sorted(first.values()))
    rng = np.random.default_rng(seed)
    chosen = {split: [] for split in PER_CLASS}
    for label in range(len(ANIMAL_CLASSES)):
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
    """The task as a DatasetDict of `image` (PIL), `text` and `label`, the layout of the package's data readers."""
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    rng = np.random.default_rng(seed + 1)
    splits = {}
    for split, (images, labels) in split_images(seed).items():
        rows = [_either_or(label, rng) if task == "either_or" else _matching(label, rng) for label in labels]
        names = ANIMAL_CLASSES if task == "either_or" else MATCHING_LABELS
        features = datasets.Features(
            image=datasets.Image(), text=datasets.Value("string"), label=datasets.ClassLabel(names=list(names))
        )
        columns = {"image": [Image.fromarray(image) for image in images], "text": [t for t, _ in rows]}
        splits[split] = datasets.Dataset.from_dict({**columns, "label": [y for _, y in rows]}, features=features)
    return datasets.DatasetDict(splits)


def _either_or(label: int, rng) -> tuple[str, int]:
    other = rng.choice([c for c in range(len(ANIMAL_CLASSES)) if c != label])
    pair = [label, other] if rng.random() < 0.5 else [other, label]
    template = EITHER_OR_TEMPLATES[rng.integers(len(EITHER_OR_TEMPLATES))]
    return template.format(*(_named(c) for c in pair)).capitalize(), int(label)


def _matching(label: int, rng) -> tuple[str, int]:
    fits = rng.random() < 0.5
    named = label if fits else rng.choice([c for c in range(len(ANIMAL_CLASSES)) if c != label])
    template = MATCHING_TEMPLATES[rng.integers(len(MATCHING_TEMPLATES))]
    return template.format(_named(named)), int(fits)


def _named(label: int) -> str:
    name = ANIMAL_CLASSES[label]
    return f"an {name}" if name[0] in "aeiou" else f"a {name}"
