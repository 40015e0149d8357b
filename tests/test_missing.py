"""Samples that lack their image or their text: masks, towers that do not run, readers, prediction, bad inputs."""

import json
from functools import partial

import datasets
import pytest
import torch
from families import FAMILIES, build, family_inputs
from helpers import PAD, adapter_module, make_inputs, pairs_file, picture, tiny_clip, tiny_clip_processor
from peft import PeftModel, get_peft_model
from PIL import Image

import mitp_peft
from mitp_peft import MITPConfig
from mitp_peft.arguments import DataArguments, load_splits
from mitp_peft.data import (
    MITPCollator,
    load_food101,
    load_hub,
    load_mmimdb,
    load_pairs,
    load_snli_ve,
    simulate_missing,
)

LABELS = torch.tensor([0, 1, 2])
AWARE = dict(num_labels=3, missing_modalities=True)


def aware(base, **kwargs):
    model = get_peft_model(base, MITPConfig(**AWARE, **kwargs))
    torch.manual_seed(4)
    with torch.no_grad():  # trained-looking missing prompts and placeholders, not their zero start
        adapter = adapter_module(model)
        for parameter in (adapter.missing_prompts, adapter.image_placeholder, adapter.text_placeholder):
            parameter.add_(torch.randn_like(parameter))
    return model


@pytest.mark.parametrize("name", ["clip", "siglip", "vit+bert", "dinov2+bert"])
def test_complete_samples_are_computed_as_without_missing_awareness(name):
    model = aware(build(name))
    plain = get_peft_model(build(name), MITPConfig(num_labels=3))
    plain.load_state_dict(model.state_dict(), strict=False)  # the same prompts, hub and head
    inputs = family_inputs(name)
    assert torch.equal(model(**inputs).logits, plain(**inputs).logits)


def test_trained_on_complete_pairs_a_missing_aware_adapter_is_todays_adapter(inputs):
    """Nothing missing in training and test: the option changes nothing, step for step (its prompts and placeholders
    get no gradient, so AdamW leaves them at zero)."""
    torch.manual_seed(0)
    model = get_peft_model(tiny_clip(), MITPConfig(**AWARE))
    plain = get_peft_model(tiny_clip(), MITPConfig(num_labels=3))
    plain.load_state_dict(model.state_dict(), strict=False)
    with torch.no_grad():
        before = plain(**inputs).logits
    for trained in (model, plain):
        optimizer = torch.optim.AdamW([p for p in trained.parameters() if p.requires_grad], lr=1e-2)
        for _ in range(3):
            optimizer.zero_grad()
            trained(**inputs, labels=LABELS).loss.backward()
            optimizer.step()
    after = plain(**inputs).logits
    assert torch.equal(model(**inputs).logits, after) and (after - before).abs().max() > 1e-2  # and it did train
    adapter = adapter_module(model)
    assert not adapter.missing_prompts.any() and not adapter.image_placeholder.any()


def test_what_a_sample_lacks_never_reaches_its_output(inputs):
    model = aware(tiny_clip())
    lacks = dict(image_present=torch.tensor([True, False, True]), text_present=torch.tensor([True, True, False]))
    out = model(**inputs, **lacks).logits
    other = make_inputs(seed=9)
    changed_image = dict(inputs, pixel_values=other["pixel_values"])
    changed_text = dict(inputs, input_ids=other["input_ids"], attention_mask=other["attention_mask"])
    by_image, by_text = model(**changed_image, **lacks).logits, model(**changed_text, **lacks).logits
    assert torch.equal(by_image[1], out[1]) and torch.equal(by_text[2], out[2])  # their placeholders: unread
    assert (by_image[0] - out[0]).abs().max() > 1e-3 and (by_text[0] - out[0]).abs().max() > 1e-3
    assert (by_image[2] - out[2]).abs().max() > 1e-3  # sample 2 has its image, and it counts
    # A sample without its image differs from the same sample with it: the prompts and the head know.
    assert (out[1] - model(**inputs).logits[1]).abs().max() > 1e-3


