"""Dtypes, gradient checkpointing, attention backends, batch size 1, and clear errors for bad input."""

import pytest
import torch
from families import mitp
from helpers import make_inputs, on, tiny_clip
from peft import get_peft_model

from mitp_peft import MITPConfig

LABELS = torch.tensor([0, 1, 2])


def grads(model):
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


def test_bf16_backbone_trains_fp32_adapter(inputs, device):
    model = mitp(tiny_clip().to(device, torch.bfloat16))
    assert all(p.dtype == torch.float32 for p in model.parameters() if p.requires_grad)
    inputs = on(device, dict(inputs, pixel_values=inputs["pixel_values"].bfloat16()))
    out = model(**inputs, labels=LABELS.to(device))
    assert out.logits.dtype == torch.float32 and torch.isfinite(out.loss)
    out.loss.backward()
    assert all(torch.isfinite(g).all() and g.abs().sum() > 0 for g in grads(model).values())


def test_adapter_follows_backbone_dtype_without_autocast(inputs, device):
    base = tiny_clip().to(device, torch.bfloat16)
    model = get_peft_model(base, MITPConfig(num_labels=3), autocast_adapter_dtype=False)
    assert {p.dtype for p in model.parameters() if p.requires_grad} == {torch.bfloat16}
    inputs = on(device, dict(inputs, pixel_values=inputs["pixel_values"].bfloat16()))
    model(**inputs, labels=LABELS.to(device)).loss.backward()


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_autocast_matches_float32_within_its_precision(inputs, dtype, device):
    """Under autocast the loss and the gradients stay those of float32 within the half type's precision (bf16
    keeps 8 bits of mantissa, fp16 11): a prompt or mask in the wrong dtype would be far off, or not finite."""
    model = mitp(tiny_clip().to(device))
    inputs, labels = on(device, inputs), LABELS.to(device)
    reference = model(**inputs, labels=labels)
    reference.loss.backward()
    expected = grads(model)
    model.zero_grad()
    with torch.autocast(device, dtype=dtype):
        out = model(**inputs, labels=labels)
    out.loss.backward()
    tolerance = 0.05 if dtype == torch.bfloat16 else 0.01
    torch.testing.assert_close(out.loss, reference.loss, rtol=tolerance, atol=0)
    for name, grad in grads(model).items():
        scale = expected[name].abs().max()
        assert (grad - expected[name]).abs().max() <= 4 * tolerance * scale, name


@pytest.mark.parametrize("use_reentrant", [True, False])
def test_gradient_checkpointing_gives_the_same_gradients(inputs, use_reentrant):
    plain = mitp(tiny_clip()).train()
    plain(**inputs, labels=LABELS).loss.backward()
    expected = grads(plain)

    torch.manual_seed(0)
    base = tiny_clip()
    base.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": use_reentrant})
    checkpointed = mitp(base).train()
    checkpointed.load_state_dict(plain.state_dict())
    recomputed = []
    inner = base.vision_model.encoder.layers[-1].base_layer.layer_norm1  # checkpointing wraps forward
    inner.register_forward_hook(lambda *a: recomputed.append(1))
    checkpointed(**inputs, labels=LABELS).loss.backward()
    assert len(recomputed) == 2  # forward, and again during backward: checkpointing is on
    got = grads(checkpointed)
    assert got.keys() == expected.keys()
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-5, atol=1e-6)


def test_extraction_layers_are_not_checkpointed(inputs, recwarn):
    """Below the first interaction layer nothing needs gradients: checkpointing there would only warn."""
    base = tiny_clip()
    base.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": True})
    model = mitp(base).train()
    model(**inputs, labels=LABELS).loss.backward()
    assert not [w for w in recwarn if "requires_grad" in str(w.message)]
    assert base.text_model.encoder.layers[0].gradient_checkpointing  # restored after the forward


def test_eager_attention_matches_sdpa(inputs):
    sdpa = mitp(tiny_clip())
    base = tiny_clip()
    base.set_attn_implementation("eager")
    eager = mitp(base)
    eager.load_state_dict(sdpa.state_dict())
    torch.testing.assert_close(eager(**inputs).logits, sdpa(**inputs).logits, rtol=1e-5, atol=1e-5)


