"""`MITPLayer`: an interaction layer, where temporal prompts are acquired (METHOD.md step 4)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Optional

import torch
from peft.tuners.tuners_utils import BaseTunerLayer
from torch import nn


class MITPLayer(nn.Module, BaseTunerLayer):
    """Wraps a frozen encoder layer that some MITP adapter uses as an interaction layer.

    The wrapper holds no weights: MITP's trainable state (first prompt, hub, head) is shared by all layers and lives
    on `MITPModel`. It marks the layer for peft (status, `unload`, enable/disable) and performs the acquiring step:
    append this layer's prompts to the token stream, run the frozen layer, split the prompt outputs off again. Called
    as a module it is the untouched layer, which is what the backbone's own forward sees.
    """

    adapter_layer_names = ()
    other_param_names = ("mitp_pair_index",)

    def __init__(self, base_layer: nn.Module) -> None:
        super().__init__()
        self.base_layer = base_layer
        self.mitp_pair_index: dict[str, int] = {}
        """adapter name -> which interaction pair (0-based) this layer is for that adapter."""

    def update_layer(self, adapter_name: str, pair_index: int) -> None:
        self.mitp_pair_index[adapter_name] = pair_index

    def forward(self, hidden_states: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        return self.base_layer(hidden_states, *args, **kwargs)

    def acquire(
        self,
        tokens: torch.Tensor,
        prompts: torch.Tensor,
        attention_mask: Optional[torch.Tensor],
        run_layer: Callable[[nn.Module, torch.Tensor, Optional[torch.Tensor]], torch.Tensor],
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Run the layer on `[tokens ; prompts]`; return the token stream and the prompt outputs."""
        length = tokens.shape[1]
        out = run_layer(self.base_layer, torch.cat([tokens, prompts.to(tokens.dtype)], dim=1), attention_mask)
        return out[:, :length], out[:, length:]

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