def test_a_batch_of_texts_alone_never_runs_the_vision_tower(inputs):
    model = aware(tiny_clip())
    calls = []
    vision = model.base_model.towers.vision
    vision.model.embeddings.register_forward_hook(lambda *a: calls.append("embeddings"))
    for layer in vision.layers:
        layer.register_forward_hook(lambda *a: calls.append("layer"))
    texts = {k: v for k, v in inputs.items() if k != "pixel_values"}
    alone = model(**texts).logits
    assert calls == []
    masked = model(**inputs, image_present=torch.tensor([False] * 3)).logits
    torch.testing.assert_close(alone, masked, rtol=0, atol=1e-6)  # the same answer, without the tower
    text_calls = []
    model.base_model.towers.text.model.embeddings.register_forward_hook(lambda *a: text_calls.append(1))
    assert model(pixel_values=inputs["pixel_values"]).logits.shape == (3, 3) and text_calls == []


def test_missing_prompts_and_placeholders_train_and_reload_exactly(tmp_path, inputs):
    model = aware(tiny_clip())
    lacks = dict(image_present=torch.tensor([True, False, True]))
    model(**inputs, **lacks, labels=LABELS).loss.backward()
    adapter = adapter_module(model)
    assert adapter.missing_prompts.grad[0].abs().sum() > 0  # image missing: trained by sample 1
    assert adapter.missing_prompts.grad[1].abs().sum() == 0  # no sample lacks its text
    assert adapter.image_placeholder.grad.abs().sum() > 0 and adapter.text_placeholder.grad is None  # unused
    model.save_pretrained(tmp_path)
    again = PeftModel.from_pretrained(tiny_clip(), tmp_path)
    assert torch.equal(again(**inputs, **lacks).logits, model(**inputs, **lacks).logits)
    assert json.loads((tmp_path / "adapter_config.json").read_text())["missing_modalities"] is True


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(image_present=torch.tensor([1, 0, 1])), r"image_present must be a bool tensor of shape \(3,\)"),
        (dict(image_present=torch.tensor([True, False])), r"shape \(3,\).*torch.bool of shape \(2,\)"),
        (
            dict(image_present=torch.tensor([True, False, True]), text_present=torch.tensor([True, False, True])),
            "A sample has neither its image nor its text",
        ),
    ],
)
def test_bad_masks_are_named(inputs, change, message):
    with pytest.raises(ValueError, match=message):
        aware(tiny_clip())(**inputs, **change)


def test_a_present_text_of_padding_alone_and_a_mask_without_its_inputs_are_named(inputs):
    model = aware(tiny_clip())
    padded = dict(inputs, attention_mask=inputs["attention_mask"].clone())
    padded["attention_mask"][1] = 0
    padded["input_ids"] = torch.where(padded["attention_mask"].bool(), inputs["input_ids"], PAD)
    with pytest.raises(ValueError, match="text_present says a text is present whose attention_mask is all zeros"):
        model(**padded, text_present=torch.tensor([True, True, True]))
    assert model(**padded, text_present=torch.tensor([True, False, True])).logits.shape == (3, 3)
    texts = {k: v for k, v in inputs.items() if k != "pixel_values"}
    with pytest.raises(ValueError, match="image_present is given but the batch holds no image inputs"):
        model(**texts, image_present=torch.tensor([True, True, True]))


def test_an_adapter_without_missing_awareness_refuses_missing_samples(inputs):
    model = get_peft_model(tiny_clip(), MITPConfig(num_labels=3))
    with pytest.raises(ValueError, match=r"created without missing_modalities.*MITPConfig\(missing_modalities=True\)"):
        model(**inputs, image_present=torch.tensor([True, False, True]))
    with pytest.raises(ValueError, match=r"needs both an image and a text.*missing_modalities=True"):
        model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])


def test_readers_refuse_missing_cells_unless_asked_and_the_collator_masks_them(tmp_path):
    rows = ["a.png,a cat,cat", ",a dog alone,dog", "a.png,,cat"]
    train = pairs_file(tmp_path, "train.csv", rows)
    with pytest.raises(FileNotFoundError, match=r"train.csv, row 3: no image"):
        load_pairs({"train": train}, image_column="path")
    without_text = pairs_file(tmp_path, "texts.csv", ["a.png,a cat,cat", "a.png,,cat"])
    with pytest.raises(ValueError, match=r"texts.csv, row 3: the text is empty.*allow_missing=True"):
        load_pairs({"train": without_text}, image_column="path")
    data = load_pairs({"train": train}, image_column="path", allow_missing=True)["train"]
    assert [row["image"] is None for row in data] == [False, True, False]
    assert [row["text"] for row in data] == ["a cat", "a dog alone", None]

    processor = tiny_clip_processor(tmp_path)
    with pytest.raises(ValueError, match=r"Row 1 of the batch has no image.*missing='mask'"):
        MITPCollator(processor, 16)(list(data))
    batch = MITPCollator(processor, 16, missing="mask")(list(data))
    assert batch["image_present"].tolist() == [True, False, True]
    assert batch["text_present"].tolist() == [True, True, False]
    assert aware(tiny_clip())(**batch).logits.shape == (3, 3)
    filled = MITPCollator(processor, 16, missing="fill")(list(data))
    assert "image_present" not in filled and filled["pixel_values"].shape[0] == 3  # the unaware baseline
    images_only = MITPCollator(processor, 16, missing="mask")([{"image": Image.new("RGB", (9, 9)), "text": None}])
    assert "input_ids" not in images_only and "text_present" not in images_only  # no text at all: tower skipped


