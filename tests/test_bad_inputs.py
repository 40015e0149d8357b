"""Bad inputs at every seam with peft, transformers, accelerate and the user's data: each is refused with a message
that names the problem (and the fix), or just works."""

import copy
import gc
import inspect
import json
import warnings

import numpy as np
import pytest
import torch
from families import build, family_inputs, mitp
from helpers import MAX_POSITIONS, make_inputs, pairs_file, picture, tiny_clip, tiny_clip_processor
from huggingface_hub import ModelCard
from peft import PeftModel, get_peft_model
from PIL import Image
from torch.optim.optimizer import _global_optimizer_pre_hooks
from transformers import CLIPModel, Trainer, TrainingArguments

import mitp_peft
from mitp_peft import MITPConfig
from mitp_peft.arguments import DataArguments, load_splits
from mitp_peft.data import MITPCollator, load_pairs
from mitp_peft.zero_shot import _check_optimizer

LABELS = torch.tensor([0, 1, 2])


# ---- an adapter on another backbone of equal widths


def test_deeper_backbone_of_equal_widths_is_refused(tmp_path):
    mitp(tiny_clip(num_hidden_layers=4)).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match=r"text: 4 layers, width 32, 24 positions \(adapter\) vs 5 layers"):
        PeftModel.from_pretrained(tiny_clip(), tmp_path)


def test_other_patching_of_equal_widths_and_depth_is_refused(tmp_path):
    """CLIP ViT-B/32 against B/16, in small: same widths and depths, other patches."""
    mitp(tiny_clip()).save_pretrained(tmp_path)
    other = tiny_clip()
    other.vision_model.config.patch_size = 16  # only the recorded shape matters for the refusal
    with pytest.raises(ValueError, match=r"vision: 6 layers, width 48, image size 32, patch size 8 \(adapter\) vs .*"
                       r"patch size 16 \(this backbone\)"):  # fmt: skip
        PeftModel.from_pretrained(other, tmp_path)


def test_same_shape_under_another_name_is_a_warning(tmp_path, inputs):
    model = mitp(tiny_clip())
    model.peft_config["default"].base_model_name_or_path = "org/clip-a"
    model.save_pretrained(tmp_path)
    other = tiny_clip()
    other.name_or_path = "org/clip-b"
    with pytest.warns(UserWarning, match=r"trained on 'org/clip-a' and is loaded onto 'org/clip-b'"):
        again = PeftModel.from_pretrained(other, tmp_path)
    assert torch.equal(again(**inputs).logits, model(**inputs).logits)


# ---- a backbone whose forward is already an instance attribute


def test_accelerate_hooks_run_around_mitps_forward_and_stay_after_unload(inputs):
    from accelerate.hooks import ModelHook, add_hook_to_module

    class Counting(ModelHook):
        calls = 0

        def pre_forward(self, module, *args, **kwargs):
            Counting.calls += 1
            return args, kwargs

    base = tiny_clip()
    add_hook_to_module(base, Counting())
    model = mitp(base)
    out = model(**inputs, labels=LABELS)
    assert type(out).__name__ == "MITPOutput" and out.loss is not None and Counting.calls == 1
    plain = model.unload()
    assert hasattr(plain, "_hf_hook") and "forward" in vars(plain)  # accelerate's hook is still there
    again = plain(**inputs)
    assert type(again).__name__ == "CLIPOutput" and Counting.calls == 2
    assert type(plain) is CLIPModel


def test_another_instance_forward_is_refused_naming_it():
    base = tiny_clip()
    base.forward = lambda **kwargs: None
    with pytest.raises(ValueError, match=r"forward was replaced on the instance .*by something other than accelerate"):
        mitp(base)


def test_unload_restores_exactly_the_backbone_class_and_forward(inputs):
    base = tiny_clip()
    model = mitp(base)
    assert type(base) is not CLIPModel and type(base).__name__ == "CLIPModel" and isinstance(base, CLIPModel)
    plain = model.unload()
    assert type(plain) is CLIPModel and "forward" not in vars(plain)
    assert not [name for name in vars(plain) if name.startswith("_mitp")]


# ---- the installed forward's signature names every input the towers read


