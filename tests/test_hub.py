"""The memory hub alone: similarity consolidation, memory, activation, translators."""

import pytest
import torch

from mitp_peft.method.hub import Memory, MemoryHub, Tokens, activate, cosine_attention, standardize


def hub(**kwargs):
    torch.manual_seed(0)
    settings = dict(
        text_size=6,
        vision_size=10,
        hidden_size=4,
        temperature=0.1,
        attention="gated",
        memory_decay=0.0,
        reads="prompts",
    )
    settings.update(kwargs)
    return MemoryHub(**settings)


def test_cosine_attention_is_softmax_of_cosine():
    query, keys = torch.randn(2, 3, 5), torch.randn(2, 4, 5)
    cos = torch.nn.functional.cosine_similarity(query[:, :, None], keys[:, None], dim=-1)
    weights, cosines = cosine_attention(query, keys, 0.5)
    torch.testing.assert_close(cosines, cos)
    torch.testing.assert_close(weights, torch.softmax(cos / 0.5, dim=-1))
    zero = torch.zeros(1, 1, 5)  # F.normalize's rule: a zero vector stays zero, its cosines are 0
    assert torch.equal(cosine_attention(zero, keys[:1], 0.5)[1], torch.zeros(1, 1, 4))


def test_cosine_attention_keeps_no_normalized_copy_of_the_keys():
    """The keys can be a whole token stream: besides the query and the keys themselves, what the backward keeps is
    (batch, queries, keys) or smaller, not another (batch, keys, width) tensor."""
    query, keys = torch.randn(2, 3, 16, requires_grad=True), torch.randn(2, 50, 16, requires_grad=True)
    kept = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: kept.append(t) or t, lambda t: t):
        cosine_attention(query, keys, 0.1)
    own = {query.untyped_storage().data_ptr(), keys.untyped_storage().data_ptr()}
    others = [t for t in kept if t.untyped_storage().data_ptr() not in own]
    assert others and max(t.numel() for t in others) <= 2 * 3 * 50 < keys.numel()


def test_only_translators_are_trainable():
    h = hub()
    assert {n.split(".")[0] for n, _ in h.named_parameters()} == {
        "translate_text_to_vision",
        "translate_vision_to_text",
    }
    assert sum(p.numel() for p in h.parameters()) == (6 * 4 + 4 + 4 * 10 + 10) + (10 * 4 + 4 + 4 * 6 + 6)


def test_gated_keeps_itself_and_adds_what_it_reads_weighted_by_similarity():
    h = hub()
    text, vision = torch.randn(2, 3, 6), torch.randn(2, 3, 10)
    memory = h.consolidate(text, vision, None)
    for own, other, got in (
        (text, h.translate_vision_to_text(vision), memory.text),
        (vision, h.translate_text_to_vision(text), memory.vision),
    ):
        weights, cosines = cosine_attention(own, other, 0.1)
        gate = (1 + (weights * cosines).sum(-1, keepdim=True)) / 2
        torch.testing.assert_close(got, standardize(own) + gate * standardize(weights @ other))


def test_gate_hears_the_other_modality_at_half_weight_when_unrelated_and_not_when_opposed():
    """Orthogonal (unrelated) prompts enter with gate 1/2; an opposed one is shut out; an aligned one fully heard."""
    h = hub()
    own = torch.eye(6)[None, :2] * 3  # two text prompts along e0, e1
    unrelated = torch.eye(6)[None, 2:4] * 5  # e2, e3: cosine 0 with both, so each is read half
    read = unrelated.mean(1, keepdim=True).expand_as(own)
    same = torch.nn.Identity()  # read as they are, without a translator
    torch.testing.assert_close(h.recall(own, same, unrelated), standardize(own) + 0.5 * standardize(read))
    single = own[:, :1]
    torch.testing.assert_close(h.recall(single, same, -single), standardize(single), atol=1e-5, rtol=0)
    torch.testing.assert_close(h.recall(single, same, 2 * single), 2 * standardize(single), atol=1e-5, rtol=0)


def test_other_modality_weighs_about_half_of_each_prompt_at_initialization():
    """The measured defect of the first joint form: a prompt's cosine with itself took all but e^-10 of the weight.
    Now, whatever the two towers' scales, what a fresh hub reads from the other side has about half the size of the
    prompt's own part (random translators: cosines near 0, gate near 1/2)."""
    h = hub(text_size=64, vision_size=96, hidden_size=32)
    text, vision = torch.randn(4, 8, 64) * 1e3, torch.randn(4, 8, 96) * 1e-3  # towers of very different scales
    memory = h.consolidate(text, vision, None)
    own_part = standardize(text)
    share = (memory.text - own_part).norm(dim=-1) / own_part.norm(dim=-1)
    assert 0.35 < share.mean() < 0.65 and share.min() > 0.25


