"""Dataset readers on small folders in each published layout, their errors, and the collator."""

import json
import logging

import pytest
import torch
from helpers import pairs_file, picture, tiny_clip_processor
from PIL import Image

from mitp_peft.data import (
    MMIMDB_GENRES,
    MITPCollator,
    load_food101,
    load_hub,
    load_mmimdb,
    load_pairs,
    load_snli_ve,
)


def test_food101(food101):
    data = load_food101(food101)
    assert data["train"].features["label"].names == ["apple_pie", "miso_soup"]
    assert data["train"]["text"][:2] == ["apple pie number 0", "miso soup number 1"]
    assert data["train"]["label"] == [0, 1, 0, 1, 0, 1]
    assert data["test"].num_rows == 4 and data["test"][0]["image"].size == (16, 12)  # the header row is skipped


def test_food101_errors_name_file_and_row(food101):
    (food101 / "images" / "train" / "miso_soup" / "miso_soup_1.jpg").unlink()
    with pytest.raises(FileNotFoundError, match=r"train_titles.csv, row 2: image .*miso_soup_1.jpg does not exist"):
        load_food101(food101)
    picture(food101 / "images" / "train" / "miso_soup" / "miso_soup_1.jpg")
    (food101 / "images" / "test" / "apple_pie" / "apple_pie_0.jpg").write_bytes(b"not an image")
    with pytest.raises(ValueError, match=r"test_titles.csv, row 2: image .*apple_pie_0.jpg cannot be read"):
        load_food101(food101)
    (food101 / "texts" / "test_titles.csv").write_text('apple_pie_0.jpg,"x",apple_tart\n')
    with pytest.raises(ValueError, match=r"test_titles.csv, row 1: unknown label 'apple_tart'"):
        load_food101(food101)


def test_mmimdb_keeps_the_23_genres_and_counts_what_it_drops(tmp_path, caplog):
    root = tmp_path / "mmimdb"
    movies = {"001": ["Drama", "Comedy"], "002": ["Talk-Show"], "003": ["Film-Noir", "Reality-TV"]}
    for movie, genres in movies.items():
        picture(root / "dataset" / f"{movie}.jpeg")
        (root / "dataset" / f"{movie}.json").write_text(
            json.dumps({"plot": [f"plot of {movie}", "other"], "genres": genres})
        )
    (root / "split.json").write_text(json.dumps({"train": ["001", "002"], "dev": ["003"], "test": ["001"]}))
    with caplog.at_level(logging.WARNING):
        data = load_mmimdb(root)
    assert "dropped 1 of 2 movies" in caplog.text
    assert data["train"]["labels"] == [[0, 1]] and data["train"]["text"] == ["plot of 001"]
    assert data["dev"]["labels"] == [[MMIMDB_GENRES.index("Film-Noir")]]
    assert data["train"].features["labels"].feature.names == list(MMIMDB_GENRES) and len(MMIMDB_GENRES) == 23


def test_snli_ve(tmp_path):
    root = tmp_path / "snli_ve"
    picture(root / "flickr30k_images" / "42.jpg")
    for split in ("train", "dev", "test"):
        record = {"Flickr30K_ID": "42", "sentence2": "A dog runs.", "gold_label": "neutral"}
        (root / f"snli_ve_{split}.jsonl").write_text(json.dumps(record) + "\n")
    data = load_snli_ve(root)
    assert data["dev"][0]["label"] == 1 and data["dev"][0]["text"] == "A dog runs."
    (root / "snli_ve_test.jsonl").write_text(
        '{"Flickr30K_ID": "42", "sentence2": "x", "gold_label": "maybe"}\n{oops\n'
    )
    with pytest.raises(ValueError, match=r"snli_ve_test.jsonl, row 1: unknown label 'maybe'"):
        load_snli_ve(root)