@pytest.mark.parametrize(
    "name, expected",
    [
        ("vit+bert", {"token_type_ids", "position_ids", "interpolate_pos_encoding"}),
        ("siglip2", {"pixel_attention_mask", "spatial_shapes"}),
        ("clip", {"position_ids", "interpolate_pos_encoding"}),
    ],
)
def test_trainer_keeps_every_column_the_towers_read(name, expected, tmp_path):
    model = mitp(build(name))
    trainer = Trainer(model=model, args=TrainingArguments(output_dir=str(tmp_path), report_to=[]))
    trainer._set_signature_columns_if_needed()
    cache = {"mitp_text_states", "mitp_vision_states", "mitp_states_layers"}
    assert expected | cache | {"input_ids", "pixel_values", "attention_mask", "labels"} <= set(
        trainer._signature_columns
    )
    assert "num_items_in_batch" in inspect.signature(model.get_base_model().forward).parameters
    assert trainer.model_accepts_loss_kwargs


# ---- labels of your own pairs


def test_numeric_labels_keep_numeric_order(tmp_path):
    train = pairs_file(tmp_path, "train.csv", ["a.png,x,10", "a.png,y,2", "a.png,z,1"])
    data = load_pairs({"train": train}, image_column="path")
    assert data["train"].features["label"].names == ["1", "2", "10"] and list(data["train"]["label"]) == [2, 1, 0]


def test_a_label_only_validation_holds_is_refused(tmp_path):
    train = pairs_file(tmp_path, "train.csv", ["a.png,x,cat", "a.png,y,dog"])
    validation = pairs_file(tmp_path, "val.csv", ["a.png,x,cat", "a.png,y,cow"])
    with pytest.raises(ValueError, match=r"val.csv, row 3: unknown label 'cow'; known labels: \['cat', 'dog'\]"):
        load_pairs({"train": train, "validation": validation}, image_column="path")


# ---- Trainer finds the labels without label_names


def test_trainer_evaluates_loss_and_accuracy_without_label_names(tmp_path):
    from helpers import PairDataset

    from mitp_peft.metrics import compute_metrics

    model = mitp(tiny_clip())
    args = TrainingArguments(output_dir=str(tmp_path), report_to=[], per_device_eval_batch_size=4, use_cpu=True)
    trainer = Trainer(model=model, args=args, eval_dataset=PairDataset(8), compute_metrics=compute_metrics(
        "single_label_classification"))  # fmt: skip
    assert trainer.label_names == ["labels"]
    metrics = trainer.evaluate()
    assert {"eval_loss", "eval_accuracy"} <= set(metrics)


# ---- a copy saves the MITP card


def test_a_deep_copy_saves_the_mitp_card(tmp_path):
    model = mitp(tiny_clip(), id2label={0: "a", 1: "b", 2: "c"})
    mitp_peft.describe_training(model, dataset="food101")
    copy.deepcopy(model).save_pretrained(tmp_path)
    card = ModelCard.load(tmp_path / "README.md")
    assert "mitp" in card.data.tags and card.data.datasets == ["food101"] and "MITP settings" in card.text


# ---- get_peft_model on a PeftModel


def test_get_peft_model_on_a_peft_model_names_the_fix():
    model = mitp(tiny_clip())
    with pytest.raises(ValueError, match=r"already carries peft adapters.*model.add_adapter\(name, MITPConfig"):
        get_peft_model(model, MITPConfig(num_labels=3))


# ---- empty files, a missing validation file


def test_an_empty_or_header_only_csv_is_named(tmp_path):
    for text in ("", "path,text,label\n"):
        (tmp_path / "train.csv").write_text(text)
        with pytest.raises(ValueError, match=r"train.csv holds no rows"):
            load_pairs({"train": tmp_path / "train.csv"}, image_column="path")


def test_pairs_train_without_a_validation_file_and_name_what_they_miss(tmp_path):
    train = pairs_file(tmp_path, "train.csv", ["a.png,x,cat", "a.png,y,dog"])
    splits = load_splits(DataArguments(dataset="pairs", train_file=str(train), image_column="path"))
    assert splits.evaluation is None and splits.label_names == ["cat", "dog"] and len(splits.train) == 2
    with pytest.raises(ValueError, match="--dataset pairs needs --train_file"):
        load_splits(DataArguments(dataset="pairs"))


# ---- a collator without the raw columns


