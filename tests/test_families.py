"""One battery for every supported dual-encoder family (tiny configs, random weights: mechanics only)."""

import copy

import pytest
import torch
from families import FAMILIES, TEXT, TRAINED_LIKE_INIT, VISION, build, family_inputs, mitp
from peft import PeftModel, get_peft_model
from transformers import CLIPVisionConfig

from mitp_peft import MITPConfig
from mitp_peft.method.hub import HUB_READS
from mitp_peft.towers import resolve_towers

NAMES = sorted(FAMILIES)
LABELS = torch.tensor([0, 1, 2])


def backbone_embeds(model, inputs):
    """The dual encoder's own normalized text and image embeddings."""
    out = model(**inputs)
    return out.text_embeds, out.image_embeds


def as_embeds(model, modality, pooled):
    """What the dual encoder does with pooled features: its projection (if any), then L2 normalization."""
    projection = getattr(model, "text_projection" if modality == "text" else "visual_projection", None)
    if projection is not None:
        pooled = projection(pooled)
    return pooled / pooled.norm(dim=-1, keepdim=True)


@pytest.mark.parametrize("name", NAMES)
def test_towers_without_prompts_pool_as_the_dual_encoder(name):
    model = build(name)
    inputs = family_inputs(name)
    towers = resolve_towers(model)
    expected = dict(zip(("text", "vision"), backbone_embeds(model, inputs), strict=True))
    with torch.no_grad():
        for tower in towers:
            state = tower.embed(inputs)
            hidden, mask = state.hidden, tower.attention_mask(state, 0)
            for layer in tower.layers:
                hidden = tower.run_layer(layer, hidden, mask)
            got = as_embeds(model, tower.modality, tower.pool(state, hidden))
            torch.testing.assert_close(got, expected[tower.modality], rtol=0, atol=2e-6)


@pytest.mark.parametrize("name", NAMES)
def test_forward_backward_reaches_exactly_the_adapter(name):
    model = mitp(name)
    reference = {k: v.clone() for k, v in model.get_base_model().state_dict().items()}
    out = model(**family_inputs(name), labels=LABELS)
    assert out.logits.shape == (3, 3) and torch.isfinite(out.loss)
    out.loss.backward()
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    with_grad = {n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert with_grad == trainable and all(".mitp_" in n for n in trainable)
    torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1.0).step()
    assert all(torch.equal(v, reference[k]) for k, v in model.get_base_model().state_dict().items())


@pytest.mark.parametrize("name", NAMES)
def test_save_load_is_bit_identical(name, tmp_path):
    model = mitp(name)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.1)
    inputs = family_inputs(name)
    model.save_pretrained(tmp_path)
    again = PeftModel.from_pretrained(build(name), tmp_path)
    assert torch.equal(again(**inputs).logits, model(**inputs).logits)


@pytest.mark.parametrize("name", NAMES)
def test_disable_adapter_is_the_backbone(name):
    # Frozen like the adapted backbone: nn.MultiheadAttention (SigLIP's pooling head) takes another kernel when no
    # parameter requires grad, which differs in the last bits.
    reference = build(name).requires_grad_(False)
    model = mitp(name)
    inputs = family_inputs(name)
    with model.disable_adapter():
        got = backbone_embeds(model, inputs)
    for a, b in zip(got, backbone_embeds(reference, inputs), strict=True):
        assert torch.equal(a, b)


