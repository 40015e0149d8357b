"""mitp-peft: MITP (Memory-Inspired Temporal Prompt Interaction) as a peft method for frozen dual encoders.

`import mitp_peft` registers the method "MITP" with peft, so that `get_peft_model(model, MITPConfig(...))`,
`PeftModel.from_pretrained` and `AutoPeftModel.from_pretrained` know it.
"""

from .config import MITPConfig
from .head import MITPOutput
from .hub import MemoryHub
from .layer import MITPLayer
from .loading import from_pretrained
from .model import MITPModel
from .registration import MITP_PEFT_TYPE, register

register()

__version__ = "0.1.0"

__all__ = [
    "MITP_PEFT_TYPE",
    "MITPConfig",
    "MITPLayer",
    "MITPModel",
    "MITPOutput",
    "MemoryHub",
    "from_pretrained",
]