def food101_lacking(food101, tmp_path):
    """Food101 with the second training title blank and the third training photo deleted."""
    table = food101 / "texts" / "train_titles.csv"
    table.write_text(table.read_text().replace('"miso soup number 1"', '" "'))
    (food101 / "images" / "train" / "apple_pie" / "apple_pie_2.jpg").unlink()
    return (
        partial(load_food101, food101),
        "train_titles.csv, row 2: the text is empty",
        [1, 1, 0, 1, 1, 1],
        [1, 0, 1, 1, 1, 1],
    )


def snli_ve_lacking(food101, tmp_path):
    """SNLI-VE with an empty first hypothesis and a second Flickr30k photo that is not there."""
    root = tmp_path / "snli_ve"
    picture(root / "flickr30k_images" / "1.jpg")
    lines = [json.dumps({"Flickr30K_ID": i, "sentence2": t, "gold_label": "neutral"})
             for i, t in (("1", ""), ("2", "A dog runs."), ("1", "A cat sits."))]  # fmt: skip
    for split in ("train", "dev", "test"):
        (root / f"snli_ve_{split}.jsonl").write_text("\n".join(lines) + "\n")
    return partial(load_snli_ve, root), "snli_ve_train.jsonl, row 1: the text is empty", [1, 0, 1], [0, 1, 1]


def mmimdb_lacking(food101, tmp_path):
    """MM-IMDB with an empty first plot and a second movie without its poster."""
    root = tmp_path / "mmimdb"
    for movie, plot in (("001", ""), ("002", "a plot"), ("003", "another plot")):
        if movie != "002":
            picture(root / "dataset" / f"{movie}.jpeg")
        (root / "dataset" / f"{movie}.json").write_text(json.dumps({"plot": [plot], "genres": ["Drama"]}))
    (root / "split.json").write_text(json.dumps({split: ["001", "002", "003"] for split in ("train", "dev", "test")}))
    return partial(load_mmimdb, root), "split.json, movie 001: the text is empty", [1, 0, 1], [0, 1, 1]


def hub_lacking(food101, tmp_path):
    """A dataset in the hub's layout (parquet) with a blank first text and a null second image."""
    picture(tmp_path / "a.png")
    image = {"bytes": (tmp_path / "a.png").read_bytes(), "path": None}
    rows = {"image": [image, None, image], "text": ["  ", "a dog", "a cat"], "label": ["a", "b", "a"]}
    features = datasets.Features(image=datasets.Image(), text=datasets.Value("string"), label=datasets.Value("string"))
    (tmp_path / "repo" / "data").mkdir(parents=True)
    for split in ("train", "test"):
        datasets.Dataset.from_dict(rows, features=features).to_parquet(tmp_path / "repo" / "data" / f"{split}.parquet")
    return (
        partial(load_hub, str(tmp_path / "repo")),
        r"repo \(train\), row 1: no image \(1 row\(s\) lack one\)",
        [1, 0, 1],
        [0, 1, 1],
    )


@pytest.mark.parametrize("lacking", [food101_lacking, snli_ve_lacking, mmimdb_lacking, hub_lacking])
def test_every_reader_refuses_absent_cells_unless_asked(lacking, food101, tmp_path):
    read, message, image_present, text_present = lacking(food101, tmp_path)
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        read()
    collator = MITPCollator(tiny_clip_processor(tmp_path), 16, num_labels=23, missing="mask")
    batch = collator(list(read(allow_missing=True)["train"]))
    assert batch["image_present"].tolist() == [bool(x) for x in image_present]
    assert batch["text_present"].tolist() == [bool(x) for x in text_present]


