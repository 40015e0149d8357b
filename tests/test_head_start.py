"""Where training starts: the head as the backbone's zero-shot classifier, or fitted alone first (warm start)."""

import pytest
import torch
import torch.nn.functional as F
from helpers import PairDataset, adapter_module, make_inputs, tiny_clip, tiny_clip_processor
from peft import PeftModel, get_peft_model

import mitp_peft
from mitp_peft import MITPConfig, init_head_zero_shot, warm_start_head

NAMES = {0: "a", 1: "b", 2: "c"}


def zero_shot_logits(base, processor, inputs, image_features=None):
    """The tiny CLIP's own zero-shot classifier: image embedding against each label's caption embedding (of the
    given pooled image features, or of the backbone's own)."""
    captions = processor.tokenizer([f"a photo of a {n}." for n in NAMES.values()], padding="max_length",
                                   truncation=True, max_length=24, return_tensors="pt")  # fmt: skip
    with torch.no_grad():
        texts = F.normalize(base.get_text_features(**captions).pooler_output, dim=-1)
        if image_features is None:
            images = base.get_image_features(pixel_values=inputs["pixel_values"]).pooler_output
        else:
            images = base.visual_projection(image_features)
    return base.logit_scale.exp() * F.normalize(images, dim=-1) @ texts.T


@pytest.mark.parametrize("head", ["mlp", "linear", "per_modality"])
def test_a_fresh_zero_shot_head_predicts_what_the_backbone_predicts_zero_shot(tmp_path, head):
    """Labels are the backbone's own zero-shot choices, so its zero-shot accuracy is 1 on every sample whose top two
    classes are apart; a fresh adapter started from it scores the same there, its prompts notwithstanding."""
    processor = tiny_clip_processor(tmp_path)
    base = tiny_clip()
    inputs = make_inputs(batch=48, seed=3)
    expected = zero_shot_logits(base, processor, inputs)
    top2 = expected.topk(2, dim=-1).values
    clear = (top2[:, 0] - top2[:, 1]) > 0.5
    assert clear.sum() >= 20  # enough samples to say something
    model = get_peft_model(base, MITPConfig(num_labels=3, id2label=NAMES, head=head))
    init_head_zero_shot(model, processor.tokenizer)
    with torch.no_grad():
        out = model(**inputs)
    assert torch.equal(out.logits.argmax(-1)[clear], expected.argmax(-1)[clear])
    # Exactly the zero-shot classifier, applied to the image as the prompts leave it (which moves logits by ~0.7).
    after_prompts = zero_shot_logits(model.base_model.model, processor, inputs, out.image_features)
    torch.testing.assert_close(out.logits, after_prompts, atol=1e-4, rtol=1e-4)


def test_the_zero_shot_head_is_recorded_saved_and_reloaded(tmp_path, inputs):
    processor = tiny_clip_processor(tmp_path)
    model = get_peft_model(tiny_clip(), MITPConfig(num_labels=3, id2label=NAMES))
    before = model.get_nb_trainable_parameters()[0]
    init_head_zero_shot(model, processor.tokenizer, template="a picture of {}")
    config = model.peft_config["default"]
    assert config.zero_shot_template == "a picture of {}"
    assert config.built_for["adapter_parameters"] == model.get_nb_trainable_parameters()[0] == before + 3 * 16
    model.save_pretrained(tmp_path / "adapter")
    again = PeftModel.from_pretrained(tiny_clip(), tmp_path / "adapter")
    assert torch.equal(again(**inputs).logits, model(**inputs).logits)


def test_zero_shot_needs_label_names_and_a_place_for_them(tmp_path):
    processor = tiny_clip_processor(tmp_path)
    with pytest.raises(ValueError, match=r"needs the label names: create the adapter with MITPConfig\(id2label="):
        init_head_zero_shot(get_peft_model(tiny_clip(), MITPConfig(num_labels=3)), processor.tokenizer)
    with pytest.raises(ValueError, match=r"template must contain '\{\}'"):
        init_head_zero_shot(
            get_peft_model(tiny_clip(), MITPConfig(num_labels=3, id2label=NAMES)), processor.tokenizer, "x"
        )


def test_warm_start_fits_the_head_alone():
    """The head's loss on the training batches falls; prompts and hub are exactly as they were."""
    model = get_peft_model(tiny_clip(), MITPConfig(num_labels=3))
    data = PairDataset(24)
    batches = list(torch.utils.data.DataLoader(data, batch_size=8))
    adapter = adapter_module(model)
    untouched = {n: p.detach().clone() for n, p in adapter.named_parameters() if not n.startswith("head.")}

    def loss() -> float:
        with torch.no_grad():
            return sum(model(**b).loss.item() for b in batches) / len(batches)

    before = loss()
    warm_start_head(model, batches, epochs=30, learning_rate=1e-2)
    assert loss() < 0.5 * before
    assert all(torch.equal(p, untouched[n]) for n, p in adapter.named_parameters() if n in untouched)
    assert model.training  # as it was


def test_warm_start_needs_labels():
    model = get_peft_model(tiny_clip(), MITPConfig(num_labels=3))
    with pytest.raises(ValueError, match=r"fits the head to labels, but a batch holds only \['attention_mask'"):
        mitp_peft.warm_start_head(model, [make_inputs()])
    with pytest.raises(ValueError, match="warm_start_head got no batches"):
        mitp_peft.warm_start_head(model, [])
