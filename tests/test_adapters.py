"""Adapters as peft users know them: save/load, resume, several adapters, disable, unload, merge refused."""

import copy
import json

import pytest
import torch
from helpers import adapter_keys, adapter_module, make_inputs, tiny_clip
from peft import PeftModel, get_peft_model
from safetensors.torch import load_file
from transformers import CLIPModel

from mitp_peft import MITPConfig, MITPLayer

LABELS = torch.tensor([0, 1, 2])


def trained(base, steps=2, **kwargs):
    """An adapter whose weights differ from any fresh initialisation."""
    model = get_peft_model(base, MITPConfig(num_labels=3, **kwargs))
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    for _ in range(steps):
        model(**make_inputs(), labels=LABELS).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return model


def trainable_names(model):
    return {n for n, p in model.named_parameters() if p.requires_grad}


def test_save_writes_only_the_adapter_and_reload_is_bit_identical(tmp_path, inputs):
    model = trained(tiny_clip())
    expected = model(**inputs).logits
    model.save_pretrained(tmp_path)
    assert {p.name for p in tmp_path.iterdir()} >= {"adapter_config.json", "adapter_model.safetensors"}
    saved = load_file(tmp_path / "adapter_model.safetensors")
    assert set(saved) == adapter_keys()
    assert sum(t.numel() for t in saved.values()) == sum(p.numel() for p in model.parameters() if p.requires_grad)
    config = json.loads((tmp_path / "adapter_config.json").read_text())
    assert config["peft_type"] == "MITP" and config["text_layers"] == [1, 2, 3, 4]

    again = PeftModel.from_pretrained(tiny_clip(), tmp_path)
    assert torch.equal(again(**inputs).logits, expected)
    assert not trainable_names(again)


def test_an_adapter_saved_with_the_previous_defaults_loads_as_it_was_saved(tmp_path, inputs):
    """An adapter saved with other values of settings that have defaults (the head on pooled features only, another
    head width) names them in its config, and loading it must keep them, not take the defaults (shape errors or
    another model)."""
    model = trained(tiny_clip(), head_uses_memory=False, head_hidden_size=16)
    expected = model(**inputs).logits
    model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "adapter_config.json").read_text())
    assert (config["head_uses_memory"], config["head_hidden_size"]) == (False, 16)
    again = PeftModel.from_pretrained(tiny_clip(), tmp_path)
    loaded = again.peft_config["default"]
    assert (loaded.head_uses_memory, loaded.head_hidden_size) == (False, 16)
    assert torch.equal(again(**inputs).logits, expected)
    fresh = get_peft_model(tiny_clip(), MITPConfig(num_labels=3)).peft_config["default"]
    assert fresh.head_uses_memory and fresh.head_hidden_size != 16  # today's defaults differ in both


def test_peft_status_reports_know_mitp():
    model = get_peft_model(tiny_clip(), MITPConfig(num_labels=3))
    status = model.get_model_status()
    assert status.peft_types == {"default": "MITP"} and status.enabled is True
    assert status.num_adapter_layers == 8 and status.active_adapters == ["default"]
    assert {layer.name.split(".encoder")[0] for layer in model.get_layer_status()} == {
        "model.text_model",
        "model.vision_model",
    }


def test_low_cpu_mem_usage_load(tmp_path, inputs):
    model = trained(tiny_clip())
    model.save_pretrained(tmp_path)
    again = PeftModel.from_pretrained(tiny_clip(), tmp_path, low_cpu_mem_usage=True)
    loaded = dict(adapter_module(again).named_parameters())
    assert all(torch.equal(loaded[name], p) for name, p in adapter_module(model).named_parameters())
    # The same values, in buffers assigned straight from the file: BLAS may round differently there (1e-7).
    torch.testing.assert_close(again(**inputs).logits, model(**inputs).logits, rtol=0, atol=1e-6)


def test_is_trainable_resumes_training(tmp_path, inputs):
    model = trained(tiny_clip())
    model.save_pretrained(tmp_path)
    resumed = PeftModel.from_pretrained(tiny_clip(), tmp_path, is_trainable=True)
    assert trainable_names(resumed) == trainable_names(model)
    before = adapter_module(resumed).head.classifier[0].weight.detach().clone()
    resumed(**inputs, labels=LABELS).loss.backward()
    torch.optim.SGD([p for p in resumed.parameters() if p.requires_grad], lr=0.5).step()
    assert not torch.equal(adapter_module(resumed).head.classifier[0].weight, before)


def test_second_adapter_keeps_trainability_right(tmp_path, inputs):
    model = get_peft_model(tiny_clip(), MITPConfig(num_labels=3))
    model.add_adapter("second", MITPConfig(num_labels=5, text_layers=[3], vision_layers=[5]))
    assert all(".default" in n for n in trainable_names(model))  # adding does not activate
    assert model(**inputs).logits.shape == (3, 3)

    model.set_adapter("second")
    names = trainable_names(model)
    assert names and all(".second" in n for n in names)
    assert model(**inputs).logits.shape == (3, 5)

    model.save_pretrained(tmp_path)
    assert (tmp_path / "second" / "adapter_model.safetensors").exists()

    model.delete_adapter("second")
    assert model.active_adapters == ["default"]
    assert "second" not in model.base_model.mitp_adapters and "second" not in model.peft_config
    assert all(".default" in n for n in trainable_names(model)) and trainable_names(model)
    assert model(**inputs).logits.shape == (3, 3)

    loaded = PeftModel.from_pretrained(tiny_clip(), tmp_path)
    loaded.load_adapter(tmp_path / "second", adapter_name="other")
    loaded.set_adapter("other")
    assert loaded(**inputs).logits.shape == (3, 5)


