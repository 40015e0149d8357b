"""Batches whose samples use different adapters of one backbone: each sample's output is its own adapter's alone."""

import pytest
import torch
from families import FAMILIES, build, family_inputs
from helpers import make_inputs, tiny_clip
from peft import get_peft_model

from mitp_peft import MITPConfig

# Adapters of other layers, prompt lengths and hubs, so that the shared extraction starts below the highest first
# interaction layer and the text is trimmed for the longest prompts.
OTHERS = {
    "low": dict(text_layers=[1, 3], vision_layers=[2, 4]),
    "short": dict(prompt_length=4, hub_reads="prompts"),
}


def three_adapters(base):
    model = get_peft_model(base, MITPConfig(num_labels=3))
    for name, settings in OTHERS.items():
        model.add_adapter(name, MITPConfig(num_labels=3, **settings))
    torch.manual_seed(3)
    with torch.no_grad():
        for adapter in model.base_model.mitp_adapters.values():
            for parameter in adapter.parameters():
                parameter.add_(torch.randn_like(parameter) * 0.1)  # three adapters that differ
    return model.eval()


def alone(model, inputs, index, name):
    model.base_model.set_adapter(name)
    with torch.no_grad():
        return model(**{k: v[index : index + 1] for k, v in inputs.items()}).logits[0]


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_each_sample_gets_what_its_adapter_gives_it_alone(name):
    model = three_adapters(build(name))
    inputs = family_inputs(name, lengths=(7, 5, 3, 6, 4, 7))
    names = ["default", "low", "short", "low", "short", "default"]
    with torch.no_grad():
        mixed = model(**inputs, adapter_names=names).logits
    for index, adapter in enumerate(names):
        torch.testing.assert_close(mixed[index], alone(model, inputs, index, adapter), rtol=1e-4, atol=1e-5)
    assert (mixed[0] - mixed[1]).abs().max() > 1e-2  # the adapters really differ


def test_the_extraction_layers_run_once_for_the_batch():
    model = three_adapters(tiny_clip())
    calls = []
    first_layer = model.base_model.towers.vision.layers[0]
    first_layer.register_forward_hook(lambda module, args, out: calls.append(args[0].shape[0]))
    with torch.no_grad():
        model(**make_inputs(batch=6), adapter_names=["default", "low", "short"] * 2)
    assert calls == [6]


def test_what_a_mixed_batch_cannot_hold_is_named():
    model = three_adapters(tiny_clip())
    inputs = make_inputs()
    with pytest.raises(ValueError, match=r"one name per sample: got 2 names for 3 samples"):
        model(**inputs, adapter_names=["default", "low"])
    with pytest.raises(ValueError, match=r"unknown adapter\(s\) \['nope'\]"):
        model(**inputs, adapter_names=["default", "nope", "low"])
    with pytest.raises(ValueError, match=r"'__base__'.*disable_adapter"):
        model(**inputs, adapter_names=["default", "__base__", "low"])
    model.add_adapter("five", MITPConfig(num_labels=5))
    with pytest.raises(ValueError, match=r"one label space; these differ"):
        model(**inputs, adapter_names=["default", "five", "low"])
    with pytest.raises(TypeError, match=r"MITP takes no \['alora_offsets'\]"):
        model(**inputs, alora_offsets=[1, 1, 1])
    model.train()
    with pytest.raises(
        ValueError, match=r"Mixed-adapter batches \(adapter_names\) are for inference: call model.eval"
    ):
        model(**inputs, adapter_names=["default", "low", "short"])


