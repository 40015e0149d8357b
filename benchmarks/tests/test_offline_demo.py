"""The offline demo: its real data sources, the downstream tasks, the backbone build, and shortened runs."""

import gzip
import hashlib
import json
import os
import pickle
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
from helpers import ROOT, script_module
from safetensors.torch import load_file
from transformers import AutoModel, AutoProcessor, BertModel

from mitp_bench import backbone, sources, tasks

DEMO = ROOT / "benchmarks" / "demo.py"

ANIMAL_NAMES = re.compile("|".join(sources.ANIMAL_CLASSES))


def digests(images: np.ndarray) -> list[str]:
    return [hashlib.sha1(image.tobytes()).hexdigest() for image in images]


@pytest.fixture(scope="module")
def splits():
    return tasks.split_images("animals", seed=0)


def test_animal_silhouettes_are_read_as_shipped():
    images, labels = sources.load_animal_silhouettes()
    assert images.shape == (10000, 28, 28) and images.dtype == np.uint8
    assert np.bincount(labels).tolist() == [1000] * 10


def test_pickled_arrays_are_read_without_running_the_pickle(tmp_path):
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    array = np.arange(1000, dtype=np.int64)
    path = tmp_path / "tampered.gz"
    path.write_bytes(gzip.compress(pickle.dumps((Payload(), array), protocol=4)))
    assert sources._pickled_array(path, np.int64).tolist() == array.tolist()
    assert not marker.exists()
    pickle.loads(gzip.decompress(path.read_bytes()))  # what unpickling the same file would have done
    assert marker.exists()

    two = tmp_path / "two.gz"
    two.write_bytes(gzip.compress(pickle.dumps((array, array + 1), protocol=4)))
    with pytest.raises(ValueError, match="not a pickle of one int64 array"):
        sources._pickled_array(two, np.int64)


