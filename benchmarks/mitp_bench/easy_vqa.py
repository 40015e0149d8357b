"""easy-VQA (PyPI `easy-vqa`, MIT licence): questions about one coloured shape per 64 x 64 image, 13 answers.

A public visual-question dataset that installs offline: 4,000 training and 1,000 test images, 38,575 / 9,673
questions about colour, shape and presence, negations included ("is there not a red shape?"). Neither the question
nor the image answers alone: the question says what to look for, which is the kind of task MITP's interaction is for.

Splits: the published test split is the test split, whole. Validation holds the questions of `VALIDATION_IMAGES`
training images set aside (seeded), so that no image is in two splits; the training split draws `TRAIN_QUESTIONS`
questions from the other training images. Every row records the image it asks about (`image_id`).

Image size, chosen on evidence (`python -m mitp_bench.easy_vqa --probe`, docs/results.md): 56 px, 4 x 4 patches of
14 px, where a linear probe on the frozen DINOv2 CLS features reads an image's colour and shape as well as at 84 px,
at half the cost.
"""

from __future__ import annotations

import argparse
import time
from typing import Optional

import datasets
import numpy as np
import torch
from PIL import Image

ANSWERS = (
    "yes", "no", "circle", "rectangle", "triangle", "red", "green", "blue", "yellow", "teal", "brown", "black", "gray"
)  # fmt: skip
"""The 13 answers, as label names: yes / no, then the shapes, then the colours."""
SHAPES = ANSWERS[2:5]
COLORS = ANSWERS[5:]
IMAGE_SIZE = 56
TRAIN_QUESTIONS = 6000
VALIDATION_IMAGES = 400
VALIDATION_QUESTIONS = 1000
PACKAGE = "easy-vqa==1.0"


def _package():
    try:
        import easy_vqa
    except ImportError as error:
        raise ImportError(f"easy-VQA ships in `pip install {PACKAGE}` (the Makefile installs it).") from error
    return easy_vqa


def questions(split: str) -> tuple[list[str], list[str], list[int]]:
    """The published `train` or `test` questions: texts, answers and image ids."""
    package = _package()
    texts, answers, image_ids = package.get_train_questions() if split == "train" else package.get_test_questions()
    unknown = sorted(set(answers) - set(ANSWERS))
    if unknown:
        raise ValueError(f"easy-VQA's {split} split has answers outside the 13 known ones: {unknown}.")
    return list(texts), list(answers), [int(i) for i in image_ids]


def images(split: str, image_ids: set[int]) -> dict[int, np.ndarray]:
    """The RGB images (64, 64, 3) of a published split, by id."""
    package = _package()
    paths = package.get_train_image_paths() if split == "train" else package.get_test_image_paths()
    loaded = {}
    for image_id in sorted(image_ids):
        with Image.open(paths[image_id]) as opened:
            loaded[image_id] = np.asarray(opened.convert("RGB"))
    return loaded


def build(seed: int = 0, limit: Optional[dict[str, int]] = None) -> datasets.DatasetDict:
    """The task as a DatasetDict of `image` (PIL), `text`, `named` (empty: the answers are not image classes),
    `image_id` and `label` (an index into `ANSWERS`); `limit` keeps the first questions of each split it names (the
    same questions the whole split starts with)."""
    rng = np.random.default_rng(seed)
    texts, answers, image_ids = questions("train")
    training_images = sorted(set(image_ids))
    held_out = set(rng.choice(training_images, size=VALIDATION_IMAGES, replace=False).tolist())
    validation = [i for i, image in enumerate(image_ids) if image in held_out]
    training = [i for i, image in enumerate(image_ids) if image not in held_out]
    chosen = {
        "train": rng.choice(training, size=min(TRAIN_QUESTIONS, len(training)), replace=False),
        "validation": rng.choice(validation, size=min(VALIDATION_QUESTIONS, len(validation)), replace=False),
    }
    limit = limit or {}
    chosen = {split: rows[: limit.get(split)] for split, rows in chosen.items()}
    pixels = images("train", {image_ids[i] for rows in chosen.values() for i in rows})
    splits = {
        split: _dataset([texts[i] for i in rows], [answers[i] for i in rows], [image_ids[i] for i in rows], pixels)
        for split, rows in chosen.items()
    }
    texts, answers, image_ids = (column[: limit.get("test")] for column in questions("test"))
    splits["test"] = _dataset(texts, answers, image_ids, images("test", set(image_ids)))
    return datasets.DatasetDict(splits)


