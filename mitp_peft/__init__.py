"""mitp-peft: MITP (Memory-Inspired Temporal Prompt Interaction) as a peft method for frozen dual encoders.

`import mitp_peft` registers the method "MITP" with peft, so that `get_peft_model(model, MITPConfig(...))`,
`PeftModel.from_pretrained` and `AutoPeftModel.from_pretrained` know it.
"""

import importlib

from .export import export_onnx
from .method.adapter import MITPAdapter
from .method.head import MITPHead, MITPOutput
from .method.hub import MemoryHub
from .method.loss import classification_loss
from .prediction import predict
from .sharing import describe_training, from_pretrained, push_to_hub
from .tuner.config import MITPConfig
from .tuner.layer import MITPLayer
from .tuner.model import MITPModel
from .tuner.peft_type import MITP_PEFT_TYPE
from .tuner.registration import register
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
    "classification_loss",
    "describe_training",
    "export_onnx",
    "from_pretrained",
    "init_head_zero_shot",
    "predict",
    "push_to_hub",
    "warm_start_head",
]
