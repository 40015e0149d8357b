"""The memory-lean quick-GELU MITP puts in CLIP's towers: the same outputs, the same gradients to float rounding,
half of the activation's tensors kept for the backward, and the backbone's own modules back on unload."""

import torch
from helpers import TEXT_LAYERS, VISION_LAYERS, make_inputs, tiny_clip
from peft import get_peft_model
from transformers.activations import QuickGELUActivation

from mitp_peft import MITPConfig
from mitp_peft.towers import activations

LABELS = torch.tensor([0, 2, 1])


def quick_gelus(model: torch.nn.Module) -> list[torch.nn.Module]:
    return [m for m in model.modules() if type(m) is QuickGELUActivation]


def step(model) -> tuple[torch.Tensor, dict[str, torch.Tensor], int]:
    """Logits, the adapter's gradients and the bytes autograd keeps for the backward in one training step."""
    model.zero_grad(set_to_none=True)
    kept: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        kept[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()  # the frozen weights: the same in both
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = model(**make_inputs(), labels=LABELS)
    out.loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    return out.logits.detach(), grads, sum(kept.values())


def test_the_lean_quick_gelu_computes_the_same_and_keeps_half_as_much():
    backbone = tiny_clip().train()
    originals = quick_gelus(backbone)
    assert len(originals) == TEXT_LAYERS + VISION_LAYERS  # one per layer of the tiny CLIP's two towers
    model = get_peft_model(backbone, MITPConfig(num_labels=3, num_interaction_layers=2))
    assert quick_gelus(model) == []
    lean = [m for m in model.modules() if isinstance(m, activations.MemoryLeanQuickGELU)]
    assert [m.replaced[0] for m in lean] == originals

    logits, grads, kept = step(model)
    activations.restore(model)
    assert quick_gelus(model) == originals
    logits_before, grads_before, kept_before = step(model)

    assert torch.equal(logits, logits_before)
    assert grads.keys() == grads_before.keys() and len(grads) > 10
    for name, grad in grads.items():
        torch.testing.assert_close(grad, grads_before[name], rtol=1e-5, atol=1e-7, msg=name)
    # What the lean one does not keep: the sigmoid of each interaction layer's MLP, (batch, tokens, intermediate).
    prompts = model.peft_config["default"].prompt_length
    text_tokens = make_inputs()["input_ids"].shape[1] + prompts
    vision_tokens = (32 // 8) ** 2 + 1 + prompts
    sigmoids = 3 * 64 * 4 * 2 * (text_tokens + vision_tokens)  # float32, 2 interaction layers per tower
    assert kept_before - kept >= sigmoids


def test_unload_puts_back_the_backbones_own_activations():
    backbone = tiny_clip()
    originals = quick_gelus(backbone)
    model = get_peft_model(backbone, MITPConfig(num_labels=3))
    assert quick_gelus(model) == []
    assert quick_gelus(model.unload()) == originals


def test_the_lean_quick_gelu_is_the_formula_bit_for_bit_in_every_float_type():
    g = torch.Generator().manual_seed(0)
    for dtype in (torch.float32, torch.bfloat16, torch.float16):
        x = (torch.randn(4, 300, generator=g) * 4).to(dtype)
        assert torch.equal(activations.quick_gelu(x), x * torch.sigmoid(1.702 * x)), dtype
        lean = activations.MemoryLeanQuickGELU(QuickGELUActivation())
        assert torch.equal(lean(x.requires_grad_()), x * torch.sigmoid(1.702 * x)), dtype