def _dataset(texts: list[str], answers: list[str], image_ids: list[int], pixels: dict) -> datasets.Dataset:
    features = datasets.Features(
        image=datasets.Image(),
        text=datasets.Value("string"),
        named=datasets.Sequence(datasets.Value("int64")),
        image_id=datasets.Value("int64"),
        label=datasets.ClassLabel(names=list(ANSWERS)),
    )
    columns = {
        "image": [Image.fromarray(pixels[i]) for i in image_ids],
        "text": texts,
        "named": [[] for _ in texts],
        "image_id": image_ids,
        "label": [ANSWERS.index(answer) for answer in answers],
    }
    return datasets.Dataset.from_dict(columns, features=features)


def image_attributes(split: str) -> dict[int, dict[str, str]]:
    """What the "what color" and "what shape" questions say of each image: {id: {"color": ..., "shape": ...}}."""
    attributes: dict[int, dict[str, str]] = {}
    for text, answer, image_id in zip(*questions(split), strict=True):
        if text.startswith("what"):
            attributes.setdefault(image_id, {})["shape" if answer in SHAPES else "color"] = answer
    return attributes


def probe(sizes: tuple[int, ...] = (28, 42, 56, 84, 112)) -> dict[int, dict[str, float]]:
    """Per image size: how well a linear probe on the frozen DINOv2 CLS features reads each image's colour and shape
    (accuracy on the test images, probes fitted on the training images), and the forward's cost per image."""
    from mitp_bench.dino import IMAGENET_MEAN, IMAGENET_STD, dinov2_from_onnx
    from mitp_bench.sources import to_pixels

    vision = dinov2_from_onnx().eval()
    found = {split: image_attributes(split) for split in ("train", "test")}
    kept = {split: sorted(i for i, a in found[split].items() if len(a) == 2) for split in found}
    arrays = {split: images(split, set(kept[split])) for split in kept}
    results = {}
    for size in sizes:
        features, seconds = {}, 0.0
        for split in kept:
            stacked = np.stack([arrays[split][i] for i in kept[split]])
            pixels = to_pixels(stacked, size, IMAGENET_MEAN, IMAGENET_STD)
            started = time.perf_counter()
            with torch.no_grad():
                features[split] = torch.cat([vision(pixel_values=chunk).pooler_output for chunk in pixels.split(250)])
            seconds += time.perf_counter() - started
        scores = {}
        for attribute in ("color", "shape"):
            targets = {split: [found[split][i][attribute] for i in kept[split]] for split in kept}
            scores[attribute] = linear_probe(features["train"], targets["train"], features["test"], targets["test"])
        scores["ms_per_image"] = 1000 * seconds / sum(len(k) for k in kept.values())
        results[size] = scores
        print(f"{size} px: colour {scores['color']:.3f}, shape {scores['shape']:.3f}, "
              f"{scores['ms_per_image']:.1f} ms per image", flush=True)  # fmt: skip
    return results


def linear_probe(train: torch.Tensor, train_labels: list, test: torch.Tensor, test_labels: list) -> float:
    """Test accuracy of a multinomial logistic regression on standardized features (full-batch L-BFGS)."""
    names = sorted(set(train_labels))
    y_train = torch.tensor([names.index(v) for v in train_labels])
    y_test = torch.tensor([names.index(v) if v in names else -1 for v in test_labels])
    mean, std = train.mean(0), train.std(0) + 1e-6
    x_train, x_test = (train - mean) / std, (test - mean) / std
    torch.manual_seed(0)
    layer = torch.nn.Linear(x_train.shape[1], len(names))
    optimizer = torch.optim.LBFGS(layer.parameters(), max_iter=500, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(layer(x_train), y_train) + 1e-3 * layer.weight.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    with torch.no_grad():
        return float((layer(x_test).argmax(-1) == y_test).float().mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--probe", action="store_true", help="the image-size probe on frozen DINOv2 features")
    args = parser.parse_args()
    if args.probe:
        probe()


if __name__ == "__main__":
    main()