def test_a_mixed_batch_gives_the_loss_of_its_samples():
    model = three_adapters(tiny_clip())
    inputs, labels = make_inputs(batch=4), torch.tensor([0, 1, 2, 1])
    names = ["default", "low", "default", "short"]
    with torch.no_grad():
        out = model(**inputs, labels=labels, adapter_names=names)
    expected = torch.nn.functional.cross_entropy(out.logits, labels)
    torch.testing.assert_close(out.loss, expected)
    assert model.active_adapters == ["default"]  # the call leaves the active adapter as it was


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_fan_out_gives_each_adapter_what_it_gives_alone(name):
    model = three_adapters(build(name))
    inputs = family_inputs(name, lengths=(7, 5, 3, 6))
    with torch.no_grad():
        outputs = model.fan_out(adapters=["short", "default", "low"], **inputs)
    assert list(outputs) == ["short", "default", "low"]
    for adapter, output in outputs.items():
        model.base_model.set_adapter(adapter)
        with torch.no_grad():
            alone = model(**inputs)
        torch.testing.assert_close(output.logits, alone.logits, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(output.image_features, alone.image_features, rtol=1e-4, atol=1e-5)
    assert (outputs["default"].logits - outputs["low"].logits).abs().max() > 1e-2  # the adapters really differ


def test_fan_out_runs_the_extraction_layers_once_and_compares_no_inputs(monkeypatch):
    """Three pairs for each of three adapters: the extraction layers see three images, once. A per-sample batch that
    repeats its pairs is computed once below the interaction layers too, whatever it repeats: nothing looks for
    the repeats (no comparison of images)."""
    model = three_adapters(tiny_clip())
    inputs = make_inputs(batch=3)
    calls = []
    model.base_model.towers.vision.layers[0].register_forward_hook(lambda m, a, out: calls.append(a[0].shape[0]))
    monkeypatch.setattr(torch, "unique", lambda *a, **k: pytest.fail("inputs were compared"))
    with torch.no_grad():
        fanned = model.fan_out(adapters=["default", "low", "short"], **inputs)
        assert calls == [3]
        repeated = {k: torch.cat([v] * 3) for k, v in inputs.items()}
        names = ["default"] * 3 + ["low"] * 3 + ["short"] * 3
        mixed = model(**repeated, adapter_names=names).logits
    assert calls == [3, 9]
    torch.testing.assert_close(mixed, torch.cat([fanned[n].logits for n in ("default", "low", "short")]))


def test_what_a_fan_out_cannot_take_is_named():
    model = three_adapters(tiny_clip())
    inputs = make_inputs()
    with pytest.raises(TypeError, match=r"adapters takes a list of adapter names.*got 'low'"):
        model.fan_out(adapters="low", **inputs)
    with pytest.raises(ValueError, match=r"adapters repeats \['low'\]; this model has"):
        model.fan_out(adapters=["low", "low"], **inputs)
    with pytest.raises(ValueError, match=r"adapters names unknown adapter\(s\) \['nope'\]"):
        model.fan_out(adapters=["low", "nope"], **inputs)
    with pytest.raises(ValueError, match=r"complete samples; this one has \['image_present'\]"):
        model.fan_out(adapters=["low"], **inputs, image_present=torch.ones(3, dtype=torch.bool))
    with pytest.raises(TypeError, match=r"unexpected argument\(s\) \['labels'\]"):
        model.fan_out(adapters=["low"], **inputs, labels=torch.tensor([0, 1, 2]))


@pytest.mark.parametrize(
    "names, message",
    [
        (["nope", "default", "low"], r"unknown adapter\(s\) \['nope'\]; this model has \['default', 'low', 'short'\]"),
        (["__base__", "default", "low"], r"holds '__base__'.*disable_adapter"),
        (["__base__"] * 3, r"holds '__base__'.*disable_adapter"),
        ("low", r"one adapter name per sample, a list, got the string 'low'.*set_adapter\('low'\)"),
    ],
)
def test_adapter_names_that_cannot_be_used_are_named_whatever_their_position(names, message):
    model = three_adapters(tiny_clip())
    with pytest.raises((ValueError, TypeError), match=message):
        model(**make_inputs(), adapter_names=names)


def test_adapters_whose_labels_have_other_names_do_not_share_a_mixed_batch():
    model = three_adapters(tiny_clip())
    model.add_adapter("soups", MITPConfig(num_labels=3, id2label={0: "miso", 1: "ramen", 2: "pho"}))
    model.add_adapter("cars", MITPConfig(num_labels=3, id2label={0: "miso", 1: "sedan", 2: "pho"}))
    model.eval()
    with pytest.raises(ValueError, match=r"'soups' and 'cars' name them differently: class 1 is 'ramen' in one and "
                       r"'sedan' in the other.*same id2label"):  # fmt: skip
        model(**make_inputs(), adapter_names=["soups", "cars", "soups"])
    with torch.no_grad():  # an adapter without label names shares a batch with one that has them
        assert model(**make_inputs(), adapter_names=["soups", "default", "soups"]).logits.shape == (3, 3)
