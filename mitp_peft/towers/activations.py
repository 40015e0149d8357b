"""A memory-lean quick-GELU for the towers MITP trains through.

CLIP's quick-GELU, `x * sigmoid(1.702 x)`, computed as separate tensor operations keeps two tensors of the MLP's
width (four times the model's) per layer for the backward: its input and the sigmoid, together the largest thing a
training step would keep. The backward needs only the input, from which the sigmoid is one elementwise pass away, so
the replacement keeps that alone. Its forward runs the same operations, so outputs are bitwise the same; gradients
agree to float rounding, and the backward is faster too (fewer temporaries). Other activations (GELU, its tanh form)
keep only their input already.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers.activations import QuickGELUActivation

SLOPE = 1.702


def quick_gelu(x: torch.Tensor) -> torch.Tensor:
    """The backbone's formula, bit for bit, in one new tensor instead of three (the products commute exactly)."""
    return (x * SLOPE).sigmoid_().mul_(x)


class _QuickGELU(torch.autograd.Function):
    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        return quick_gelu(x)

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        s = (x * SLOPE).sigmoid_()
        # d/dx x*s(ax) = s * (1 + a*x*(1 - s)), in place on one temporary.
        return (1 - s).mul_(x).mul_(SLOPE).add_(1).mul_(s).mul_(grad)


class MemoryLeanQuickGELU(nn.Module):
    """Quick-GELU that keeps only its input for the backward; stands in for a `QuickGELUActivation` and remembers it,
    so that `restore` puts back exactly that module."""

    def __init__(self, replaced: nn.Module) -> None:
        super().__init__()
        self.replaced = (replaced,)  # in a tuple: not a submodule, so the module tree is the backbone's

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled() and input.requires_grad:
            return _QuickGELU.apply(input)
        return quick_gelu(input)


def make_lean(module: nn.Module) -> None:
    """Replace every quick-GELU under `module` with the memory-lean one."""
    found = [(name, child) for name, child in module.named_modules() if type(child) is QuickGELUActivation]
    for name, child in found:
        module.set_submodule(name, MemoryLeanQuickGELU(child))


def restore(module: nn.Module) -> None:
    """Put back the backbone's own activations (what `make_lean` replaced)."""
    for name, child in list(module.named_modules()):
        if isinstance(child, MemoryLeanQuickGELU):
            module.set_submodule(name, child.replaced[0])
