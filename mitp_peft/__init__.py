"""mitp-peft: MITP (Memory-Inspired Temporal Prompt Interaction) as a peft method for frozen dual encoders.

`import mitp_peft` registers the method "MITP" with peft, so that `get_peft_model(model, MITPConfig(...))`,
`PeftModel.from_pretrained` and `AutoPeftModel.from_pretrained` know it.
"""

from .config import MITPConfig
from .head import MITPOutput
from .hub import MemoryHub
from .layer import MITPLayer
from .model import MITPModel
from .prediction import predict
from .registration import MITP_PEFT_TYPE, register
from .sharing import describe_training, from_pretrained, push_to_hub

register()

__version__ = "0.1.0"

__all__ = [
    "MITP_PEFT_TYPE",
    "MITPConfig",
    "MITPLayer",
    "MITPModel",
    "MITPOutput",
    "MemoryHub",
    "describe_training",
    "from_pretrained",
    "predict",
    "push_to_hub",
]