def test_own_pairs_from_csv_and_jsonl(tmp_path):
    picture(tmp_path / "img" / "a.png")
    (tmp_path / "train.csv").write_text("path,caption,kind\nimg/a.png,a red square,b\nimg/a.png,a blue one,a\n")
    (tmp_path / "test.jsonl").write_text(json.dumps({"path": "img/a.png", "caption": "x", "kind": "b"}) + "\n")
    files = {"train": tmp_path / "train.csv", "test": tmp_path / "test.jsonl"}
    data = load_pairs(files, image_column="path", text_column="caption", label_column="kind")
    assert data["train"].features["label"].names == ["a", "b"] and data["train"]["label"] == [1, 0]
    assert data["test"]["label"] == [1]
    with pytest.raises(ValueError, match=r"train.csv, row 2: missing column\(s\) \['label'\]"):
        load_pairs(files, image_column="path", text_column="caption")


def test_hub_layout_through_load_dataset(tmp_path):
    """A local folder in the hub's layout (parquet under data/), as load_dataset reads a hub id."""
    import datasets

    picture(tmp_path / "a.png")
    image = (tmp_path / "a.png").read_bytes()
    rows = {"photo": [{"bytes": image, "path": None}] * 3, "title": ["x", "y", "z"], "kind": ["b", "a", "b"]}
    features = datasets.Features(photo=datasets.Image(), title=datasets.Value("string"), kind=datasets.Value("string"))
    (tmp_path / "repo" / "data").mkdir(parents=True)
    for split in ("train", "test"):
        datasets.Dataset.from_dict(rows, features=features).to_parquet(
            tmp_path / "repo" / "data" / f"{split}-0.parquet"
        )
    data = load_hub(str(tmp_path / "repo"), image_column="photo", text_column="title", label_column="kind")
    assert set(data) == {"train", "test"} and data["train"].column_names == ["image", "text", "label"]
    assert data["train"].features["label"].names == ["a", "b"] and data["train"]["label"] == [1, 0, 1]
    assert data["test"][0]["image"].size == (16, 12)
    with pytest.raises(ValueError, match=r"missing column\(s\) \['caption'\]"):
        load_hub(str(tmp_path / "repo"), image_column="photo", text_column="caption", label_column="kind")


def test_collator_builds_model_inputs(tmp_path):
    processor = tiny_clip_processor(tmp_path)
    image = Image.new("RGB", (20, 30))
    rows = [dict(image=image, text="a cat on a mat", label=1), dict(image=image, text="dog", label=0)]
    batch = MITPCollator(processor, max_text_length=6)(rows)
    assert batch["input_ids"].shape == (2, 6) and batch["pixel_values"].shape == (2, 3, 32, 32)
    assert batch["labels"].tolist() == [1, 0]
    multi = MITPCollator(processor, max_text_length=6, num_labels=4)([dict(image=image, text="x", labels=[0, 3])])
    assert multi["labels"].tolist() == [[1.0, 0.0, 0.0, 1.0]] and multi["labels"].dtype == torch.float32
    with pytest.raises(ValueError, match="num_labels"):
        MITPCollator(processor, max_text_length=6)([dict(image=image, text="x", labels=[0])])


def test_the_collator_names_class_names_in_the_label_column_and_how_to_map_them(tmp_path):
    processor = tiny_clip_processor(tmp_path)
    rows = [dict(image=Image.new("RGB", (20, 30)), text="soup", label="soup")]
    with pytest.raises(ValueError, match=r"label column holds class names such as 'soup'.*class_encode_column"):
        MITPCollator(processor, max_text_length=6)(rows)


@pytest.mark.parametrize("cell, shown", [("", "no image"), ("gone.png", "image .*gone.png does not exist")])
def test_a_row_without_its_image_names_the_row_and_allow_missing(tmp_path, cell, shown):
    train = pairs_file(tmp_path, "train.csv", ["a.png,a cat,cat", f"{cell},a dog,dog"])
    with pytest.raises(FileNotFoundError, match=rf"train.csv, row 3: {shown}\. Give it, drop the row, or read with "
                       r"allow_missing=True \(for an adapter with missing_modalities\)"):  # fmt: skip
        load_pairs({"train": train}, image_column="path")
