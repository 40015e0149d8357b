"""mitp-peft: MITP (Memory-Inspired Temporal Prompt Interaction) as a peft method for frozen dual encoders.

`import mitp_peft` registers the method "MITP" with peft, so that `get_peft_model(model, MITPConfig(...))`,
`PeftModel.from_pretrained` and `AutoPeftModel.from_pretrained` know it.
"""

import importlib

from .adapter import MITPAdapter
from .config import MITPConfig
from .export import export_onnx
from .head import MITPHead, MITPOutput
from .hub import MemoryHub
from .layer import MITPLayer
from .model import MITPModel
from .peft_type import MITP_PEFT_TYPE
from .prediction import predict
from .registration import register
from .sharing import describe_training, from_pretrained, push_to_hub
from .version import __version__ as __version__
from .warm_start import warm_start_head
from .zero_shot import init_head_zero_shot

register()

# Submodules with heavier imports (datasets, evaluate), loaded on first use: mitp_peft.data, mitp_peft.metrics, ...
_LAZY = ("arguments", "data", "extraction", "metrics")


def __getattr__(name: str):
    if name in _LAZY:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "MITP_PEFT_TYPE",
    "MITPAdapter",
    "MITPConfig",
    "MITPHead",
    "MITPLayer",
    "MITPModel",
    "MITPOutput",
    "MemoryHub",
    "describe_training",
    "export_onnx",
    "from_pretrained",
    "init_head_zero_shot",
    "predict",
    "push_to_hub",
    "warm_start_head",
]