def test_siglips_pooling_head_moves_in_its_last_bits_when_its_weights_are_frozen_not_when_adapters_are_disabled():
    """Why a disabled SigLIP adapter differs from an *unfrozen* bare backbone by about 1e-7: torch's matmul folds a
    transposed 3-D input by whether the weight requires grad (not by grad mode), and nn.MultiheadAttention (SigLIP's
    attention-pooling head, batch first) transposes its inputs; peft freezes the backbone, as for every method. The
    disabled path itself is the backbone's own forward: bit for bit a frozen copy's (the battery above)."""
    inputs = family_inputs("siglip")
    unfrozen, frozen = build("siglip"), build("siglip").requires_grad_(False)
    with torch.no_grad():
        gap = (unfrozen(**inputs).image_embeds - frozen(**inputs).image_embeds).abs().max()
    assert 0 < gap < 1e-6
    torch.manual_seed(0)
    mha = torch.nn.MultiheadAttention(48, 4, batch_first=True)
    query, keys = torch.randn(3, 1, 48), torch.randn(3, 17, 48)
    with torch.no_grad():
        before = mha(query, keys, keys)[0]
        after = mha.requires_grad_(False)(query, keys, keys)[0]
    assert 0 < (before - after).abs().max() < 1e-6


@pytest.mark.parametrize("name", NAMES)
def test_prompts_are_gone_before_pooling(name):
    """With the last layers prompt-free, their outputs have the original lengths: pooling (EOS, last token, CLS,
    attention-pooling heads) never sees a prompt."""
    model = mitp(name, text_layers=[1, 2], vision_layers=[2, 3])
    towers = resolve_towers(model.get_base_model())
    inputs = family_inputs(name)
    lengths = {}
    for tower in towers:
        tower.layers[-1].register_forward_hook(lambda m, a, out, t=tower.modality: lengths.update({t: out.shape[1]}))
    model(**inputs)
    with torch.no_grad():
        assert lengths == {t.modality: t.embed(inputs).hidden.shape[1] for t in towers}


@pytest.mark.parametrize("name", NAMES)
def test_padding_is_never_attended(name):
    model = mitp(name)
    inputs = family_inputs(name)
    pooled = resolve_towers(model.get_base_model()).text.pooled_position(inputs["input_ids"])
    changed = copy.deepcopy(inputs)
    for row in range(3):
        for col in range(inputs["input_ids"].shape[1]):
            if not inputs["attention_mask"][row, col] and col != pooled[row]:
                changed["input_ids"][row, col] = 50  # other ids at padding positions nobody pools
    assert not torch.equal(changed["input_ids"], inputs["input_ids"])
    assert torch.equal(model(**changed).logits, model(**inputs).logits)


def relative_change(changed: torch.Tensor, reference: torch.Tensor) -> float:
    return ((changed - reference).norm(dim=-1) / reference.norm(dim=-1)).min().item()


@pytest.mark.parametrize("reads", HUB_READS)
@pytest.mark.parametrize("name", NAMES)
def test_interaction_crosses_towers_from_the_first_step(name, reads):
    """At initialization, changing only the image moves every sample's pooled text features by 5e-3 or more
    (relative), and changing only the text moves the image features as much. The first joint hub let through 1e-5 on
    a pretrained backbone and 1e-8 to 4e-5 here; towers built with trained-like weight gains (see families.py).
    Measured minimum 9.2e-3: the hub reading tokens, a text of one word between [CLS] and [SEP], which any other
    such text shares (1.2e-2 reading prompts only)."""
    model = get_peft_model(
        build(name, initializer_range=TRAINED_LIKE_INIT), MITPConfig(num_labels=3, hub_reads=reads)
    )  # fmt: skip
    inputs = family_inputs(name)
    other = family_inputs(name, seed=7)
    text_inputs = ("input_ids", "attention_mask", "token_type_ids")
    other_image = dict(inputs, **{k: v for k, v in other.items() if k not in text_inputs})
    other_text = dict(other, **{k: v for k, v in inputs.items() if k not in text_inputs})
    with torch.no_grad():
        reference = model(**inputs)
        assert relative_change(model(**other_image).text_features, reference.text_features) > 5e-3
        assert relative_change(model(**other_text).image_features, reference.image_features) > 5e-3


