"""The joint forward: pooling positions, masks, prompts, interaction between towers, gradients."""

import copy

import pytest
import torch
from families import mitp
from helpers import (
    BOS,
    EOS,
    MAX_POSITIONS,
    TEXT_WIDTH,
    VISION_WIDTH,
    adapter_keys,
    adapter_module,
    make_inputs,
    tiny_clip,
)

from mitp_peft.towers import TowerState, resolve_towers


@pytest.mark.parametrize("eos_token_id", [EOS, 2])
@pytest.mark.parametrize("padded", [True, False])
def test_towers_without_prompts_reproduce_the_backbone(eos_token_id, padded):
    """Layer by layer through the tower adapters, CLIP's own pooled outputs come back (EOS and CLS pooling)."""
    base = tiny_clip(eos_token_id=eos_token_id)
    inputs = make_inputs(lengths=[7, 5, 3] if padded else [6, 6, 6])
    towers = resolve_towers(base)
    with torch.no_grad():
        for tower, expected in (
            (towers.text, base.text_model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])),
            (towers.vision, base.vision_model(pixel_values=inputs["pixel_values"])),
        ):
            state = tower.embed(inputs)
            hidden, mask = state.hidden, tower.attention_mask(state, 0)
            for layer in tower.layers:
                hidden = tower.run_layer(layer, hidden, mask)
            torch.testing.assert_close(tower.pool(state, hidden), expected.pooler_output, rtol=0, atol=1e-6)


def test_legacy_eos_rule_pools_highest_id():
    base = tiny_clip(eos_token_id=2)
    inputs = make_inputs(batch=1, lengths=[5])
    inputs["input_ids"][0, 2] = 2  # a token equal to the legacy eos id must not be pooled
    state = resolve_towers(base).text.embed(inputs)
    assert state.pool_index.tolist() == [4]  # EOS (the highest id) sits at position 4


def test_text_mask_follows_method():
    """Tokens: causal and padding-free; prompts see every real token and are seen by all; padding never attended."""
    towers = resolve_towers(tiny_clip())
    real = torch.tensor([[True, True, True, False]])
    state = TowerState(torch.zeros(1, 4, TEXT_WIDTH), real)
    mask = towers.text.attention_mask(state, num_prompts=2)[0, 0]
    T, F = True, False
    expected = torch.tensor(
        [
            [T, F, F, F, T, T],
            [T, T, F, F, T, T],
            [T, T, T, F, T, T],
            [T, T, T, F, T, T],  # a padding token reads like the others but is read by no one
            [T, T, T, F, T, T],
            [T, T, T, F, T, T],
        ]
    )
    assert torch.equal(mask, expected)
    vision_state = TowerState(torch.zeros(1, 5, VISION_WIDTH))
    assert towers.vision.attention_mask(vision_state, num_prompts=2) is None


