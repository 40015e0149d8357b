"""The extraction cache: the states at the first interaction layers, computed once, replace the lower layers."""

import datasets
import pytest
import torch
from families import build, family_inputs, mitp
from peft import get_peft_model

from mitp_peft import MITPConfig
from mitp_peft.extraction import cache_extraction, extract_states

LABELS = torch.tensor([0, 1, 2])
PIXEL_INPUTS = ("pixel_values", "spatial_shapes")


def without_pixels(inputs):
    return {k: v for k, v in inputs.items() if k not in PIXEL_INPUTS}


@pytest.mark.parametrize("name", ["clip", "vit+bert", "siglip2"])
def test_cached_states_give_the_same_logits_and_gradients(name):
    model = mitp(name)
    inputs = family_inputs(name)
    model(**inputs, labels=LABELS).loss.backward()
    expected = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    logits = model(**inputs).logits
    model.zero_grad()

    cached = dict(without_pixels(inputs), **extract_states(model, inputs))
    assert cached["mitp_states_layers"].tolist() == [[1, 2]] * 3
    torch.testing.assert_close(model(**cached).logits, logits, rtol=0, atol=1e-6)
    model(**cached, labels=LABELS).loss.backward()
    for n, p in model.named_parameters():
        if p.requires_grad:
            torch.testing.assert_close(p.grad, expected[n], rtol=1e-5, atol=1e-7)


def test_cache_dataset_in_fp16():
    model = mitp("clip")
    inputs = family_inputs("clip", lengths=(7, 7, 7, 7))  # one text length for the whole dataset
    rows = [{k: v[i] for k, v in inputs.items()} for i in range(4)]
    dataset = datasets.Dataset.from_list([{k: v.tolist() for k, v in r.items()} for r in rows])
    cached = cache_extraction(model, dataset, batch_size=3)
    assert "pixel_values" not in cached.column_names
    assert {"mitp_text_states", "mitp_vision_states", "mitp_states_layers"} <= set(cached.column_names)
    for name in ("mitp_text_states", "mitp_vision_states"):
        assert cached.features[name].feature.feature.dtype == "float16"  # stored in half precision
    batch = cached[:4]
    assert batch["mitp_text_states"].shape == (4, 7, 32)
    assert batch["mitp_vision_states"].shape == (4, 17, 48)
    got = model(**batch).logits
    torch.testing.assert_close(got, model(**inputs).logits, rtol=0, atol=5e-3)  # fp16 storage


def test_cache_needs_one_text_length():
    model = mitp("clip")
    inputs = family_inputs("clip", lengths=(7, 5))
    rows = []
    for i in range(2):
        n = int(inputs["attention_mask"][i].sum())
        rows.append(
            dict(input_ids=inputs["input_ids"][i, :n].tolist(), pixel_values=inputs["pixel_values"][i].tolist())
        )
    with pytest.raises(ValueError, match="padding='max_length'"):
        cache_extraction(model, datasets.Dataset.from_list(rows))


def test_a_cache_for_other_layers_is_refused():
    model = mitp("clip")
    inputs = family_inputs("clip")
    cached = dict(without_pixels(inputs), **extract_states(model, inputs))
    other = get_peft_model(build("clip"), MITPConfig(num_labels=3, text_layers=[2, 3], vision_layers=[3, 4]))
    with pytest.raises(
        ValueError, match=r"first interaction layers \[2, 3\] \(text, vision\).*They were taken at \[1, 2\]"
    ):
        other(**cached)
    del cached["mitp_states_layers"]
    with pytest.raises(ValueError, match="need mitp_states_layers"):
        model(**cached)


def test_text_inputs_are_checked_when_the_image_is_cached():
    model = mitp("clip")
    inputs = family_inputs("clip")
    cached = dict(without_pixels(inputs), **extract_states(model, inputs))
    cached["attention_mask"] = cached["attention_mask"][:, :2]
    with pytest.raises(ValueError, match="attention_mask has shape"):
        model(**cached)


def test_cached_states_of_another_width_are_refused():
    model = mitp("clip")
    inputs = family_inputs("clip")
    cached = dict(without_pixels(inputs), **extract_states(model, inputs))
    cached["mitp_vision_states"] = cached["mitp_vision_states"][..., :10]
    with pytest.raises(ValueError, match=r"mitp_vision_states must be \(batch, tokens, 48\)"):
        model(**cached)
