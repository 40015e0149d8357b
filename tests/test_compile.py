"""torch.compile: compiled logits match eager, a compiled training step updates exactly the trainable parameters, and
the whole training forward compiles as one graph (no host syncs).

The default backend (inductor) generates and compiles C++ for every kernel, about a minute and a half per family on
2 cores, and tracing alone takes 10 to 40 s. CI traces one family of each tower kind through dynamo and AOT autograd
(`aot_eager`, the same graphs without code generation): CLIP (causal and padded text masks), BERT + ViT and SigLIP.
`make test-compile` runs inductor on every family (MITP_INDUCTOR_FAMILIES=all, about 15 minutes): the mask code
inductor once failed on is covered there, and by the GPU check.
"""

import os

import pytest
import torch
from families import FAMILIES, build, family_inputs
from helpers import make_inputs, on, tiny_clip
from peft import get_peft_model

from mitp_peft import MITPConfig

LABELS = torch.tensor([0, 1, 2])
INDUCTOR = os.environ.get("MITP_INDUCTOR_FAMILIES", "")
INDUCTOR_FAMILIES = set(FAMILIES) if INDUCTOR == "all" else set(INDUCTOR.split(",")) - {""}
COMPILED = sorted(FAMILIES) if INDUCTOR == "all" else ["clip", "vit+bert", "siglip"]


@pytest.mark.slow
@pytest.mark.parametrize("name", COMPILED)
def test_compiled_step_matches_eager_and_trains_exactly_the_adapter(name, device):
    """One compiled forward and backward per family (eval mode, so dropout cannot differ): the logits are eager's
    within float tolerance and the optimizer step moves exactly the trainable parameters."""
    torch._dynamo.reset()
    model = get_peft_model(build(name).to(device), MITPConfig(num_labels=3))
    inputs = on(device, family_inputs(name))
    eager = model(**inputs).logits.detach()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    backend = "inductor" if name in INDUCTOR_FAMILIES else "aot_eager"
    out = torch.compile(model, backend=backend)(**inputs, labels=LABELS.to(device))
    torch.testing.assert_close(out.logits.detach(), eager, rtol=1e-4, atol=1e-5)
    out.loss.backward()
    torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1).step()
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed == {n for n, p in model.named_parameters() if p.requires_grad}


@pytest.mark.slow
def test_the_training_forward_compiles_as_one_graph(device):
    """fullgraph=True refuses any graph break, and every read of a tensor's value on the host (`.item()`, `bool()`,
    data-dependent shapes) is one: an ordinary batch (one text length, labels present) makes none. Graph breaks are
    found while dynamo traces, whatever the backend: the eager one keeps this quick."""
    torch._dynamo.reset()
    model = get_peft_model(tiny_clip().to(device), MITPConfig(num_labels=3))
    model.train()
    inputs = on(device, make_inputs(lengths=[7, 5, 6]))
    compiled = torch.compile(model, fullgraph=True, backend="eager")
    out = compiled(**inputs, labels=LABELS.to(device), num_items_in_batch=torch.tensor(3, device=device))
    out.loss.backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