def test_pooling_uses_eos_and_cls_with_prompts(base, inputs):
    """Prompts are split off after each interaction layer: the final streams have their original length and the
    features are exactly the backbone's pooling of them (EOS after final_layer_norm, CLS after post_layernorm)."""
    model = mitp(base, text_layers=[1, 2], vision_layers=[2, 3])  # the last layers run prompt-free
    captured = {}
    base.text_model.final_layer_norm.register_forward_hook(lambda m, a, out: captured.update(text=out))
    last_vision = base.vision_model.encoder.layers[-1]
    last_vision.register_forward_hook(lambda m, a, out: captured.update(vision=out))
    out = model(**inputs)
    text, vision = captured["text"], captured["vision"]
    assert text.shape[1] == inputs["input_ids"].shape[1]
    assert vision.shape[1] == 1 + (32 // 8) ** 2
    eos = (inputs["input_ids"] == EOS).int().argmax(-1)
    torch.testing.assert_close(out.text_features, text[torch.arange(3), eos], rtol=0, atol=0)
    torch.testing.assert_close(out.image_features, base.vision_model.post_layernorm(vision[:, 0]), rtol=0, atol=0)


def test_padding_is_never_attended(base):
    model = mitp(base)
    inputs = make_inputs(lengths=[7, 4, 3])
    out = model(**inputs)
    changed = copy.deepcopy(inputs)
    changed["input_ids"][1, 4:] = 17  # padding positions of row 1 get other ids; the mask still says padding
    changed["input_ids"][2, 3:] = 42
    again = model(**changed)
    assert torch.equal(out.logits, again.logits)
    changed["input_ids"][1, 2] = 17  # a real token changes the result
    assert not torch.allclose(model(**changed).logits[1], out.logits[1])


def test_all_padding_columns_are_trimmed_exactly(base):
    """Texts padded to the full 24 positions fit next to 8 prompts: all-padding columns are dropped first."""
    model = mitp(base)
    short = make_inputs(lengths=[7, 5, 3])
    full = make_inputs(lengths=[7, 5, 3], pad_to=MAX_POSITIONS)
    torch.testing.assert_close(model(**full).logits, model(**short).logits, rtol=0, atol=1e-6)


def test_text_longer_than_room_is_explained(base):
    model = mitp(base)
    assert model.max_text_length == MAX_POSITIONS - 8
    too_long = make_inputs(lengths=[MAX_POSITIONS - 7, 3])
    with pytest.raises(ValueError, match=f"room for {MAX_POSITIONS - 8}.*max_length={MAX_POSITIONS - 8}"):
        model(**too_long)


def test_prompts_change_outputs_and_only_they(base, inputs):
    model = mitp(base)
    before = model(**inputs)
    prompt = adapter_module(model).prompt
    original = prompt.detach().clone()
    with torch.no_grad():
        prompt.mul_(3.0)
    after = model(**inputs)
    assert not torch.allclose(before.text_features, after.text_features)
    assert not torch.allclose(before.image_features, after.image_features)
    with torch.no_grad():
        prompt.copy_(original)
    assert torch.equal(model(**inputs).logits, before.logits)


def test_interaction_is_real(base, inputs):
    """With the hub, the image changes text features and the text changes image features."""
    model = mitp(base)
    out = model(**inputs)
    other_image = dict(inputs, pixel_values=torch.randn_like(inputs["pixel_values"]))
    other_text = copy.deepcopy(inputs)
    other_text["input_ids"][:, 1] = (other_text["input_ids"][:, 1] + 1) % BOS
    assert not torch.equal(model(**other_image).text_features, out.text_features)
    assert not torch.equal(model(**other_text).image_features, out.image_features)


def test_without_interaction_towers_stay_apart(base, inputs):
    """One interaction layer: prompts are acquired but the hub never runs, so no information crosses."""
    model = mitp(base, num_interaction_layers=1)
    out = model(**inputs)
    other_image = dict(inputs, pixel_values=torch.randn_like(inputs["pixel_values"]))
    other_text = copy.deepcopy(inputs)
    other_text["input_ids"][:, 1] = (other_text["input_ids"][:, 1] + 1) % BOS
    assert torch.equal(model(**other_image).text_features, out.text_features)
    assert torch.equal(model(**other_text).image_features, out.image_features)


def test_extraction_layers_keep_no_graph(base, inputs):
    """Below the first interaction layer nothing requires grad; from it on, the stream carries the prompts' graph."""
    model = mitp(base)
    seen = {}
    for name, layer in [
        ("text0", base.text_model.encoder.layers[0]),
        ("vision1", base.vision_model.encoder.layers[1]),
    ]:
        layer.register_forward_hook(lambda m, a, out, name=name: seen.update({name: out.requires_grad}))
    last = base.text_model.encoder.layers[-1].get_base_layer()
    last.register_forward_hook(lambda m, a, out: seen.update(text_last=out.requires_grad))
    model.train()
    model(**inputs)
    assert seen == {"text0": False, "vision1": False, "text_last": True}


def test_gradients_reach_exactly_the_trainable_parameters_and_backbone_stays(base, inputs):
    model = mitp(base)
    backbone = {k: v.clone() for k, v in base.state_dict().items()}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == adapter_keys(adapter="default")
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    model(**inputs, labels=torch.tensor([0, 1, 2])).loss.backward()
    with_grad = {n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert with_grad == trainable
    optimizer.step()
    for key, value in base.state_dict().items():
        assert torch.equal(value, backbone[key]), key


@pytest.mark.parametrize("hub_attention", ["gated", "cross"])
@pytest.mark.parametrize("head", ["linear", "agreement", "per_modality"])
@pytest.mark.parametrize("head_uses_memory", [False, True])
def test_variants_train_every_parameter(base, inputs, hub_attention, head, head_uses_memory):
    model = mitp(
        base, hub_attention=hub_attention, head=head, head_uses_memory=head_uses_memory, layer_prompts=True,
        memory_decay=0.5,
    )  # fmt: skip
    adapter = adapter_module(model)
    memory = (TEXT_WIDTH + VISION_WIDTH) if head_uses_memory else 0
    if head == "per_modality":
        widths = (adapter.head.vision.in_features, adapter.head.text.in_features)
        assert widths == (VISION_WIDTH * (2 if head_uses_memory else 1), TEXT_WIDTH * (2 if head_uses_memory else 1))
    else:
        agreement = 16 if head == "agreement" else 0  # the tiny CLIP's projection_dim
        assert adapter.head.classifier.in_features == TEXT_WIDTH + VISION_WIDTH + memory + agreement
    assert adapter.text_layer_prompts.shape == (4, 8, TEXT_WIDTH)
    assert adapter.vision_layer_prompts.shape == (4, 8, VISION_WIDTH)
    model(**inputs, labels=torch.tensor([0, 1, 2])).loss.backward()
    without_gradient = [n for n, p in model.named_parameters() if p.requires_grad and not p.grad.abs().sum() > 0]
    assert not without_gradient


def test_layer_prompts_start_at_zero_and_change_outputs(base, inputs):
    """Per-layer prompts add nothing at the start; once they move, both towers' features move."""
    plain = mitp(tiny_clip(), num_interaction_layers=3)
    model = mitp(base, num_interaction_layers=3, layer_prompts=True)
    adapter_module(model).load_state_dict(adapter_module(plain).state_dict(), strict=False)
    before = model(**inputs)
    torch.testing.assert_close(before.logits, plain(**inputs).logits, rtol=0, atol=0)
    with torch.no_grad():
        adapter_module(model).text_layer_prompts[1].normal_()
    after = model(**inputs)
    relative = (after.image_features - before.image_features).norm() / before.image_features.norm()
    assert relative > 1e-2  # a text prompt of pair 2 reaches the image through the hub at pair 2


def test_agreement_head_reads_the_dual_encoders_own_similarity(base, inputs):
    """The agreement feature is the product of the backbone's own normalized embeddings: its sum is their cosine."""
    model = mitp(base, head="agreement")
    adapter = adapter_module(model)
    towers = model.base_model.towers
    _, features = adapter(towers, adapter.batch(towers, inputs))
    cosine = (features.image_embeds * features.text_embeds).sum(-1)
    projected_image = base.visual_projection(features.image_features)
    projected_text = base.text_projection(features.text_features)
    torch.testing.assert_close(cosine, torch.cosine_similarity(projected_image, projected_text, dim=-1))


def test_trailing_padding_uses_pad_token(base):
    """CLIP tokenizers pad with the EOS id itself: the first EOS is pooled, the padding EOS ids are ignored."""
    model = mitp(base)
    inputs = make_inputs(batch=2, lengths=[6, 3])
    padded = copy.deepcopy(inputs)
    padded["input_ids"][1, 3:] = EOS
    assert resolve_towers(base).text.pooled_position(padded["input_ids"]).tolist() == [5, 2]
    assert torch.equal(model(**padded).logits, model(**inputs).logits)