def test_disable_adapter_gives_the_backbone_outputs(inputs):
    reference = tiny_clip()
    model = trained(tiny_clip())
    with model.disable_adapter():
        out = model(**inputs)
        assert not trainable_names(model)
    expected = reference(**inputs)
    assert type(out) is type(expected)
    for key in ("logits_per_image", "text_embeds", "image_embeds"):
        assert torch.equal(out[key], expected[key])
    assert trainable_names(model)  # enabled again afterwards
    assert model(**inputs).logits.shape == (3, 3)


def test_unload_returns_the_untouched_backbone(inputs):
    reference = tiny_clip()
    model = trained(tiny_clip())
    unloaded = model.unload()
    assert type(unloaded) is CLIPModel
    assert not any(isinstance(m, MITPLayer) for m in unloaded.modules())
    assert "forward" not in vars(unloaded) and not hasattr(unloaded, "peft_config")
    assert unloaded.state_dict().keys() == reference.state_dict().keys()
    assert all(torch.equal(v, reference.state_dict()[k]) for k, v in unloaded.state_dict().items())
    assert torch.equal(unloaded(**inputs).logits_per_image, reference(**inputs).logits_per_image)


def test_merge_is_refused_with_the_reason():
    model = get_peft_model(tiny_clip(), MITPConfig(num_labels=3))
    for merge in (model.merge_and_unload, model.merge_adapter):
        with pytest.raises(NotImplementedError, match="cannot be merged.*computed per input"):
            merge()
    assert any(isinstance(m, MITPLayer) for m in model.modules())  # nothing was changed


def test_deepcopy_keeps_its_own_forward(inputs):
    model = trained(tiny_clip())
    twin = copy.deepcopy(model)
    with torch.no_grad():
        adapter_module(twin).head.classifier[-1].weight.zero_()
        adapter_module(twin).head.classifier[-1].bias.zero_()
    assert torch.count_nonzero(twin(**inputs).logits) == 0
    assert torch.count_nonzero(model(**inputs).logits) > 0


def test_adapter_on_a_backbone_of_other_widths_names_both(tmp_path):
    model = get_peft_model(tiny_clip(), MITPConfig(num_labels=3))
    model.peft_config["default"].base_model_name_or_path = "tiny/clip-32-48"
    model.save_pretrained(tmp_path)
    wider = tiny_clip(hidden_size=64)  # a text tower of another width
    with pytest.raises(
        ValueError,
        match=r"built for another backbone \(tiny/clip-32-48\).*text: 5 layers, width 32, 24 positions \(adapter\) "
        r"vs 5 layers, width 64, 24 positions \(this backbone\)",
    ):
        PeftModel.from_pretrained(wider, tmp_path)


def test_adapter_on_a_shallower_backbone_names_its_depth(tmp_path):
    model = get_peft_model(tiny_clip(), MITPConfig(num_labels=3))
    model.save_pretrained(tmp_path)
    shallow = tiny_clip(num_hidden_layers=3)
    with pytest.raises(ValueError, match=r"text: 5 layers, width 32, 24 positions \(adapter\) vs 3 layers"):
        PeftModel.from_pretrained(shallow, tmp_path)


def test_from_pretrained_with_a_local_base_and_a_missing_one(tmp_path, inputs):
    import mitp_peft

    model = trained(tiny_clip())
    model.peft_config["default"].base_model_name_or_path = "nobody/not-a-model"
    model.save_pretrained(tmp_path / "adapter")
    tiny_clip().save_pretrained(tmp_path / "base")
    with pytest.raises(OSError, match=r"Could not load 'nobody/not-a-model'.*base_model_name_or_path="):
        mitp_peft.from_pretrained(str(tmp_path / "adapter"))
    again = mitp_peft.from_pretrained(str(tmp_path / "adapter"), base_model_name_or_path=str(tmp_path / "base"))
    assert torch.equal(again(**inputs).logits, model(**inputs).logits)


def test_an_adapter_saved_by_0_5_loads_and_gives_its_logits(tmp_path):
    """tests/data/adapter_saved_by_0_5 was saved by mitp-peft 0.5.0 (a missing-aware adapter with label names on the
    tiny CLIP, its weights moved off their start), with the logits it gave: checkpoint keys and format stay, and the
    logits are the same to float rounding (the hub divides dot products by norms where 0.5 normalized first)."""
    from helpers import ROOT

    folder = ROOT / "tests" / "data" / "adapter_saved_by_0_5"
    model = PeftModel.from_pretrained(tiny_clip(), folder).eval()
    with torch.no_grad():
        logits = model(**make_inputs()).logits
    expected = load_file(folder / "expected_logits.safetensors")["logits"]
    assert (logits - expected).abs().max() <= 1e-6 * expected.abs().max()
    assert model.peft_config["default"].built_for["mitp_peft_version"] == "0.5.0"
    model.save_pretrained(tmp_path)
    assert (
        load_file(tmp_path / "adapter_model.safetensors").keys()
        == load_file(folder / "adapter_model.safetensors").keys()
    )
