"""Registers MITP with peft's method tables.

peft's own `register_peft_method` refuses names that are not members of its closed `PeftType` enum, so a third-party
method cannot use it. We write into three of the four tables it fills, config, tuner and prefix (they are shared dict
objects that every part of peft imports; MITP has no mixed-model form), after making the checks it makes: the name and
the prefix must be free. Registration is idempotent, so importing `mitp_peft` twice (or reloading it) is harmless.
"""

from __future__ import annotations

from peft import mapping
from peft.utils.peft_types import PeftType

from .config import MITPConfig
from .model import MITPModel
from .peft_type import MITP_PEFT_TYPE, MITP_PREFIX


def register() -> None:
    """Make "MITP" known to peft: config class, tuner class and state-dict prefix."""
    if MITP_PEFT_TYPE in PeftType.__members__:
        raise RuntimeError(
            "peft now ships its own 'MITP' method (PeftType.MITP); mitp_peft would shadow it. "
            "Use peft's built-in MITP or pin peft<0.22 as mitp_peft's requirements say."
        )

    registered = {
        "config": (mapping.PEFT_TYPE_TO_CONFIG_MAPPING, MITPConfig),
        "tuner": (mapping.PEFT_TYPE_TO_TUNER_MAPPING, MITPModel),
        "prefix": (mapping.PEFT_TYPE_TO_PREFIX_MAPPING, MITP_PREFIX),
    }
    for what, (table, ours) in registered.items():
        theirs = table.get(MITP_PEFT_TYPE)
        # Compare by qualified name, not identity: reloading the module creates new class objects.
        if theirs is not None and _qualname(theirs) != _qualname(ours):
            raise RuntimeError(f"The peft method name 'MITP' is already registered with another {what}: {theirs!r}.")

    for peft_type, prefix in mapping.PEFT_TYPE_TO_PREFIX_MAPPING.items():
        if prefix == MITP_PREFIX and peft_type != MITP_PEFT_TYPE:
            raise RuntimeError(f"The adapter prefix {MITP_PREFIX!r} is already used by the peft method {peft_type!s}.")

    for table, ours in registered.values():
        table[MITP_PEFT_TYPE] = ours


def _qualname(obj: object) -> str:
    if isinstance(obj, str):
        return obj
    return f"{obj.__module__}.{obj.__qualname__}"