def test_attention_backend_without_dense_masks_is_refused():
    base = tiny_clip()
    base.text_model.config._attn_implementation_internal = "flash_attention_2"
    with pytest.raises(ValueError, match="attn_implementation='sdpa'"):
        mitp(base)


@pytest.mark.parametrize("lengths", [[5], [7, 7], [7, 3]])
def test_batch_sizes_and_padding(lengths):
    model = mitp(tiny_clip())
    batch = make_inputs(batch=len(lengths), lengths=lengths)
    out = model(**batch, labels=LABELS[: len(lengths)])
    assert out.logits.shape == (len(lengths), 3) and torch.isfinite(out.loss)
    # Each sample is classified on its own: batching does not change a sample's result.
    single = make_inputs(batch=len(lengths), lengths=lengths)
    first = {k: v[:1, : lengths[0]] if k != "pixel_values" else v[:1] for k, v in single.items()}
    torch.testing.assert_close(model(**first).logits[0], out.logits[0], rtol=1e-5, atol=1e-6)


def test_without_attention_mask_every_token_is_real(inputs):
    model = mitp(tiny_clip())
    full = make_inputs(lengths=[6, 6, 6])
    without = {k: v for k, v in full.items() if k != "attention_mask"}
    torch.testing.assert_close(model(**without).logits, model(**full).logits, rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda b: b.pop("pixel_values"), r"missing \['pixel_values'\]"),
        (lambda b: b.pop("input_ids"), r"missing \['input_ids'\]"),
        (
            lambda b: b.update(pixel_values=b["pixel_values"][:2]),
            "batch sizes differ: pixel_values has 2.*input_ids 3",
        ),
        (lambda b: b.update(attention_mask=b["attention_mask"][:, :2]), "attention_mask has shape"),
        (lambda b: b.update(input_ids=b["input_ids"][0]), r"input_ids must be \(batch, tokens\)"),
        (lambda b: b.update(return_loss=True), r"unexpected argument\(s\) \['return_loss'\]"),
    ],
)
def test_bad_inputs_are_named(inputs, change, message):
    model = mitp(tiny_clip())
    change(inputs)
    with pytest.raises((ValueError, TypeError), match=message):
        model(**inputs)


@pytest.mark.parametrize(
    "problem_type, labels, message",
    [
        (
            "single_label_classification",
            torch.tensor([0, 3, 1]),
            r"labels are out of range: num_labels=3 allows 0..2.* Got \[3\]",
        ),
        ("single_label_classification", torch.tensor([0, -1, 1]), r"labels are out of range.* Got \[-1\]"),
        ("single_label_classification", torch.tensor([0, 1]), r"shape \(3,\), got shape \(2,\)"),
        ("single_label_classification", torch.tensor([0.0, 1.0, 2.0]), "integer class indices"),
        ("multi_label_classification", torch.tensor([0, 1, 2]), r"multi-hot of shape \(3, 3\), got \(3,\)"),
        ("multi_label_classification", torch.full((3, 3), 2.0), r"must lie in \[0, 1\]"),
    ],
)
def test_bad_labels_are_named(inputs, problem_type, labels, message):
    model = mitp(tiny_clip(), problem_type=problem_type)
    with pytest.raises(ValueError, match=message):
        model(**inputs, labels=labels)


def test_return_dict_false_gives_a_tuple(inputs):
    model = mitp(tiny_clip())
    loss, logits, image_features, text_features = model(**inputs, labels=LABELS, return_dict=False)
    assert logits.shape == (3, 3) and image_features.shape[0] == 3 and loss.dim() == 0


@pytest.mark.cuda
def test_a_training_step_reads_nothing_back_from_the_device(inputs, device):
    """On an accelerator, a forward and backward that read a value back to the host (`.item()`, a value check in
    Python) would wait for every queued kernel; CUDA's sync debug mode makes that an error."""
    model = mitp(tiny_clip().to(device))
    inputs, labels = on(device, inputs), LABELS.to(device)
    # Made before the check starts: a device tensor built from a Python number is a host-to-device copy that syncs.
    num_items = torch.tensor(3, device=device)
    model(**inputs, labels=labels)  # warm-up: lazy initializations may sync once
    torch.cuda.set_sync_debug_mode("error")
    try:
        model(**inputs, labels=labels, num_items_in_batch=num_items).loss.backward()
    finally:
        torch.cuda.set_sync_debug_mode("default")