def test_the_scripts_allow_missing_flag_reaches_the_reader(food101, tmp_path):
    food101_lacking(food101, tmp_path)
    with pytest.raises(ValueError, match="row 2: the text is empty"):
        load_splits(DataArguments(dataset="food101", data_dir=str(food101)))
    splits = load_splits(DataArguments(dataset="food101", data_dir=str(food101), allow_missing=True))
    assert splits.train["text"][1] is None and splits.train["image"][2] is None and len(splits.train) == 6


def test_predict_answers_for_images_alone_and_texts_alone(tmp_path):
    model = aware(tiny_clip(), id2label={0: "a", 1: "b", 2: "c"})
    processor = tiny_clip_processor(tmp_path)
    image = Image.new("RGB", (32, 32), "red")
    alone = mitp_peft.predict(model, images=[image, image], processor=processor)
    assert len(alone) == 2 and alone[0] == alone[1]
    assert len(mitp_peft.predict(model, texts=["a cat"], processor=processor)) == 1
    mixed = mitp_peft.predict(model, images=[image, None], texts=[None, "a cat"], processor=processor)
    assert mixed[0] == alone[0]
    with pytest.raises(ValueError, match=r"MITPConfig\(missing_modalities=True\)"):
        mitp_peft.predict(get_peft_model(tiny_clip(), MITPConfig(num_labels=3)), images=[image], processor=processor)


def test_simulated_missingness_is_seeded_recorded_and_of_the_asked_kind(tmp_path):
    picture(tmp_path / "a.png")
    rows = [f"a.png,text {i},{'cat' if i % 2 else 'dog'}" for i in range(40)]
    data = load_pairs({"train": pairs_file(tmp_path, "train.csv", rows)}, image_column="path")["train"]
    both = simulate_missing(data, 0.7, "both", seed=1)
    kinds = list(both["missing"])
    assert kinds.count("image") == kinds.count("text") == 14 and kinds.count("") == 12
    assert all((row["image"] is None) == (kind == "image") and (row["text"] is None) == (kind == "text")
               for row, kind in zip(both, kinds, strict=True))  # fmt: skip
    assert list(simulate_missing(data, 0.7, "both", seed=1)["missing"]) == kinds
    assert list(simulate_missing(data, 0.7, "both", seed=2)["missing"]) != kinds
    assert set(simulate_missing(data, 0.5, "text")["missing"]) == {"", "text"}
    with pytest.raises(ValueError, match="missing type must be one of"):
        simulate_missing(data, 0.5, "audio")


def test_the_family_battery_takes_texts_alone():
    for name in ("siglip2", "deit+roberta"):
        model = aware(build(name))
        inputs = family_inputs(name)
        texts = {k: v for k, v in inputs.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
        assert model(**texts).logits.shape == (3, 3), name
    assert set(FAMILIES) >= {"siglip2", "deit+roberta"}


@pytest.mark.parametrize("filler", [float("nan"), float("inf")])
@pytest.mark.parametrize("hub_attention", ["gated", "cross"])
def test_what_stands_in_a_missing_images_place_never_reaches_outputs_or_gradients(filler, hub_attention):
    model = aware(tiny_clip(), hub_attention=hub_attention)
    inputs = dict(make_inputs(), image_present=torch.tensor([True, False, True]))
    with torch.no_grad():
        expected = model(**inputs).logits
        inputs["pixel_values"][1] = filler
        logits = model(**inputs).logits
    assert torch.isfinite(logits).all()
    torch.testing.assert_close(logits, expected, rtol=0, atol=0)
    model.train()
    model(**inputs, labels=LABELS).loss.backward()
    gradients = [p.grad for p in model.parameters() if p.grad is not None]
    assert all(torch.isfinite(g).all() for g in gradients) and sum(g.abs().sum() for g in gradients) > 0


def test_an_adapter_without_missing_modalities_takes_masks_that_say_every_sample_is_complete(inputs):
    model = get_peft_model(tiny_clip(), MITPConfig(num_labels=3)).eval()
    everyone = torch.ones(3, dtype=torch.bool)
    with torch.no_grad():
        assert torch.equal(model(**inputs, image_present=everyone, text_present=everyone).logits,
                           model(**inputs).logits)  # fmt: skip
    with pytest.raises(ValueError, match=r"text_present says a sample lacks its text, but this MITP adapter was "
                       r"created without missing_modalities.*MITPConfig\(missing_modalities=True\)"):  # fmt: skip
        model(**inputs, image_present=everyone, text_present=torch.tensor([True, False, True]))