def test_collator_without_text_names_remove_unused_columns(tmp_path):
    collator = MITPCollator(tiny_clip_processor(tmp_path), max_text_length=8)
    with pytest.raises(ValueError, match=r"without \['image', 'text'\].*remove_unused_columns=False"):
        collator([{"label": 1}])


# ---- a text longer than the tower's positions, not truncated


def test_an_untruncated_long_text_gets_mitps_message_not_transformers(inputs):
    model = mitp(tiny_clip())
    long = make_inputs(lengths=[MAX_POSITIONS + 6, 3, 2])
    with pytest.raises(ValueError, match=f"has room for {MAX_POSITIONS - 8}.*max_length={MAX_POSITIONS - 8}"):
        model(**long)


# ---- broken adapter folders


def test_broken_adapter_folders_are_named(tmp_path):
    mitp(tiny_clip()).save_pretrained(tmp_path / "good")
    weights = (tmp_path / "good" / "adapter_model.safetensors").read_bytes()
    folder = tmp_path / "bad"
    folder.mkdir()
    with pytest.raises(FileNotFoundError, match=r"bad has no adapter_config.json: it is not a saved adapter"):
        mitp_peft.from_pretrained(str(folder))
    (folder / "adapter_config.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"adapter_config.json is not valid JSON"):
        mitp_peft.from_pretrained(str(folder))
    (folder / "adapter_config.json").write_text((tmp_path / "good" / "adapter_config.json").read_text())
    with pytest.raises(FileNotFoundError, match=r"bad has no adapter_model.safetensors"):
        mitp_peft.from_pretrained(str(folder))
    (folder / "adapter_model.safetensors").write_bytes(weights[: len(weights) // 2])
    with pytest.raises(ValueError, match=r"adapter_model.safetensors is truncated or not a safetensors file"):
        mitp_peft.from_pretrained(str(folder))


# ---- weights of other settings


def test_weights_of_other_settings_name_the_settings_not_the_backbone(tmp_path):
    from peft import get_peft_model_state_dict, set_peft_model_state_dict

    longer = get_peft_model_state_dict(mitp(tiny_clip(), prompt_length=12))
    with pytest.raises(
        ValueError, match=r"do not fit this MITP adapter.*settings they were saved with \(prompt_length"
    ):
        set_peft_model_state_dict(mitp(tiny_clip()), longer)


# ---- papercuts


def test_predict_takes_one_image_and_one_text_as_they_are(tmp_path):
    model = mitp(tiny_clip(), id2label={0: "a", 1: "b", 2: "c"})
    result = mitp_peft.predict(
        model, images=Image.new("RGB", (20, 30)), texts="a cat", processor=tiny_clip_processor(tmp_path)
    )
    assert len(result) == 1 and len(result[0]["labels"]) == 1


def test_labels_as_a_python_list_train(inputs):
    model = mitp(tiny_clip())
    assert torch.equal(model(**inputs, labels=[0, 1, 2]).loss, model(**inputs, labels=LABELS).loss)


def test_generate_and_two_active_adapters_are_explained(inputs):
    model = mitp(tiny_clip())
    with pytest.raises(NotImplementedError, match="nothing to generate.*mitp_peft.predict"):
        model.generate(**inputs)
    model.add_adapter("second", MITPConfig(num_labels=3))
    with pytest.raises(ValueError, match=r"MITP runs one adapter at a time; got \['default', 'second'\]"):
        model.base_model.set_adapter(["default", "second"])


def test_a_bom_csv_and_a_json_array_file(tmp_path):
    picture(tmp_path / "a.png")
    (tmp_path / "bom.csv").write_text("\ufeffimage,text,label\na.png,x,cat\n", encoding="utf-8")
    assert load_pairs({"train": tmp_path / "bom.csv"})["train"]["text"] == ["x"]
    (tmp_path / "array.json").write_text(json.dumps([{"image": "a.png", "text": "x", "label": "cat"}]))
    with pytest.raises(ValueError, match=r"array.json is a JSON array; pairs files are JSON lines"):
        load_pairs({"train": tmp_path / "array.json"})


def test_the_card_names_the_data_not_the_loader_and_how_to_install():
    assert DataArguments(dataset="pairs", train_file="/data/dishes/train.csv").name == "train.csv"
    assert DataArguments(dataset="hub", dataset_name="org/dishes").name == "org/dishes"
    assert DataArguments(dataset="food101").name == "UPMC-Food101"


# ==== Silent or wrong results: each is refused or made right


def test_one_single_label_class_is_refused_with_both_fixes():
    with pytest.raises(ValueError, match=r"num_labels=1 with single_label_classification.*loss is always 0.*"
                       r"num_labels=2.*multi_label_classification' with num_labels=1"):  # fmt: skip
        MITPConfig(num_labels=1)
    assert MITPConfig(num_labels=1, problem_type="multi_label_classification").num_labels == 1


def test_a_second_get_peft_model_on_the_same_backbone_is_refused(inputs):
    base = tiny_clip()
    first = mitp(base)
    before = first(**inputs).logits
    with pytest.raises(
        ValueError, match=r"already carries an MITP adapter from an earlier get_peft_model.*add_adapter"
    ):
        get_peft_model(base, MITPConfig(num_labels=5))
    assert torch.equal(first(**inputs).logits, before) and before.shape == (3, 3)
    assert mitp(first.unload())(**inputs).logits.shape == (3, 3)  # unloaded, the backbone takes a new adapter


def test_an_adapter_loads_completely_or_not_at_all(tmp_path):
    from safetensors.torch import load_file, save_file

    mitp(tiny_clip()).save_pretrained(tmp_path / "edited")
    config_file = tmp_path / "edited" / "adapter_config.json"
    config_file.write_text(json.dumps(dict(json.loads(config_file.read_text()), head="linear")))
    with pytest.raises(ValueError, match=r"missing \['base_model.mitp_adapters.head.classifier.bias', .*"
                       r"unexpected \['base_model.mitp_adapters.head.classifier.0.bias'"):  # fmt: skip
        PeftModel.from_pretrained(tiny_clip(), tmp_path / "edited")

    mitp(tiny_clip()).save_pretrained(tmp_path / "short")
    weights = tmp_path / "short" / "adapter_model.safetensors"
    tensors = load_file(weights)
    del tensors["base_model.mitp_adapters.prompt"]
    save_file(tensors, weights)
    with pytest.raises(ValueError, match=r"missing \['base_model.mitp_adapters.prompt'\], unexpected \[\]"):
        PeftModel.from_pretrained(tiny_clip(), tmp_path / "short")
    base = tmp_path / "base"
    tiny_clip().save_pretrained(base)
    with pytest.raises(ValueError, match=r"missing \['base_model.mitp_adapters.prompt'\]"):
        mitp_peft.from_pretrained(str(tmp_path / "short"), base_model_name_or_path=str(base))


def test_deleting_the_last_adapter_leaves_the_backbone_as_peft_does_for_its_own_methods(inputs):
    """peft's shared battery (tests/testing_common.py, _test_delete_adapter): the last adapter deletes, no adapter is
    active, and the tuner then runs the backbone's own forward; a new adapter can be added after."""
    bare = tiny_clip()
    model = mitp(tiny_clip())
    model.add_adapter("second", MITPConfig(num_labels=3))
    model.delete_adapter("default")
    assert model.active_adapters == ["second"] and model(**inputs).logits.shape == (3, 3)
    model.delete_adapter("second")
    assert "second" not in model.peft_config and model.active_adapters == []
    assert len(model.base_model.mitp_adapters) == 0 and not any(p.requires_grad for p in model.parameters())
    with torch.no_grad():
        out, expected = model.base_model(**inputs), bare(**inputs)
    assert torch.equal(out.logits_per_image, expected.logits_per_image)
    with pytest.raises(ValueError, match=r"no MITP adapter left.*labels cannot give a loss.*add_adapter"):
        model.base_model(**inputs, labels=LABELS)
    with pytest.raises(ValueError, match=r"This model has no MITP adapter \(the last one was deleted\).*add_adapter"):
        _ = model.base_model.max_text_length
    model.add_adapter("third", MITPConfig(num_labels=3))
    model.set_adapter("third")
    assert model(**inputs).logits.shape == (3, 3)


@pytest.mark.parametrize(
    "cell, message",
    [
        ("", r"train.csv, row 3: the label is empty"),
        ("NaN", r"train.csv, row 3: the label is 'NaN', which exports write for a missing value"),
        ("nan", r"row 3: the label is 'nan'"),
        ("local ", r"row 3: the label 'local ' has leading or trailing spaces.*apart from 'local'"),
    ],
)
def test_empty_missing_or_padded_label_cells_are_refused(tmp_path, cell, message):
    train = pairs_file(tmp_path, "train.csv", ["a.png,x,local", f"a.png,y,{cell}"])
    with pytest.raises(ValueError, match=message):
        load_pairs({"train": train}, image_column="path")


def test_one_name_for_two_classes_is_refused():
    with pytest.raises(ValueError, match=r"id2label names \['a'\] for more than one class"):
        MITPConfig(num_labels=3, id2label={0: "a", 1: "a", 2: "b"})


def test_a_truncated_image_is_named_by_the_reader_and_by_the_collator(tmp_path):
    image = tmp_path / "broken.jpg"
    noise = (np.random.default_rng(0).random((128, 128, 3)) * 255).astype("uint8")
    Image.fromarray(noise).save(image, format="JPEG")
    image.write_bytes(image.read_bytes()[: image.stat().st_size // 2])  # truncated: verify() alone passes it
    with Image.open(image) as opened:
        opened.verify()
    (tmp_path / "train.csv").write_text("image,text,label\nbroken.jpg,x,cat\n")
    with pytest.raises(ValueError, match=r"train.csv, row 2: image .*broken.jpg cannot be read"):
        load_pairs({"train": tmp_path / "train.csv"})
    # Rows of one's own whose images PIL opened lazily are decoded by the collator, which names the file.
    collate = MITPCollator(tiny_clip_processor(tmp_path), MAX_POSITIONS - 8)
    with pytest.raises(ValueError, match=r"broken.jpg cannot be decoded .*truncated or broken"):
        collate([{"image": Image.open(image), "text": "x", "label": 0}])


def test_zero_shot_start_after_warm_start_or_the_optimizer_is_refused(tmp_path, inputs):
    processor = tiny_clip_processor(tmp_path)
    names = {0: "a", 1: "b", 2: "c"}
    model = mitp(tiny_clip(), id2label=names)
    mitp_peft.warm_start_head(model, [dict(inputs, labels=LABELS)], epochs=1)
    with pytest.raises(ValueError, match="would replace the head that warm_start_head has fitted.*first"):
        mitp_peft.init_head_zero_shot(model, processor.tokenizer)

    model = mitp(tiny_clip(), id2label=names)
    early = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad])
    mitp_peft.init_head_zero_shot(model, processor.tokenizer)
    model(**inputs, labels=LABELS).loss.backward()
    with pytest.raises(RuntimeError, match="created before init_head_zero_shot replaced the MITP head"):
        early.step()
    late = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad])
    late.step()  # an optimizer made afterwards holds the new head and steps
    del early
    gc.collect()
    late.step()
    # The process-wide step hook that refused it lives only while the old head's parameters do.
    assert _check_optimizer not in _global_optimizer_pre_hooks.values()


def test_labels_with_adapters_disabled_are_refused(inputs):
    model = mitp(tiny_clip())
    with model.disable_adapter():
        with pytest.raises(ValueError, match="With adapters disabled.*no classification head"):
            model(**inputs, labels=LABELS)
        assert model(**inputs).logits_per_image.shape == (3, 3)  # the backbone's own outputs


def test_warm_start_takes_batches_with_flags(inputs):
    model = mitp(tiny_clip())
    batch = dict(inputs, labels=LABELS, interpolate_pos_encoding=True)
    assert mitp_peft.warm_start_head(model, [batch], epochs=2) > 0


# ==== Confusing: each names the fix now


def test_confusing_labels_given_as_names_point_to_label2id(inputs):
    model = mitp(tiny_clip(), id2label={0: "a", 1: "b", 2: "c"})
    with pytest.raises(ValueError, match=r"labels are class indices, got class names such as 'a'.*label2id"):
        model(**inputs, labels=["a", "b", "c"])


def test_confusing_float_ids_and_channels_last_pixels_are_named(inputs):
    model = mitp(tiny_clip())
    with pytest.raises(ValueError, match="input_ids must be integer token ids.*got dtype torch.float32"):
        model(**dict(inputs, input_ids=inputs["input_ids"].float()))
    with pytest.raises(ValueError, match=r"shape \(3, 32, 32, 3\): channels last.*permute\(0, 3, 1, 2\)"):
        model(**dict(inputs, pixel_values=inputs["pixel_values"].permute(0, 2, 3, 1)))


def test_confusing_predict_top_k_and_a_batched_tensor(tmp_path):
    model = mitp(tiny_clip(), id2label={0: "a", 1: "b", 2: "c"})
    processor = tiny_clip_processor(tmp_path)
    for top_k in (0, -1):
        with pytest.raises(ValueError, match=f"top_k must be an integer >= 1.*got {top_k}"):
            mitp_peft.predict(model, Image.new("RGB", (32, 32)), "x", processor=processor, top_k=top_k)
    images = torch.rand(4, 3, 32, 32)
    batched = mitp_peft.predict(model, images, ["a", "b", "c", "d"], processor=processor)
    one_by_one = mitp_peft.predict(model, list(images), ["a", "b", "c", "d"], processor=processor)
    assert len(batched) == 4 and batched == one_by_one


def test_confusing_a_semicolon_csv_is_named(tmp_path):
    train = pairs_file(tmp_path, "train.csv", ["a.png;x;cat"], header="image;text;label")
    with pytest.raises(ValueError, match=r"header 'image;text;label' is one column, which looks ';'-separated"):
        load_pairs({"train": train})


def test_confusing_trainer_predict_gives_the_logits(tmp_path):
    from helpers import PairDataset

    model = mitp(tiny_clip())
    args = TrainingArguments(tmp_path, report_to=[], use_cpu=True, per_device_eval_batch_size=4)
    predictions = Trainer(model=model, args=args).predict(PairDataset(6)).predictions
    assert isinstance(predictions, np.ndarray) and predictions.shape == (6, 3)
    assert not hasattr(model.unload().config, "keys_to_ignore_at_inference") or \
        model.get_base_model().config.keys_to_ignore_at_inference == []  # fmt: skip


def test_confusing_metrics_of_the_other_problem_type_are_named():
    from mitp_peft.metrics import task_metrics

    with pytest.raises(ValueError, match=r"multi_label_classification'\) got labels of shape \(4,\).*single_label"):
        task_metrics(np.zeros((4, 3)), np.array([0, 1, 2, 0]), "multi_label_classification")
    with pytest.raises(ValueError, match=r"single_label_classification'\) got labels of shape \(4, 3\)"):
        task_metrics(np.zeros((4, 3)), np.zeros((4, 3)), "single_label_classification")


def test_confusing_submodules_are_reachable_from_the_package():
    import importlib
    import subprocess
    import sys

    code = "import mitp_peft; mitp_peft.metrics.compute_metrics; mitp_peft.data.load_pairs; print('ok')"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "ok", done.stderr[-2000:]
    assert importlib.import_module("mitp_peft").extraction.cache_extraction


def test_predict_takes_float_images_in_0_1_as_the_same_images_in_0_255(tmp_path):
    model = mitp(tiny_clip(), id2label={0: "a", 1: "b", 2: "c"})
    processor = tiny_clip_processor(tmp_path)
    rng = np.random.default_rng(0)
    raw = [rng.integers(0, 256, (32, 32, 3), dtype=np.uint8) for _ in range(2)] + [np.full((32, 32, 3), 255, np.uint8)]
    texts = ["a", "b", "c"]
    expected = mitp_peft.predict(model, raw, texts, processor=processor, top_k=3)
    scaled = torch.stack([torch.from_numpy(image).permute(2, 0, 1).float() / 255 for image in raw])
    with pytest.warns(UserWarning, match=r"float image with values in \[0, 1\]; it scales it to 0..255"):
        got = mitp_peft.predict(model, scaled, texts, processor=processor, top_k=3)
    for ours, theirs in zip(got, expected, strict=True):
        assert ours["labels"] == theirs["labels"]
        np.testing.assert_allclose(ours["scores"], theirs["scores"], atol=1e-4)
    with pytest.raises(ValueError, match=r"values in \[-1, 1\]: it looks normalized already.*pixel_values"):
        mitp_peft.predict(model, scaled * 2 - 1, texts, processor=processor)


def test_predict_names_a_pair_with_neither_image_nor_text(tmp_path):
    model = mitp(tiny_clip(), missing_modalities=True)
    processor = tiny_clip_processor(tmp_path)
    with pytest.raises(ValueError, match=r"Pair 0 has neither an image nor a text \(1 such pair\(s\)\).*Drop it"):
        mitp_peft.predict(model, images=[None], texts=[None], processor=processor)
    with pytest.raises(ValueError, match=r"Pair 1 has neither an image nor a text"):
        mitp_peft.predict(model, images=[Image.new("RGB", (32, 32)), None], texts=["a", " "], processor=processor)


def test_predict_treats_an_empty_text_as_missing(tmp_path):
    processor = tiny_clip_processor(tmp_path)
    image = Image.new("RGB", (32, 32), "red")
    model = mitp(tiny_clip(), missing_modalities=True)
    assert mitp_peft.predict(model, [image], [""], processor=processor) == mitp_peft.predict(
        model, [image], None, processor=processor
    )
    unaware = mitp(tiny_clip())
    with pytest.raises(ValueError, match=r"Pair 0 has no text \(1 pair\(s\) lack one\), but this adapter was created "
                       r"without missing_modalities.*MITPConfig\(missing_modalities=True\)") as raised:  # fmt: skip
        mitp_peft.predict(unaware, [image], [""], processor=processor)
    assert "collator" not in str(raised.value)


def test_raw_uint8_pixels_into_the_forward_are_warned_about():
    model = mitp(tiny_clip()).eval()
    inputs = make_inputs()
    raw = (inputs["pixel_values"].clamp(0, 1) * 255).to(torch.uint8)
    with pytest.warns(UserWarning, match=r"pixel_values are torch.uint8: raw pixels, not the normalized floats.*"
                      r"processor"):  # fmt: skip
        model(**dict(inputs, pixel_values=raw))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model(**inputs)  # normalized floats: no word


@pytest.mark.parametrize("name", ["clip", "vit+bert", "chinese_clip"])
def test_a_padded_batch_without_its_attention_mask_gives_the_answer_it_gives_with_it(name):
    torch.manual_seed(0)
    model = get_peft_model(build(name), MITPConfig(num_labels=3)).eval()
    inputs = family_inputs(name, lengths=(7, 4, 2))
    assert (inputs["attention_mask"] == 0).any()  # padded
    without = {k: v for k, v in inputs.items() if k != "attention_mask"}
    with torch.no_grad():
        torch.testing.assert_close(model(**without).logits, model(**inputs).logits, rtol=0, atol=1e-6)


def test_an_unnamed_backbone_of_the_same_shape_with_other_weights_is_a_warning(tmp_path, inputs):
    model = mitp(tiny_clip(seed=0))
    model.save_pretrained(tmp_path)
    with pytest.warns(
        UserWarning,
        match=r"trained on a backbone \(unnamed\) whose weights differ from this one's "
        r"\(unnamed\), though both have the same shape.*Load it onto the backbone it was trained on",
    ):
        PeftModel.from_pretrained(tiny_clip(seed=1), tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        again = PeftModel.from_pretrained(tiny_clip(seed=0), tmp_path)  # its own weights: no word
        PeftModel.from_pretrained(tiny_clip(seed=0).to(torch.bfloat16), tmp_path)  # the same weights, cast
    assert torch.equal(again(**inputs).logits, model(**inputs).logits)


def test_add_weighted_adapter_is_refused_with_the_reason():
    model = mitp(tiny_clip())
    model.add_adapter("second", MITPConfig(num_labels=3))
    with pytest.raises(NotImplementedError, match=r"cannot be combined with add_weighted_adapter.*set_adapter"):
        model.add_weighted_adapter(["default", "second"], [0.5, 0.5], "mix")


def test_the_weights_fingerprint_reads_the_last_value_of_tensors_too_large_for_float_positions():
    from mitp_peft.tuner.built_for import fingerprint

    side = 2**12 + 1  # 16,785,409 values: float32 positions round past the last one
    weights = torch.nn.Linear(side, side, bias=False).requires_grad_(False)
    with torch.no_grad():
        weights.weight.zero_()
        weights.weight[-1, -1] = 7.0
    assert fingerprint(weights) == [0.0, 0.0, 0.0, 7.0]