def test_cross_adds_what_it_reads_from_the_other_side():
    h = hub(attention="cross")
    text, vision = torch.randn(2, 3, 6), torch.randn(2, 3, 10)
    memory = h.consolidate(text, vision, None)
    other = h.translate_vision_to_text(vision)
    weights, _ = cosine_attention(text, other, 0.1)
    torch.testing.assert_close(memory.text, text + weights @ other)


@pytest.mark.parametrize("decay", [0.0, 0.5])
def test_memory_decay_mixes_previous_memory(decay):
    h = hub(memory_decay=decay)
    text, vision = torch.randn(2, 3, 6), torch.randn(2, 3, 10)
    previous = Memory(torch.randn(2, 3, 6), torch.randn(2, 3, 10))
    fresh = h.consolidate(text, vision, None)
    mixed = h.consolidate(text, vision, previous)
    torch.testing.assert_close(mixed.text, fresh.text + decay * previous.text)
    torch.testing.assert_close(mixed.vision, fresh.vision + decay * previous.vision)


def test_activation_normalizes_and_scales_to_real_tokens():
    memory = torch.randn(2, 3, 8) * 7 + 3
    tokens = torch.randn(2, 5, 8)
    tokens[1] *= 4
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0]], dtype=torch.bool)
    tokens[1, 2:] = 1000.0  # padding must not count
    prompts = activate(memory, tokens, mask)
    torch.testing.assert_close(prompts.mean(-1), torch.zeros(2, 3), atol=1e-5, rtol=0)
    rms = torch.stack([tokens[0].pow(2).mean().sqrt(), tokens[1, :2].pow(2).mean().sqrt()])
    torch.testing.assert_close(prompts.pow(2).mean(-1).sqrt(), rms[:, None].expand(2, 3), atol=1e-3, rtol=1e-4)


def test_first_vision_prompt_is_generated_from_the_text_prompt():
    h = hub()
    text_prompt = torch.randn(3, 6)
    torch.testing.assert_close(h.initial_vision_prompt(text_prompt), h.translate_text_to_vision(text_prompt))


def test_reading_tokens_masks_padding_and_adds_what_it_finds():
    """With hub_reads="tokens" a prompt also reads the other tower's token stream; its padding gets no weight."""
    h = hub(reads="tokens")
    text, vision = torch.randn(2, 3, 6), torch.randn(2, 3, 10)
    text_tokens, vision_tokens = torch.randn(2, 5, 6), torch.randn(2, 4, 10)
    text_mask = torch.tensor([[True] * 5, [True, True, False, False, False]])
    tokens = Tokens(text_tokens, text_mask, vision_tokens, None)
    memory = h.consolidate(text, vision, None, tokens)
    changed = text_tokens.clone()
    changed[1, 2:] = 100.0  # padding
    again = h.consolidate(text, vision, None, Tokens(changed, text_mask, vision_tokens, None))
    assert torch.equal(again.vision, memory.vision)
    prompts_only = h.consolidate(text, vision, None)
    change = (memory.text - prompts_only.text).norm(dim=-1) / prompts_only.text.norm(dim=-1)
    assert change.mean() > 5e-2 and change.min() > 1e-3  # the tokens are read, not a rounding


def test_an_absent_modality_is_not_read():
    """A tower that did not run (None) gives no memory and is read by nobody; a sample without the other modality
    keeps exactly its own context, whatever the other tower computed for it."""
    h = hub()
    text, vision = torch.randn(2, 3, 6), torch.randn(2, 3, 10)
    alone = h.consolidate(text, None, None)
    assert alone.vision is None
    torch.testing.assert_close(alone.text, standardize(text))
    present = torch.tensor([True, False])
    masked = h.consolidate(text, vision, None, image_present=present)
    torch.testing.assert_close(masked.text[1], standardize(text)[1])
    torch.testing.assert_close(masked.text[0], h.consolidate(text, vision, None).text[0])
    other = h.consolidate(text, torch.randn(2, 3, 10) * 9, None, image_present=present)
    assert torch.equal(other.text[1], masked.text[1])
