"""Sharding the frozen backbone with FSDP2 (`torch.distributed.fsdp.fully_shard`) to train MITP on towers bigger
than one device holds comfortably.

Each encoder layer of both towers is its own unit (all-gathered just before MITP's joint forward runs it, freed
after), and the rest of the model, the adapters included, is the root unit. MITP calls the towers' layers one by one,
so the units must be the layers themselves: sharding a whole tower would gather it when its forward runs, which
MITP never calls. Frozen and trainable parameters share the root unit (FSDP2 allows that; the trainable ones, all of
the adapters, share one dtype). Scalar parameters (CLIP's logit scale, SigLIP's bias), which FSDP2 cannot shard, stay
whole on every rank.
"""

from __future__ import annotations

from typing import Optional

import torch
from peft import PeftModel
from torch import nn

from .tuner.model import ADAPTERS, tuner_of


def shard(model: PeftModel, mesh: Optional[object] = None) -> PeftModel:
    """Shard an MITP model in place across the processes of `mesh` (default: all of the default process group,
    on the model's device type); returns it. Call it after what runs the towers outside the model's forward
    (`warm_start_head`, `init_head_zero_shot`, `cache_extraction`) and before creating the optimizer."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    if mesh is None:
        device = next(model.parameters()).device.type
        mesh = init_device_mesh(device, (torch.distributed.get_world_size(),))
    tuner = tuner_of(model)
    for tower in tuner.towers:
        for layer in tower.layers:
            fully_shard(layer, mesh=mesh)
    scalars = {p for p in model.parameters() if p.dim() == 0}
    fully_shard(model, mesh=mesh, ignored_params=scalars)
    return model


def adapter_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The MITP adapters' tensors, whole (gathered from the shards on every rank), keyed as `model.state_dict()`
    keys them: what `model.save_pretrained(folder, state_dict=...)` saves for a sharded model."""
    from torch.distributed.tensor import DTensor

    return {
        name: (value.full_tensor() if isinstance(value, DTensor) else value).detach().cpu()
        for name, value in model.state_dict().items()
        if f".{ADAPTERS}." in f".{name}"
    }


def refuse_sharded(model: nn.Module, action: str) -> None:
    """`action` runs the towers outside the model's forward, where FSDP does not gather their shards: refuse a
    sharded model, naming the order that works."""
    if not torch.distributed.is_available():
        return  # a torch built without distributed support shards nothing
    from torch.distributed.fsdp import FSDPModule

    if isinstance(model, FSDPModule):
        raise ValueError(
            f"{action} runs the towers outside the model's forward, where FSDP does not gather the sharded "
            "backbone: call it before mitp_peft.fsdp.shard(model)."
        )
