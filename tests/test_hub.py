"""The memory hub alone: similarity consolidation, memory, activation, translators."""

import pytest
import torch

from mitp_peft.hub import Memory, MemoryHub, activate, similarity_attention


def hub(**kwargs):
    torch.manual_seed(0)
    settings = dict(text_size=6, vision_size=10, hidden_size=4, temperature=0.1, attention="joint", memory_decay=0.0)
    settings.update(kwargs)
    return MemoryHub(**settings)


def test_similarity_attention_is_softmax_of_cosine():
    query, keys = torch.randn(2, 3, 5), torch.randn(2, 4, 5)
    cos = torch.nn.functional.cosine_similarity(query[:, :, None], keys[:, None], dim=-1)
    expected = torch.softmax(cos / 0.5, dim=-1) @ keys
    torch.testing.assert_close(similarity_attention(query, keys, 0.5), expected)


def test_only_translators_are_trainable():
    h = hub()
    assert {n.split(".")[0] for n, _ in h.named_parameters()} == {
        "translate_text_to_vision",
        "translate_vision_to_text",
    }
    assert sum(p.numel() for p in h.parameters()) == (6 * 4 + 4 + 4 * 10 + 10) + (10 * 4 + 4 + 4 * 6 + 6)


def test_joint_attends_over_both_modalities():
    h = hub()
    text, vision = torch.randn(2, 3, 6), torch.randn(2, 3, 10)
    memory = h.consolidate(text, vision, None)
    keys_t = torch.cat([text, h.translate_vision_to_text(vision)], dim=1)
    keys_v = torch.cat([vision, h.translate_text_to_vision(text)], dim=1)
    torch.testing.assert_close(memory.text, similarity_attention(text, keys_t, 0.1))
    torch.testing.assert_close(memory.vision, similarity_attention(vision, keys_v, 0.1))


def test_joint_keeps_own_context_when_the_other_is_irrelevant():
    """A prompt equal to one of its own keys and orthogonal to all others keeps (almost) itself at low temperature."""
    h = hub(temperature=0.01)
    with torch.no_grad():
        for p in h.translate_vision_to_text.parameters():
            p.zero_()  # the other modality translates to zero vectors: cosine 0
    text = torch.eye(6)[None, :3] * 5
    memory = h.consolidate(text, torch.randn(1, 3, 10), None)
    torch.testing.assert_close(memory.text, text, atol=1e-3, rtol=0)


def test_cross_adds_what_it_reads_from_the_other_side():
    h = hub(attention="cross")
    text, vision = torch.randn(2, 3, 6), torch.randn(2, 3, 10)
    memory = h.consolidate(text, vision, None)
    other = h.translate_vision_to_text(vision)
    torch.testing.assert_close(memory.text, text + similarity_attention(text, other, 0.1))


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
