"""`MITPLayer`: marks an interaction layer of the backbone for peft (METHOD.md step 4)."""

from __future__ import annotations

from typing import Any

import torch
from peft.tuners.tuners_utils import BaseTunerLayer
from torch import nn


class MITPLayer(nn.Module, BaseTunerLayer):
    """Wraps a frozen encoder layer that some MITP adapter uses as an interaction layer.

    It holds no weights: MITP's trainable state lives in one `MITPAdapter` per adapter on `MITPModel`, and the joint
    forward (`mitp_peft.method.engine`) appends the prompts to the token stream before calling this layer.
    The wrapper gives peft what it manages tuner layers by: status reports, enable/disable, `unload`, refusing to
    merge. Called as a module it is the untouched layer, which is what the backbone's own forward sees.
    """

    adapter_layer_names = ()
    other_param_names = ("mitp_interaction_of",)

    def __init__(self, base_layer: nn.Module) -> None:
        super().__init__()
        self.base_layer = base_layer
        self.mitp_interaction_of: dict[str, bool] = {}
        """The adapters that use this layer as an interaction layer: peft's add, delete and set_adapter bookkeeping
        reads the adapter names off it."""

    def update_layer(self, adapter_name: str) -> None:
        self.mitp_interaction_of[adapter_name] = True

    def forward(self, hidden_states: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        return self.base_layer(hidden_states, *args, **kwargs)

    def merge(self, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError(MERGE_REFUSAL)

    def unmerge(self) -> None:
        raise NotImplementedError(MERGE_REFUSAL)

    def __repr__(self) -> str:
        return "mitp." + super().__repr__()


MERGE_REFUSAL = (
    "MITP adapters cannot be merged into the backbone: their prompts are extra tokens computed per input from both "
    "modalities by the memory hub, not a change of weights, so no merged weight gives the same outputs. Keep the "
    "PeftModel, or use unload() to get the untouched backbone back."
)