@pytest.mark.parametrize("name", [n for n in NAMES if FAMILIES[n].has_token_types])
def test_token_type_ids_are_used_consistently(name):
    model = mitp(name)
    inputs = family_inputs(name)
    zeros = dict(inputs, token_type_ids=torch.zeros_like(inputs["input_ids"]))
    ones = dict(inputs, token_type_ids=torch.ones_like(inputs["input_ids"]) * inputs["attention_mask"])
    torch.testing.assert_close(model(**zeros).logits, model(**inputs).logits, rtol=0, atol=0)
    if model.get_base_model().text_model.config.type_vocab_size > 1:
        assert not torch.allclose(model(**ones).logits, model(**inputs).logits)


def test_siglip2_padding_patches_are_never_attended():
    model = mitp("siglip2")
    inputs = family_inputs("siglip2")
    changed = copy.deepcopy(inputs)
    changed["pixel_values"][1:, 12:] = 5.0  # values of padding patches
    assert torch.equal(model(**changed).logits, model(**inputs).logits)


def test_unsupported_tower_is_named():
    from transformers import ConvBertConfig, VisionTextDualEncoderConfig, VisionTextDualEncoderModel

    config = VisionTextDualEncoderConfig.from_vision_text_configs(
        CLIPVisionConfig(**VISION), ConvBertConfig(**TEXT), projection_dim=16
    )
    with pytest.raises(ValueError, match=r"ConvBertModel \(model_type='convbert'\) as the text tower.*Supported text"):
        get_peft_model(VisionTextDualEncoderModel(config), MITPConfig(num_labels=2))


def test_unsupported_model_is_named():
    from transformers import CLIPTextConfig, CLIPTextModel

    with pytest.raises(ValueError, match=r"does not support CLIPTextModel.*Pass the whole dual encoder"):
        get_peft_model(CLIPTextModel(CLIPTextConfig(hidden_size=32, num_hidden_layers=2)), MITPConfig(num_labels=2))


@pytest.mark.parametrize("name", NAMES)
def test_longest_text_that_fits_runs_and_one_more_is_explained(name):
    model = mitp(name)
    room = model.max_text_length
    # 40 positions (24 in the tiny CLIP); RoBERTa-style towers number them from padding_idx + 1 and lose two.
    positions = {"clip": 24, "altclip": 38, "deit+roberta": 38}.get(name, 40)
    assert room == positions - 8
    assert torch.isfinite(model(**family_inputs(name, lengths=(room, 3, 2))).logits).all()
    with pytest.raises(ValueError, match=f"has room for {room}"):
        model(**family_inputs(name, lengths=(room + 1, 3, 2)))


def test_a_tower_without_the_pooler_the_dual_encoder_uses_is_refused():
    from transformers import BertConfig, BertModel, VisionTextDualEncoderModel, ViTConfig, ViTModel

    model = VisionTextDualEncoderModel(
        vision_model=ViTModel(ViTConfig(**VISION)), text_model=BertModel(BertConfig(**TEXT), add_pooling_layer=False)
    )
    with pytest.raises(ValueError, match="BertModel has no pooler, but VisionTextDualEncoderModel pools text with it"):
        get_peft_model(model, MITPConfig(num_labels=2))


@pytest.mark.parametrize("name", ["dinov2+bert", "dinov2-registers+bert"])
def test_dinov2_takes_any_image_size_that_is_a_multiple_of_its_patch(name):
    """DINOv2 interpolates its position table to the image: 40 px images (5 x 5 patches of 8, against the table's
    4 x 4) pool as the dual encoder pools them, and MITP runs on them."""
    model = build(name)
    inputs = dict(
        family_inputs(name), pixel_values=torch.randn(3, 3, 40, 40, generator=torch.Generator().manual_seed(2))
    )
    vision = resolve_towers(model).vision
    registers = getattr(model.vision_model.config, "num_register_tokens", 0)
    with torch.no_grad():
        state = vision.embed(inputs)
        assert state.hidden.shape[1] == 1 + registers + 25
        got = as_embeds(model, "vision", vision.features(inputs))
        torch.testing.assert_close(got, model(**inputs).image_embeds, rtol=0, atol=2e-6)
    adapted = get_peft_model(model, MITPConfig(num_labels=3))
    assert adapted(**inputs).logits.shape == (3, 3)