def test_fashion_mnist_is_read_as_shipped():
    for split, count in (("train", 60000), ("test", 10000)):
        images, labels = sources.load_fashion_mnist(split)
        assert images.shape == (count, 28, 28)
        assert np.bincount(labels).tolist() == [count // 10] * 10


def test_splits_are_balanced_disjoint_and_unseen_in_pretraining(splits):
    seen = set()
    for split, (images, labels) in splits.items():
        assert np.bincount(labels, minlength=10).tolist() == [tasks.PER_CLASS[split]] * 10
        names = set(digests(images))
        assert len(names) == len(images), f"{split} holds duplicate images"
        assert not names & seen, f"{split} shares images with another split"
        seen |= names
    pretraining = np.concatenate([sources.load_fashion_mnist("train")[0], sources.load_fashion_mnist("test")[0]])
    assert not seen & set(digests(pretraining))


def test_fashion_splits_use_only_the_test_images_the_backbones_never_trained_on():
    fashion = tasks.split_images("fashion", seed=0)
    test_images = set(digests(sources.load_fashion_mnist("test")[0]))
    train_images = set(digests(sources.load_fashion_mnist("train")[0]))
    seen = set()
    for split, (images, labels) in fashion.items():
        names = set(digests(images))
        assert np.bincount(labels, minlength=10).tolist() == [tasks.PER_CLASS[split]] * 10
        assert names <= test_images and not names & seen
        seen |= names
    assert not seen & train_images


def named_in(text: str, names: tuple[str, ...]) -> list[int]:
    """The classes a text names, in order (longest names first, so "ankle boot" is not read as "boot")."""
    pattern = re.compile("|".join(sorted(map(re.escape, names), key=len, reverse=True)))
    return [names.index(match) for match in pattern.findall(text.lower())]


def test_tasks_are_reproducible_and_say_what_they_claim(splits):
    either_or, again = tasks.build_task("either_or"), tasks.build_task("either_or")
    assert either_or["train"]["text"] == again["train"]["text"]
    assert tasks.build_task("either_or", seed=1)["train"]["text"] != either_or["train"]["text"]
    for split, (images, labels) in splits.items():
        rows = either_or[split]
        assert list(rows["label"]) == labels.tolist()
        assert np.array_equal(np.asarray(rows[0]["image"]), images[0])
        named = [named_in(text, sources.ANIMAL_CLASSES) for text in rows["text"]]
        assert named == [list(n) for n in rows["named"]]
        assert all(len(set(pair)) == 2 and y in pair for pair, y in zip(named, labels, strict=True))
        first_is_true = np.mean([pair[0] == y for pair, y in zip(named, labels, strict=True)])
        assert 0.45 < first_is_true < 0.55, "the word order would leak the answer"

    for task, names in (("matching", sources.ANIMAL_CLASSES), ("matching_fashion", sources.FASHION_CLASSES)):
        matching = tasks.build_task(task)
        for split in ("train", "test"):
            rows = matching[split]
            images, labels = tasks.split_images(tasks.task_parts(task)[1])[split]
            named = [named_in(text, names) for text in rows["text"]]
            assert [n == [y] for n, y in zip(named, labels, strict=True)] == [label == 1 for label in rows["label"]]
            assert 0.45 < np.mean(rows["label"]) < 0.55


def test_multi_label_targets_are_the_image_class_and_the_named_others(splits):
    data = tasks.build_task("multi_label")
    for split, (_, labels) in splits.items():
        rows = data[split]
        for text, named, targets, label in zip(rows["text"], rows["named"], rows["labels"], labels, strict=True):
            assert named_in(text, sources.ANIMAL_CLASSES) == list(named)
            assert label not in named and sorted([label, *named]) == list(targets)
        counts = np.bincount([len(t) for t in rows["labels"]], minlength=4)
        assert counts[0] == 0 and all(counts[1:] > 0.25 * len(rows))  # 1, 2 or 3 labels, each common


def test_pixels_match_the_saved_processor(tiny_backbone, splits):
    folder, _, _ = tiny_backbone
    images = splits["test"][0][:4]
    from PIL import Image

    expected = AutoProcessor.from_pretrained(folder)(
        images=[Image.fromarray(image).convert("RGB") for image in images], return_tensors="pt"
    )["pixel_values"]
    torch.testing.assert_close(backbone.pixels(images), expected, rtol=0, atol=1e-6)
    # One's own photos of any size come out at the ViT's size.
    photo = AutoProcessor.from_pretrained(folder)(images=[Image.new("RGB", (90, 60))], return_tensors="pt")
    assert photo["pixel_values"].shape == (1, 3, 28, 28)


def test_build_trains_the_vision_tower_keeps_minilm_and_is_reused(tiny_backbone, capsys):
    folder, settings, report = tiny_backbone
    built = AutoModel.from_pretrained(folder)
    minilm = BertModel.from_pretrained(sources.minilm_path())
    for name, value in minilm.state_dict().items():
        assert torch.equal(built.text_model.state_dict()[name], value), name
    torch.manual_seed(settings.seed)
    initial, _ = backbone.new_backbone(settings)
    assert not torch.equal(
        built.vision_model.embeddings.patch_embeddings.projection.weight,
        initial.vision_model.embeddings.patch_embeddings.projection.weight,
    )
    test_images, test_labels = sources.load_fashion_mnist("test")
    again = backbone.zero_shot_accuracy(built, AutoProcessor.from_pretrained(folder), test_images[:500],
                                        test_labels[:500], sources.FASHION_CLASSES)  # fmt: skip
    assert report["zero_shot_fashion_mnist_test"] == pytest.approx(again, abs=0.1)  # measured on all 10,000

    weights = folder / "model.safetensors"
    stamp = weights.stat().st_mtime_ns
    assert backbone.build_backbone(folder, settings) == report
    assert "Reusing" in capsys.readouterr().out
    assert weights.stat().st_mtime_ns == stamp


def run_demo(*arguments: str) -> str:
    done = subprocess.run(
        [sys.executable, str(DEMO), *arguments],
        capture_output=True,
        text=True,
        timeout=900,
        env=dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1"),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.mark.slow
def test_shortened_demo_answers_questions_with_every_row_and_reloads_the_adapter(unfitted_dino_backbone, tmp_path):
    sizes = json.dumps({"train": 48, "validation": 32, "test": 40})
    out = run_demo("--base_model", str(unfitted_dino_backbone), "--sizes", sizes, "--epochs", "1", "--output_dir",
                   str(tmp_path))  # fmt: skip
    demo = script_module("benchmarks/demo.py")
    table = [line for line in out.splitlines() if line.startswith("| ")]
    cells = {line.split(" | ")[0][2:]: line.split(" | ") for line in table[1:]}
    assert (
        list(cells)
        == [name for name, *_ in demo.ROWS]
        == [
            "late fusion, MLP head (20 epochs)",
            "LoRA r=8 + MLP head",
            "MITP (defaults)",
        ]
    )
    assert demo.NO_ZERO_SHOT in out
    assert "easy-VQA: 48 training questions, 40 test questions" in out
    assert "logits match the trained model's" in out
    saved = load_file(tmp_path / "adapter" / "adapter_model.safetensors")
    assert cells["MITP (defaults)"][3] == f"{sum(t.numel() for t in saved.values()):,}"
    lora = 2 * 8 * 4 * 384 * 12 + 2 * 8 * 4 * 384 * 6  # r=8 on q, k, v, o of 12 DINOv2 and 6 MiniLM layers
    head = int(cells["late fusion, MLP head (20 epochs)"][3].replace(",", ""))
    assert int(cells["LoRA r=8 + MLP head"][3].replace(",", "")) == lora + head
    config = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert config["id2label"]["0"] == "yes" and config["num_labels"] == 13 and config["hub_reads"] == "tokens"
    card = (tmp_path / "adapter" / "README.md").read_text()
    assert "easy-VQA (mitp-peft demo, 48 training questions)" in card
    predictions = [line for line in out.splitlines() if "true:" in line and "predicted:" in line]
    assert len(predictions) == 5 and all("?" in line for line in predictions)
