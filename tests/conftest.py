"""The package tests' fixtures, built from `helpers`, and the `cuda` marker's rule."""

from __future__ import annotations

import pytest
from helpers import DEVICE, make_inputs, picture, tiny_clip, tiny_clip_processor


def pytest_collection_modifyitems(config, items) -> None:
    """Tests marked `cuda` are properties of CUDA devices (host syncs): they run where MITP_TEST_DEVICE is cuda (the
    GPU check) and are skipped, saying so, elsewhere."""
    if DEVICE.startswith("cuda"):
        return
    skip = pytest.mark.skip(reason="needs a CUDA device: run with MITP_TEST_DEVICE=cuda (make gpu-check)")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def device() -> str:
    return DEVICE


@pytest.fixture
def base():
    return tiny_clip()


@pytest.fixture
def inputs():
    return make_inputs()


@pytest.fixture
def base_folder(tmp_path):
    """A local base model in the hub layout: the tiny CLIP's weights, config and processor."""
    folder = tmp_path / "tiny-clip"
    folder.mkdir()
    tiny_clip().save_pretrained(folder)
    tiny_clip_processor(tmp_path).save_pretrained(folder)
    return folder


@pytest.fixture
def food101(tmp_path):
    """UPMC-Food101 in its published layout: 2 classes, 6 training and 4 test pairs (test CSV with a header)."""
    root = tmp_path / "food101"
    classes = ("apple_pie", "miso_soup")
    for split, count in (("train", 6), ("test", 4)):
        lines = ["image,text,label"] if split == "test" else []
        for i in range(count):
            label = classes[i % 2]
            picture(root / "images" / split / label / f"{label}_{i}.jpg", seed=i)
            lines.append(f'{label}_{i}.jpg,"{label.replace("_", " ")} number {i}",{label}')
        (root / "texts").mkdir(exist_ok=True)
        (root / "texts" / f"{split}_titles.csv").write_text("\n".join(lines) + "\n")
    return root
